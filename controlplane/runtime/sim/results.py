"""A finished simulation as the figures `results.json` holds, computed with the serving benchmark's
own metric definitions (`controlplane.observability.serving_metrics`: vLLM's TTFT, TPOT, ITL and E2E; DistServe's
joint-SLO attainment and goodput)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from controlplane.observability.serving_metrics import (
    BenchmarkMetrics,
    LatencyStats,
    RequestTimeline,
    compute_metrics,
)
from controlplane.runtime.sim.config import SimConfig
from controlplane.runtime.sim.loop import SimRun
from instances.types import Priority


def _seconds(stats: LatencyStats) -> dict[str, float]:
    return {
        "p50": stats.median_ms / 1000.0,
        "p90": stats.p90_ms / 1000.0,
        "p99": stats.p99_ms / 1000.0,
        "mean": stats.mean_ms / 1000.0,
    }


def run_metrics(
    config: SimConfig, run: SimRun, timelines: Sequence[RequestTimeline] | None = None
) -> BenchmarkMetrics:
    """The serving metrics of `run` (duration: virtual time from 0 to the last event), from
    `timelines` when the caller already has them (`run.recorder.timelines()`), else built here."""
    if timelines is None:
        timelines = run.recorder.timelines()
    return compute_metrics(timelines, max(run.duration_s, 1e-9), config.slo)


def results(
    config: SimConfig,
    run: SimRun,
    workload: dict[str, Any] | None = None,
    timelines: Sequence[RequestTimeline] | None = None,
) -> dict[str, Any]:
    """JSON-ready results of one run. Deterministic: equal for equal workload, config and seed.
    `timelines`: as for `run_metrics`.

    Latencies are in seconds. `slo_attainment` and `goodput_rps` are None without an SLO.
    `instance_seconds` is the cost: instances x duration. `busy_fraction` is the share of
    instance-seconds spent stepping.
    """
    m = run_metrics(config, run, timelines)
    instance_seconds = config.instances * run.duration_s
    busy = sum(inst.busy_s for inst in run.instances)
    return {
        "policy": config.policy,
        "instances": config.instances,
        "requests": m.completed + m.failed,
        "completed": m.completed,
        "failed": m.failed,
        "duration_s": run.duration_s,
        "ttft": _seconds(m.ttft),
        "tpot": _seconds(m.tpot),
        "itl": _seconds(m.itl),
        "e2e": _seconds(m.e2el),
        "throughput_tokens_per_s": m.output_throughput,
        "total_throughput_tokens_per_s": m.total_token_throughput,
        "request_throughput_rps": m.request_throughput,
        "slo": None if config.slo is None else asdict(config.slo),
        "slo_attainment": m.slo_attainment,
        "goodput_rps": m.request_goodput,
        "prompt_tokens": m.total_input,
        "cached_prompt_tokens": run.recorder.cached_prompt_tokens,
        "preemptions": sum(inst.preemptions for inst in run.instances),
        "instance_seconds": instance_seconds,
        "busy_fraction": busy / instance_seconds if instance_seconds > 0 else 0.0,
        "events": run.events,
        "steps": run.steps,
        "seed": config.seed,
        "engine": asdict(run.engine),
        "latency_model": config.latency.describe(),
        "serving_overheads": {
            "dispatch_delay_s": config.dispatch_delay_s,
            "step_overhead_s": config.step_overhead_s,
            "step_overhead_per_seq_s": config.step_overhead_per_seq_s,
        },
        "host": None if config.host is None else asdict(config.host),
        "step_noise": None if config.noise is None else config.noise.describe(),
        "workload": workload,
        "classes": class_results(config, run, timelines),
        "migrations": None if config.migration is None else run.migrations.describe(),
    }


CLASS_NAMES = {int(p): p.name.lower() for p in Priority}


def class_results(
    config: SimConfig, run: SimRun, timelines: Sequence[RequestTimeline] | None = None
) -> dict[str, dict[str, Any]]:
    """Latencies per priority class present in the run (`high`, `normal`, `low`, `offline`):
    `requests`, `completed`, and `ttft`, `tpot`, `e2e` as in `results`."""
    if timelines is None:
        timelines = run.recorder.timelines()
    by_class: dict[int, list[RequestTimeline]] = {}
    for t, p in zip(timelines, run.recorder.priorities(), strict=True):
        by_class.setdefault(p, []).append(t)
    out = {}
    for p in sorted(by_class):
        m = compute_metrics(by_class[p], max(run.duration_s, 1e-9), config.slo)
        out[CLASS_NAMES[p]] = {"requests": m.completed + m.failed, "completed": m.completed,
                               "ttft": _seconds(m.ttft), "tpot": _seconds(m.tpot), "e2e": _seconds(m.e2el)}
    return out
