"""benchmarks/llumnix_priorities.py: the runs of a seed, the pooled verdict, one short section."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.llumnix_priorities import e2e_by_class, experiments, pooled, section
from controlplane.runtime.sim.experiment import run_experiment
from controlplane.scheduling.plugins.llumnix import LlumnixSettings
from controlplane.workload import WorkloadSpec
from instances.types import Priority

SPEC = WorkloadSpec(trace="sharegpt", num_requests=60, request_rate=8.0, arrival="gamma", cv=4.0)


def test_a_seed_runs_the_reference_the_default_and_two_ablations() -> None:
    runs = experiments(SPEC, 0.1, 0.0, step_budget=256)
    assert {e.max_num_batched_tokens for e in runs.values()} == {256}
    assert list(runs) == ["no classes", "default", "no prefill cap", "headroom_fraction 0"]
    plain, default, uncapped, fraction = runs.values()
    assert plain.workload.high_priority_fraction == 0 and plain.policy == "llumnix" and plain.instances == 16
    assert default.workload.high_priority_fraction == 0.1 and default.high_priority_prefill_tokens == 128
    assert default.plugins == {}
    assert uncapped.high_priority_prefill_tokens is None and uncapped.workload == default.workload
    assert fraction.plugins == {"llumnix": LlumnixSettings(headroom_fraction=0.0)}  # scorer and migration alike


def test_pooled_ratios_take_the_p99_over_every_seed() -> None:
    # seed A: no-classes normal 10 s, HIGH 4 s, normal 8 s; seed B: 10, 5, 12 (100 requests each).
    # Pooled P99s: normal 12, HIGH 5, no classes 10 -> 2.4x and 1.2 (each seed's lists are constant,
    # so every bootstrap draw gives the same figures).
    a = (np.full(100, 10.0), np.full(100, 4.0), np.full(100, 8.0))
    b = (np.full(100, 10.0), np.full(100, 5.0), np.full(100, 12.0))
    v = pooled([a, b], np.random.default_rng(0), resamples=20)
    assert v["normal_over_high_e2e_p99"] == pytest.approx(2.4)
    assert v["normal_e2e_p99_vs_no_classes"] == pytest.approx(1.2)
    assert v["normal_over_high_ci95"] == pytest.approx([2.4, 2.4])
    assert v["vs_no_classes_ci95"] == pytest.approx([1.2, 1.2])
    assert (v["high_requests"], v["normal_requests"], v["met"]) == (200, 200, False)  # normal is 20% slower
    alone = pooled([a], np.random.default_rng(0), resamples=20)
    assert (alone["normal_over_high_e2e_p99"], alone["normal_e2e_p99_vs_no_classes"], alone["met"]) == (
        pytest.approx(2.0), pytest.approx(0.8), True)


def test_section_ratios_agree_with_each_runs_class_summary(capsys) -> None:
    out = section(SPEC, [3], 0.2, 0.0, 2048, lambda exp, label: run_experiment(exp), lambda rows: "table",
                  np.random.default_rng(0))
    runs = out["runs"][3]
    assert list(runs) == ["no classes", "default", "no prefill cap", "headroom_fraction 0"]
    plain = runs["no classes"]["classes"]["normal"]["e2e"]["p99"]
    for name in ("default", "no prefill cap", "headroom_fraction 0"):
        c = runs[name]["classes"]
        r = out["per_seed"][3][name]
        assert r["normal_over_high_e2e_p99"] == pytest.approx(c["normal"]["e2e"]["p99"] / c["high"]["e2e"]["p99"])
        assert r["normal_e2e_p99_vs_no_classes"] == pytest.approx(c["normal"]["e2e"]["p99"] / plain)
        # one seed pooled is that seed's figures
        assert out["pooled"][name]["normal_over_high_e2e_p99"] == pytest.approx(r["normal_over_high_e2e_p99"])
    assert out["met"] == out["pooled"]["default"]["met"]
    assert "pooled over seeds [3]" in capsys.readouterr().out


def test_e2e_by_class_keeps_completed_requests_by_class() -> None:
    o = run_experiment(experiments(SPEC, 0.2, 0.0)["default"])
    e2e = e2e_by_class(o)
    assert set(e2e) == {Priority.HIGH, Priority.NORMAL}
    assert len(e2e[Priority.HIGH]) + len(e2e[Priority.NORMAL]) == 60
    assert len(e2e[Priority.HIGH]) == o.results["classes"]["high"]["completed"]
