"""`flotilla sim sweep`: a grid of policies x request rates x seeds, each point an independent
simulation run as a Ray task (a private local Ray using every core by default, or a cluster).

Each point is `base` with its policy, its workload's request rate and seed, and its `seed`. Its
results (`run_experiment(...).results`, exactly what `flotilla sim` writes for the same flags) go to
`<out_dir>/<policy>_rate<rate>_seed<seed>.json` as they come in; `summary.json` holds every point's
headline figures, and `summary.png` plots P99 TTFT and SLO attainment against the rate, one line per
policy (the mean over seeds). A point whose simulation fails ends the sweep with its error once the
others have finished (their files are kept).
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from controlplane.runtime.sim.experiment import Experiment, run_experiment


@dataclass(frozen=True)
class SweepPoint:
    policy: str
    rate: float
    seed: int

    @property
    def name(self) -> str:
        return f"{self.policy}_rate{self.rate:g}_seed{self.seed}"

    def experiment(self, base: Experiment) -> Experiment:
        """`base` at this point."""
        workload = replace(base.workload, request_rate=self.rate, seed=self.seed)
        return replace(base, policy=self.policy, seed=self.seed, workload=workload)


def grid(policies: Sequence[str], rates: Sequence[float], seeds: Sequence[int]) -> list[SweepPoint]:
    """Every combination, policies outermost."""
    return [SweepPoint(p, r, s) for p in policies for r in rates for s in seeds]


def simulate(exp: Experiment) -> tuple[dict[str, Any], int]:
    """One point's results and the process that computed them (a Ray task's body)."""
    return run_experiment(exp).results, os.getpid()


def summary_row(point: SweepPoint, results: dict[str, Any]) -> dict[str, Any]:
    return {"policy": point.policy, "rate": point.rate, "seed": point.seed, "requests": results["requests"],
            "ttft_p50_s": results["ttft"]["p50"], "ttft_p99_s": results["ttft"]["p99"],
            "tpot_p99_s": results["tpot"]["p99"], "slo_attainment": results["slo_attainment"],
            "preemptions": results["preemptions"]}


def run_sweep(base: Experiment, points: Sequence[SweepPoint], out_dir: Path, *, address: str | None = None,
              show_progress: bool = True) -> tuple[list[dict[str, Any]], int]:
    """Run every point as a Ray task; returns the summary rows (in `points` order) and how many
    worker processes ran them. Starts a private local Ray unless `address` (then joins it)."""
    import ray
    from tqdm import tqdm

    from controlplane.runtime.ray_cluster import quiet_token_warning

    out_dir.mkdir(parents=True, exist_ok=True)
    owns_ray = not ray.is_initialized()
    if owns_ray:
        quiet_token_warning()
        ray.init(address=address, include_dashboard=False, logging_level="WARNING")
    try:
        task = ray.remote(num_cpus=1)(simulate)
        pending = {task.remote(p.experiment(base)): p for p in points}
        rows: dict[SweepPoint, dict[str, Any]] = {}
        workers: set[int] = set()
        failures: list[tuple[SweepPoint, BaseException]] = []
        with tqdm(total=len(points), desc="sweep", unit="point", disable=not show_progress) as bar:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                point = pending.pop(done[0])
                try:
                    results, pid = ray.get(done[0])
                except ray.exceptions.RayError as e:
                    failures.append((point, e))
                else:
                    workers.add(pid)
                    (out_dir / f"{point.name}.json").write_text(json.dumps(results, indent=2) + "\n")
                    rows[point] = summary_row(point, results)
                bar.update(1)
    finally:
        if owns_ray:
            ray.shutdown()
    if failures:
        point, error = failures[0]
        raise RuntimeError(f"{len(failures)} point(s) failed, first {point.name}: {error}") from error
    ordered = [rows[p] for p in points]
    (out_dir / "summary.json").write_text(json.dumps(ordered, indent=2) + "\n")
    return ordered, len(workers)


def by_policy_and_rate(rows: Iterable[dict[str, Any]], key: str) -> dict[str, dict[float, float | None]]:
    """policy -> rate -> mean of `key` over seeds (None when a point has no value, e.g. no SLO)."""
    groups: dict[str, dict[float, list[Any]]] = {}
    for r in rows:
        groups.setdefault(r["policy"], {}).setdefault(r["rate"], []).append(r[key])
    return {p: {rate: None if None in vals else statistics.fmean(vals) for rate, vals in sorted(rates.items())}
            for p, rates in groups.items()}


def summary_table(rows: Sequence[dict[str, Any]]) -> str:
    """One line per policy and rate: the means over seeds."""
    ttft = by_policy_and_rate(rows, "ttft_p99_s")
    att = by_policy_and_rate(rows, "slo_attainment")
    lines = [f"{'policy':<16} {'rate/s':>8} {'TTFT p99 ms':>12} {'SLO att.':>9}"]
    for policy, rates in ttft.items():
        for rate, p99 in rates.items():
            a = att[policy][rate]
            lines.append(f"{policy:<16} {rate:>8g} {1000 * p99:>12.0f} {'-' if a is None else f'{100 * a:.1f}%':>9}")
    return "\n".join(lines)


def plot_summary(rows: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    """P99 TTFT and SLO attainment against the rate, one line per policy."""
    from controlplane.runtime.sim.report import pyplot, save_figure

    plt = pyplot()
    fig, (ax_ttft, ax_att) = plt.subplots(1, 2, figsize=(11, 4))
    for policy, rates in by_policy_and_rate(rows, "ttft_p99_s").items():
        ax_ttft.plot(list(rates), list(rates.values()), marker="o", label=policy)
    for policy, rates in by_policy_and_rate(rows, "slo_attainment").items():
        if None not in rates.values():
            ax_att.plot(list(rates), [100 * v for v in rates.values()], marker="o", label=policy)
    ax_ttft.set_yscale("log")
    ax_ttft.set_xlabel("request rate (req/s)")
    ax_ttft.set_ylabel("P99 TTFT (s)")
    ax_att.set_xlabel("request rate (req/s)")
    ax_att.set_ylabel("SLO attainment (%)")
    ax_ttft.legend()
    fig.suptitle(title)
    save_figure(plt, fig, path)
