"""Section 3 of `benchmarks/llumnix_policy.py`: priority isolation, judged over several seeds.

Per seed (the arrivals and which requests are HIGH), four runs of `llumnix` on the same requests:
- "no classes": every request NORMAL (the reference for normal requests' P99);
- "default": `high_fraction` of them HIGH, default settings (headroom for HIGH requests in
  dispatch and migration, `engine.high_priority_prefill_tokens` on instances running them);
- "no prefill cap": the same without the prefill cap;
- "headroom_fraction F": the same with F of the blocks reserved per HIGH request instead of the
  default (0: only the fixed headroom, so HIGH requests get little more than the queues' order).

The targets are on P99 E2E: HIGH >= 1.5x lower than normal, and normal within 10% of "no classes".
One 3,000-request run holds about 300 HIGH requests, so its HIGH P99 is the third longest of them,
and one seed's burst can move a P99 by 10-30%. The verdict therefore pools the seeds: each class's
P99 over every seed's requests of that class (the P99 of a run as many times as long), with a 95%
bootstrap interval (the requests resampled within each seed and class); per-seed figures are
reported beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from controlplane.runtime.sim.experiment import Experiment, Outcome
from controlplane.scheduling.plugins.llumnix import LlumnixSettings
from controlplane.workload import WorkloadSpec
from instances.types import Priority

TARGET_RATIO = 1.5  # normal / HIGH P99 E2E, at least
TARGET_NORMAL = 1.1  # normal P99 E2E against the run without classes, at most
RESAMPLES = 1000

Runner = Callable[[Experiment, str], Outcome]


def with_headroom_fraction(exp: Experiment, fraction: float) -> Experiment:
    """`exp` with `fraction` of the blocks reserved per HIGH request, in the scorer and the
    migration policy alike."""
    return replace(exp, plugins={"llumnix": LlumnixSettings(headroom_fraction=fraction)})


def experiments(spec: WorkloadSpec, high_fraction: float, headroom_fraction: float,
                step_budget: int = Experiment.max_num_batched_tokens) -> dict[str, Experiment]:
    """The four runs of one seed (see the module docstring), by name; `step_budget` is every
    engine's `max_num_batched_tokens`."""
    plain = Experiment(spec, policy="llumnix", instances=16, max_num_batched_tokens=step_budget)
    high = replace(plain, workload=replace(spec, high_priority_fraction=high_fraction))
    return {"no classes": plain, "default": high,
            "no prefill cap": replace(high, high_priority_prefill_tokens=None),
            f"headroom_fraction {headroom_fraction:g}": with_headroom_fraction(high, headroom_fraction)}


def e2e_by_class(outcome: Outcome) -> dict[int, np.ndarray]:
    """E2E latencies (s) of the completed requests of each priority class."""
    out: dict[int, list[float]] = {}
    for t, p in zip(outcome.timelines, outcome.priorities, strict=True):
        if t.success:
            out.setdefault(int(p), []).append(t.latency_s)
    return {p: np.asarray(v) for p, v in out.items()}


def _ratios(plain: np.ndarray, high: np.ndarray, normal: np.ndarray) -> tuple[float, float]:
    n99 = float(np.percentile(normal, 99))
    return n99 / float(np.percentile(high, 99)), n99 / float(np.percentile(plain, 99))


def pooled(seeds: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], rng: np.random.Generator,
           resamples: int = RESAMPLES) -> dict[str, Any]:
    """The two ratios over the union of every seed's (no-classes normal, HIGH, normal) E2E
    latencies, each with a 95% bootstrap interval (resampling within each seed and list)."""
    union = [np.concatenate([s[k] for s in seeds]) for k in range(3)]
    ratio, vs_plain = _ratios(*union)
    draws = np.empty((resamples, 2))
    for b in range(resamples):
        parts = [[rng.choice(s[k], size=len(s[k])) for s in seeds] for k in range(3)]
        draws[b] = _ratios(*(np.concatenate(p) for p in parts))
    lo, hi = np.percentile(draws, [2.5, 97.5], axis=0)
    return {"normal_over_high_e2e_p99": ratio, "normal_over_high_ci95": [lo[0], hi[0]],
            "normal_e2e_p99_vs_no_classes": vs_plain, "vs_no_classes_ci95": [lo[1], hi[1]],
            "high_requests": len(union[1]), "normal_requests": len(union[2]),
            "met": ratio >= TARGET_RATIO and vs_plain <= TARGET_NORMAL}


def section(spec: WorkloadSpec, seeds: Sequence[int], high_fraction: float, headroom_fraction: float,
            step_budget: int, run: Runner, class_table: Callable[[dict[str, dict[str, Any]]], str],
            rng: np.random.Generator) -> dict[str, Any]:
    """Run every seed's four runs, printing each seed's table and ratios as it goes; then judge each
    variant pooled over the seeds. Returns the runs' results, the per-seed ratios and the verdicts."""
    runs: dict[int, dict[str, Any]] = {}
    per_seed: dict[int, dict[str, dict[str, float]]] = {}
    latencies: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    for seed in seeds:
        outcomes = {name: run(exp, f"priorities seed {seed}, {name}")
                    for name, exp in experiments(replace(spec, seed=seed), high_fraction, headroom_fraction,
                                                      step_budget).items()}
        runs[seed] = {name: o.results for name, o in outcomes.items()}
        plain = e2e_by_class(outcomes["no classes"])[Priority.NORMAL]
        per_seed[seed] = {}
        for name, o in outcomes.items():
            if name == "no classes":
                continue
            e2e = e2e_by_class(o)
            triple = (plain, e2e[Priority.HIGH], e2e[Priority.NORMAL])
            latencies.setdefault(name, []).append(triple)
            ratio, vs_plain = _ratios(*triple)
            per_seed[seed][name] = {"normal_over_high_e2e_p99": ratio, "normal_e2e_p99_vs_no_classes": vs_plain}
        print(f"\npriorities, sharegpt-gamma4 at {spec.request_rate:g} req/s, step budget {step_budget}, seed {seed}")
        print(class_table(runs[seed]))
        print("normal / HIGH P99 E2E, normal vs no classes: " + "; ".join(
            f"{name} {r['normal_over_high_e2e_p99']:.3f}, {r['normal_e2e_p99_vs_no_classes']:.3f}"
            for name, r in per_seed[seed].items()))
    verdicts = {name: pooled(triples, rng) for name, triples in latencies.items()}
    print(f"\npriorities pooled over seeds {list(seeds)} (targets: normal / HIGH P99 E2E >= {TARGET_RATIO}, "
          f"normal vs no classes <= {TARGET_NORMAL}):")
    for name, v in verdicts.items():
        lo, hi = v["normal_over_high_ci95"]
        vlo, vhi = v["vs_no_classes_ci95"]
        print(f"  {name:<24} {v['normal_over_high_e2e_p99']:.3f} (95% CI {lo:.3f}-{hi:.3f}), "
              f"{v['normal_e2e_p99_vs_no_classes']:.3f} ({vlo:.3f}-{vhi:.3f}): {'met' if v['met'] else 'not met'}")
    return {"runs": runs, "per_seed": per_seed, "pooled": verdicts, "met": verdicts["default"]["met"]}
