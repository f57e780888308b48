"""benchmarks/policies.py: the workloads it builds, and one short run of every baseline."""

from __future__ import annotations

import pytest

from benchmarks.policies import WORKLOADS, run_one
from controlplane.scheduling.policies import BASELINE_POLICIES
from controlplane.workload import AZURE_CONV_RATE, build_workload


def test_workloads_hit_their_target_rates() -> None:
    azure, sharegpt = WORKLOADS
    a = azure.spec(8.0, 200)
    assert a.trace == "azure-conv" and a.rate_scale == pytest.approx(8.0 / AZURE_CONV_RATE)
    s = sharegpt.spec(15.0, 200)
    assert (s.trace, s.request_rate, s.arrival, s.cv) == ("sharegpt", 15.0, "gamma", 4.0)
    reqs = build_workload(s)
    assert len(reqs) == 200 and reqs[-1].arrival_s > 0


def test_every_baseline_runs_and_reports_attainment() -> None:
    for policy in BASELINE_POLICIES:
        r = run_one(WORKLOADS[1], policy, 15.0, 60, quiet=True).results
        assert (r["policy"], r["instances"], r["requests"]) == (policy, 16, 60)
        assert 0.0 <= r["slo_attainment"] <= 1.0
