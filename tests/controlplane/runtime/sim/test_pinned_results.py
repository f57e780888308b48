"""The simulator's results, pinned: one run per dispatch policy (the setting of
`benchmarks/policies.py`) and llumnix runs with migrations (the setting of
`benchmarks/llumnix_policy.py`, plus two small, crowded clusters where migrations are refused,
preempted and outrun), each with a fixed seed, must give exactly these `results` (SHA-256 of their
JSON with sorted keys). The digests were taken before the simulator's migrations moved onto the
transfer core (`controlplane/transfer/`), so a restructuring that changes a single decision, event
time or counter fails here. Change a digest only with a change that is meant to alter the results,
and say why in its commit."""

from __future__ import annotations

import hashlib
import json

import pytest

from controlplane.observability.serving_metrics import SLO
from controlplane.runtime.sim.experiment import Experiment, run_experiment
from controlplane.workload import WorkloadSpec


def sharegpt(rate: float, n: int, **kw) -> WorkloadSpec:
    return WorkloadSpec(trace="sharegpt", num_requests=n, request_rate=rate, arrival="gamma", cv=4.0, **kw)


SLO_TARGET = SLO(ttft_ms=2000, tpot_ms=100)
RUNS = {
    "round-robin": (Experiment(sharegpt(20.0, 400), policy="round-robin", instances=16, slo=SLO_TARGET),
                    "2da90dd65086480629ab0a25019e066422c21abd7f7a2e95e806f24d00654917"),
    "random": (Experiment(sharegpt(20.0, 400), policy="random", instances=16, slo=SLO_TARGET),
               "c16b548562057f1d2a3042d002d4e41658f2c5e4533cdd88bea79ee0673da5fb"),
    "least-requests": (Experiment(sharegpt(20.0, 400), policy="least-requests", instances=16, slo=SLO_TARGET),
                       "15cdefbac35049a253c0f652b1a1eeebbafde688b48956465a1894aecac28e1a"),
    "power-of-two": (Experiment(sharegpt(20.0, 400), policy="power-of-two", instances=16, slo=SLO_TARGET),
                     "099f3eb1600f05634aefe2229949c8fdf8773204e053ca3707efa9e75f2c8dcb"),
    "infaas": (Experiment(sharegpt(20.0, 400), policy="infaas", instances=16, slo=SLO_TARGET),
               "06407dc73946a29dcaa5b657921bb6fe765bc3de5bfe2a18c1fb470e76cd39d0"),
    "llumnix": (Experiment(sharegpt(26.0, 600), policy="llumnix", instances=16),
                "3c74c0faa1882e5e6c2789111db4f5f41d5ae9cb6c21590b92046fbf461e4ce6"),
    "llumnix-priorities": (Experiment(sharegpt(34.0, 600, high_priority_fraction=0.1), policy="llumnix",
                                      instances=16),
                           "7d5defa31cda47f095c8bde0c88f7092f864ebf4917d36689c62d2b0899bfc94"),
    "llumnix-offline": (Experiment(sharegpt(15.0, 400, offline_rate=2.0), policy="llumnix", instances=16),
                        "52ec44cc8766c824cd8bfc02f0535ea8a31af8738f0cfb64fc42ac94067e1725"),
    # 8 small instances at 30 req/s, 10% HIGH, slow copies: migrations refused (no room), outrun by
    # the request's end, and preempted during the copy
    "llumnix-pressure": (Experiment(sharegpt(30.0, 600, high_priority_fraction=0.1), policy="llumnix",
                                    instances=8, num_blocks=500, migration_bandwidth_bytes_s=2e8),
                         "78de585996b35d3e04e1ca05e099df5680c2db22855d88a7e98eb2607bd95f57"),
    "llumnix-pressure-seqs": (Experiment(sharegpt(30.0, 600, high_priority_fraction=0.1), policy="llumnix",
                                         instances=8, num_blocks=400, max_num_seqs=16,
                                         migration_bandwidth_bytes_s=5e8),
                              "d468d651da87ff40c52b842e13d3926e1c5069d393b089e093605f4f00b0e4e0"),
}


@pytest.mark.parametrize("name", list(RUNS))
def test_results_are_exactly_the_pinned_ones(name):
    exp, digest = RUNS[name]
    results = run_experiment(exp).results
    got = hashlib.sha256(json.dumps(results, sort_keys=True).encode()).hexdigest()
    assert got == digest, (name, results["migrations"])
    if name == "llumnix-pressure":  # the abort paths these runs pin
        assert results["migrations"]["aborted_by"] == {"finished": 12, "no_room": 2, "preempted": 9}
