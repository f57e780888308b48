"""The simulator's results, pinned: one run per dispatch policy (the setting of
`benchmarks/policies.py`) and llumnix runs with migrations (the setting of
`benchmarks/llumnix_policy.py`, plus two small, crowded clusters where migrations are refused,
preempted and outrun), each with a fixed seed, must give exactly these `results` (SHA-256 of their
JSON with sorted keys). The digests were taken when the `max_score` picker began to rotate ties
(issue 14; before, the lowest instance id won them) and hold since, so a restructuring that changes
a single decision, event time or counter fails here. Change a digest only with a change that is meant to alter the results,
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
                       "7a7e88ff447e8ddcab11a95c7d25040d5e0953296332f7df1134559da31d6973"),
    "power-of-two": (Experiment(sharegpt(20.0, 400), policy="power-of-two", instances=16, slo=SLO_TARGET),
                     "099f3eb1600f05634aefe2229949c8fdf8773204e053ca3707efa9e75f2c8dcb"),
    "infaas": (Experiment(sharegpt(20.0, 400), policy="infaas", instances=16, slo=SLO_TARGET),
               "06d21344efa41cccbc55be680714972b7e2b878a1601c2c4beb9df52b41e3312"),
    "llumnix": (Experiment(sharegpt(26.0, 600), policy="llumnix", instances=16),
                "db551760a70be722f766517a9dc124bb10c7f7154d811faeabbc093012ce1916"),
    "llumnix-priorities": (Experiment(sharegpt(34.0, 600, high_priority_fraction=0.1), policy="llumnix",
                                      instances=16),
                           "9ad1d7b8298ab656655a5d407ab682899758d00596572e748aff2ee8d0f6de45"),
    "llumnix-offline": (Experiment(sharegpt(15.0, 400, offline_rate=2.0), policy="llumnix", instances=16),
                        "6b9e7c35d416cdb0b985eaccb063c013703f973ca1e6c8b58f69ed84482c52c2"),
    # 8 small instances at 30 req/s, 10% HIGH, slow copies: migrations refused (no room), outrun by
    # the request's end, and preempted during the copy
    "llumnix-pressure": (Experiment(sharegpt(30.0, 600, high_priority_fraction=0.1), policy="llumnix",
                                    instances=8, num_blocks=500, migration_bandwidth_bytes_s=2e8),
                         "92ca15b09cb86ac9a687f73e16ed8b26c35a95a8556c6c996afd5a11d8d828be"),
    "llumnix-pressure-seqs": (Experiment(sharegpt(30.0, 600, high_priority_fraction=0.1), policy="llumnix",
                                         instances=8, num_blocks=400, max_num_seqs=16,
                                         migration_bandwidth_bytes_s=5e8),
                              "c03bbcbcb3dc734cd4b221da7a631e13b34b355959c3976ce83fc0fe751a06c3"),
    # so crowded (8 sequences, 300 blocks) that reservations for incoming migrations leave a lone
    # running request no room: its step preempts it and schedules nothing, and the instance idles
    # until a transfer ends (an AssertionError once)
    "llumnix-stall": (Experiment(sharegpt(30.0, 600, high_priority_fraction=0.1), policy="llumnix",
                                 instances=8, num_blocks=300, max_num_seqs=8, migration_bandwidth_bytes_s=1e8),
                      "eb6d919cacd86f30d5deee5ab04f1935dddb3968663ba0a6e036c212a33aa6bd"),
}


@pytest.mark.parametrize("name", list(RUNS))
def test_results_are_exactly_the_pinned_ones(name):
    exp, digest = RUNS[name]
    results = run_experiment(exp).results
    got = hashlib.sha256(json.dumps(results, sort_keys=True).encode()).hexdigest()
    assert got == digest, (name, results["migrations"])
    if name == "llumnix-pressure":  # the abort paths these runs pin
        assert results["migrations"]["aborted_by"] == {"finished": 5, "no_room": 3, "preempted": 1}
