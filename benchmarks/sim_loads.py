"""The simulator's cost at graded load: a capacity planner's synthetic trace, light to overloaded.

Used by `python -m benchmarks.sim_scale --loads`. The trace is written in the Azure CSV format:
log-normal prompt lengths (median 500 tokens, at most 8,000) and output lengths (median 130, at
most 2,000), seeded; arrivals are drawn as Gamma with CV 3 at each level's rate. Round-robin
dispatch over A10 instances serving Llama-2-7B (roofline), a context of 10,240 tokens so that no
prompt is refused. Each level runs in a fresh process, so that its CPU time and peak memory are its own.
"""

from __future__ import annotations

import csv
import resource
import time
from datetime import datetime, timedelta
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

PROMPT_MEDIAN, PROMPT_MAX = 500, 8_000
OUTPUT_MEDIAN, OUTPUT_MAX = 130, 2_000
SIGMA = 1.0
CV = 3.0
MAX_MODEL_LEN = 10_240


def write_trace(path: Path, requests: int, seed: int = 0) -> Path:
    """`requests` rows of the synthetic trace, as an Azure CSV (timestamps 1 s apart; the
    benchmark draws its own arrivals)."""
    rng = np.random.default_rng(seed)
    prompts = np.clip(rng.lognormal(np.log(PROMPT_MEDIAN), SIGMA, requests), 1, PROMPT_MAX).astype(int)
    outputs = np.clip(rng.lognormal(np.log(OUTPUT_MEDIAN), SIGMA, requests), 1, OUTPUT_MAX).astype(int)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["TIMESTAMP", "ContextTokens", "GeneratedTokens"])
        start = datetime(2026, 1, 1)
        for i, (p, o) in enumerate(zip(prompts, outputs)):
            w.writerow([(start + timedelta(seconds=i)).isoformat(sep=" ", timespec="microseconds"), p, o])
    return path


@dataclass(frozen=True)
class Level:
    name: str
    rate: float  # requests/s for the whole cluster


def measure(trace: Path, level: Level, instances: int, requests: int) -> dict[str, Any]:
    """Simulate one level in this process; wall and CPU seconds, steps, events, peak RSS."""
    from controlplane.runtime.sim.experiment import Experiment, run_experiment
    from controlplane.workload import WorkloadSpec

    spec = WorkloadSpec(trace=str(trace), num_requests=requests, request_rate=level.rate, arrival="gamma", cv=CV)
    exp = Experiment(spec, policy="round-robin", instances=instances, max_model_len=MAX_MODEL_LEN)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    r = run_experiment(exp).results
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {"level": level.name, "rate": level.rate, "instances": instances, "requests": requests,
            "wall_s": wall, "cpu_s": cpu, "steps": r["steps"], "events": r["events"],
            "steps_per_s": r["steps"] / wall, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "preemptions": r["preemptions"], "ttft_p50_s": r["ttft"]["p50"], "ttft_p99_s": r["ttft"]["p99"],
            "completed": r["completed"]}


def measure_apart(trace: Path, level: Level, instances: int, requests: int) -> dict[str, Any]:
    """`measure` in a fresh process (spawned: nothing inherited), so its peak memory is its own."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(measure, trace, level, instances, requests).result()


def levels(capacity_rps: float) -> list[Level]:
    """Light (half the capacity), saturated (the capacity) and overloaded (1.5 times it)."""
    return [Level("light", 0.5 * capacity_rps), Level("saturated", capacity_rps),
            Level("overloaded", 1.5 * capacity_rps)]


def report(rows: list[dict[str, Any]]) -> str:
    header = (f"{'level':<11} {'req/s':>7} {'inst':>5} {'requests':>9} {'wall s':>8} {'cpu s':>8} {'steps':>10} "
              f"{'events':>9} {'steps/s':>9} {'peak MB':>8} {'preempt':>8} {'TTFT p50 s':>10} {'<=60 s':>6}")
    lines = [header]
    for r in rows:
        lines.append(f"{r['level']:<11} {r['rate']:>7.0f} {r['instances']:>5} {r['requests']:>9,} {r['wall_s']:>8.1f} "
                     f"{r['cpu_s']:>8.1f} {r['steps']:>10,} {r['events']:>9,} {r['steps_per_s']:>9,.0f} "
                     f"{r['peak_rss_mb']:>8.0f} {r['preemptions']:>8,} {r['ttft_p50_s']:>10.2f} "
                     f"{'yes' if r['wall_s'] <= 60 else 'no':>6}")
    return "\n".join(lines)
