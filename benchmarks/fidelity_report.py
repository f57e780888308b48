"""The pure parts of the simulator-fidelity benchmark (`benchmarks/sim_fidelity.py`): serving
overheads from lone-request probes, capacity from a rate sweep, the measured-vs-simulated
comparison and its table, run-queue waits from `/proc/.../schedstat`, and the CDF plot.

Everything here is pure except `plot_cdfs`, which writes one file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from controlplane.observability.serving_metrics import BenchmarkMetrics, LatencyStats, RequestTimeline
from controlplane.runtime.sim.host import HostModel
from instances.latency.base import LatencyModel
from instances.latency.shape import StepShape

TOLERANCE = 0.15  # the issue: TTFT and TPOT at P50 and P90 within 15% of measured
METRICS = (("ttft", "TTFT"), ("tpot", "TPOT"), ("itl", "ITL"), ("e2el", "E2E"))
PERCENTILES = (("p50", "median_ms"), ("p90", "p90_ms"), ("p99", "p99_ms"))
CHECKED = {("ttft", "p50"), ("ttft", "p90"), ("tpot", "p50"), ("tpot", "p90")}


# ---- serving overheads ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ServingOverheads:
    """What the serving path adds to the engine step, from lone requests (one at a time, idle cluster).

    - `step_overhead_s` = median TPOT of lone requests of `prompt_len` tokens and `output_len`
      outputs - the latency model's decode step of one sequence at their mean decode context: what
      an instance's step loop adds to each step beyond `Engine.step`;
    - `dispatch_delay_s` = median E2E of lone one-token requests of `prompt_len` tokens - the
      model's prefill of that prompt - `step_overhead_s`: HTTP, the gateway and the dispatch to the
      instance, and the tokens' way back.
    Both are clamped at 0 (`clamped` names those that were negative).
    """

    prompt_len: int
    output_len: int
    one_token_e2e_s: float
    lone_tpot_s: float
    predicted_prefill_s: float
    predicted_decode_s: float
    step_overhead_s: float
    dispatch_delay_s: float
    clamped: tuple[str, ...] = ()

    @classmethod
    def measure(
        cls, model: LatencyModel, prompt_len: int, output_len: int, one_token_e2e_s: float, lone_tpot_s: float
    ) -> ServingOverheads:
        """From the two medians. ValueError unless `prompt_len >= 2` and `output_len >= 2`."""
        if prompt_len < 2 or output_len < 2:
            raise ValueError(f"probes need prompt_len >= 2 and output_len >= 2, got {prompt_len}, {output_len}")
        prefill = model.step_time(StepShape.prefill(prompt_len))
        # decode steps see contexts prompt_len + 1 .. prompt_len + output_len - 1; their mean
        decode = float(np.mean([model.step_time(StepShape.decode(1, prompt_len + i)) for i in range(1, output_len)]))
        step = lone_tpot_s - decode
        dispatch = one_token_e2e_s - prefill - max(step, 0.0)
        clamped = tuple(name for name, v in (("step_overhead_s", step), ("dispatch_delay_s", dispatch)) if v < 0)
        return cls(prompt_len, output_len, one_token_e2e_s, lone_tpot_s, prefill, decode, max(step, 0.0),
                   max(dispatch, 0.0), clamped)


@dataclass(frozen=True)
class BatchProbe:
    """The per-sequence part of the step overhead, from a concurrent probe: `concurrency` requests
    at a time (the lone probes' lengths) spread over `instances` instances, which then all step at
    once with `concurrency / instances` sequences each, on a host whose background CPU during the
    probe was measured. Under that `host` each step runs at `rate`, so

        tpot_s * rate = decode(batch) + step_overhead_s + batch * per_seq_s

    gives `per_seq_s` (clamped at 0): what an instance's step loop spends per scheduled sequence
    (its chunk, detokenization) beyond the lone requests' fixed overhead.
    """

    concurrency: int
    instances: int
    tpot_s: float
    cores: float
    background_cores: float
    rate: float
    predicted_decode_s: float
    per_seq_s: float

    @classmethod
    def measure(cls, model: LatencyModel, overheads: ServingOverheads, concurrency: int, instances: int,
                tpot_s: float, host: HostModel) -> BatchProbe:
        """ValueError unless `concurrency` is a positive multiple of `instances`."""
        if instances < 1 or concurrency < instances or concurrency % instances:
            raise ValueError(f"the batch probe's concurrency ({concurrency}) must be a multiple of the "
                             f"instances ({instances})")
        batch = concurrency // instances
        p, o = overheads.prompt_len, overheads.output_len
        decode = float(np.mean([model.step_time(StepShape.decode(batch, p + i)) for i in range(1, o)]))
        rate = host.rate(instances)
        per_seq = (tpot_s * rate - decode - overheads.step_overhead_s) / batch
        return cls(concurrency, instances, tpot_s, host.cores, host.background_cores, rate, decode, max(per_seq, 0.0))


@dataclass(frozen=True)
class ScaledLatency:
    """A `LatencyModel` whose every step takes `factor` times the inner model's time (the
    fidelity benchmark's diagnostic: steps stretched by a measured run-queue wait)."""

    inner: LatencyModel
    factor: float

    def step_time(self, shape: StepShape) -> float:
        return self.factor * self.inner.step_time(shape)

    def describe(self) -> dict[str, object]:
        return {"kind": "scaled", "factor": self.factor, "inner": self.inner.describe()}


# ---- capacity ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SweepPoint:
    """One run of the capacity sweep: offered rate (inf: all at once) and what came back."""

    offered_rps: float
    requests: int
    completed: int
    achieved_rps: float
    ttft_median_ms: float
    tpot_median_ms: float
    e2e_median_ms: float

    @classmethod
    def of(cls, offered_rps: float, m: BenchmarkMetrics) -> SweepPoint:
        return cls(offered_rps, m.completed + m.failed, m.completed, m.request_throughput, m.ttft.median_ms,
                   m.tpot.median_ms, m.e2el.median_ms)


def capacity(points: Sequence[SweepPoint]) -> float:
    """The highest completed requests/s of any point (the sweep ends with an overloaded or an
    all-at-once point, whose throughput is the cluster's maximum). ValueError when empty or 0."""
    if not points:
        raise ValueError("no sweep points")
    best = max(p.achieved_rps for p in points)
    if not best > 0:
        raise ValueError("no sweep point completed a request")
    return best


# ---- comparison ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Comparison:
    """One percentile of one metric: measured and simulated (ms), and whether it is a checked figure
    (TTFT and TPOT at P50 and P90)."""

    metric: str  # ttft, tpot, itl, e2el
    percentile: str  # p50, p90, p99
    measured_ms: float
    simulated_ms: float
    tolerance: float = TOLERANCE

    @property
    def rel_error(self) -> float:
        """(simulated - measured) / measured; inf when measured is 0 and simulated is not."""
        if self.measured_ms == 0:
            return 0.0 if self.simulated_ms == 0 else float("inf")
        return (self.simulated_ms - self.measured_ms) / self.measured_ms

    @property
    def checked(self) -> bool:
        return (self.metric, self.percentile) in CHECKED

    @property
    def within(self) -> bool:
        return abs(self.rel_error) <= self.tolerance


def _stats(m: BenchmarkMetrics, metric: str) -> LatencyStats:
    return getattr(m, metric)


def compare(measured: BenchmarkMetrics, simulated: BenchmarkMetrics, tolerance: float = TOLERANCE) -> list[Comparison]:
    """TTFT, TPOT, ITL and E2E at P50, P90 and P99, measured vs simulated, in that order."""
    return [
        Comparison(metric, pct, getattr(_stats(measured, metric), field), getattr(_stats(simulated, metric), field),
                   tolerance)
        for metric, _ in METRICS
        for pct, field in PERCENTILES
    ]


def verdict(rows: Sequence[Comparison]) -> tuple[int, int]:
    """(checked figures within tolerance, checked figures)."""
    checked = [r for r in rows if r.checked]
    return sum(r.within for r in checked), len(checked)


def _pct(x: float) -> str:
    return f"{100 * x:+.0f}%" if np.isfinite(x) else "inf"


def format_table(measured: BenchmarkMetrics, simulated: Mapping[str, BenchmarkMetrics], headline: str,
                 tolerance: float = TOLERANCE) -> str:
    """A Markdown table: one row per metric and percentile; measured ms; per simulated variant its
    ms and relative error; the headline variant's verdict on the checked figures ("yes" / "NO"; "-"
    on the reported-only ones). ValueError when `headline` is not a variant."""
    if headline not in simulated:
        raise ValueError(f"headline variant {headline!r} is not among {sorted(simulated)}")
    names = list(simulated)
    header = ["metric", "measured (ms)"]
    for n in names:
        header += [f"{n} (ms)", "error"]
    header.append(f"within {tolerance:.0%} ({headline})")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    per_variant = {n: compare(measured, m, tolerance) for n, m in simulated.items()}
    labels = dict(METRICS)
    for i, row in enumerate(per_variant[headline]):
        cells = [f"{labels[row.metric]} {row.percentile.upper()}", f"{row.measured_ms:.2f}"]
        for n in names:
            r = per_variant[n][i]
            cells += [f"{r.simulated_ms:.2f}", _pct(r.rel_error)]
        cells.append(("yes" if row.within else "**NO**") if row.checked else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


BURST_GAP_S = 1e-4  # inter-token gaps shorter than this: tokens of different steps delivered together


def burst_share(timelines: Sequence[RequestTimeline], gap_s: float = BURST_GAP_S) -> float:
    """The share of the successful requests' inter-token gaps shorter than `gap_s` (0 without gaps).
    An engine step takes far longer, so such a gap means tokens of several steps arrived in one burst."""
    gaps = [g for t in timelines if t.success for g in t.itl_s]
    return sum(g < gap_s for g in gaps) / len(gaps) if gaps else 0.0


def single_burst_share(timelines: Sequence[RequestTimeline], gap_s: float = BURST_GAP_S) -> float:
    """The share of the successful multi-token requests whose tokens all arrived within `gap_s` of
    each other (TPOT under `gap_s`): the whole output in one burst (0 without such requests)."""
    tpots = [v for t in timelines if t.success and (v := t.tpot_s) is not None]
    return sum(v < gap_s for v in tpots) / len(tpots) if tpots else 0.0


# ---- run-queue waits -----------------------------------------------------------------------------
def parse_schedstat(text: str) -> tuple[int, int]:
    """(ns on a CPU, ns waiting on a run queue) from `/proc/PID/task/TID/schedstat`. ValueError on
    anything else."""
    fields = text.split()
    if len(fields) != 3:
        raise ValueError(f"not a schedstat line: {text!r}")
    return int(fields[0]), int(fields[1])


@dataclass(frozen=True)
class ThreadWait:
    """CPU and run-queue seconds of one thread over an interval."""

    cpu_s: float
    wait_s: float

    @property
    def stretch(self) -> float:
        """(cpu + wait) / cpu: how much longer its work took than its CPU time (1 without contention)."""
        return (self.cpu_s + self.wait_s) / self.cpu_s if self.cpu_s > 0 else 1.0


def busiest_threads(before: Mapping[int, Mapping[int, tuple[int, int]]],
                    after: Mapping[int, Mapping[int, tuple[int, int]]]) -> dict[int, ThreadWait]:
    """Per process (pid -> {tid: (cpu ns, wait ns)} snapshots), the thread that used the most CPU
    between the snapshots, with its CPU and run-queue wait. In an instance actor that is the engine's
    step thread. Threads new in `after` count from 0."""
    out = {}
    for pid, threads in after.items():
        old = before.get(pid, {})
        deltas = {tid: (c - old.get(tid, (0, 0))[0], w - old.get(tid, (0, 0))[1]) for tid, (c, w) in threads.items()}
        if deltas:
            cpu, wait = max(deltas.values())
            out[pid] = ThreadWait(cpu / 1e9, wait / 1e9)
    return out


# ---- plot ----------------------------------------------------------------------------------------
def plot_cdfs(measured: Sequence[RequestTimeline], simulated: Mapping[str, Sequence[RequestTimeline]],
              title: str, path: Path) -> None:
    """Save a PNG with the CDFs of TTFT and TPOT (ms, log scale) of the successful requests:
    measured and every simulated variant."""
    # matplotlib is optional (the `bench` extra) and slow to import: only plotting needs it
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    series = {"measured (real cluster)": measured, **{f"simulated: {k}": v for k, v in simulated.items()}}
    figure = Figure(figsize=(12, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    for axes, (name, value) in zip(figure.subplots(1, 2), (("TTFT", _ttft), ("TPOT", _tpot)), strict=True):
        for (label, timelines), style in zip(series.items(), ("-", "--", ":", "-."), strict=False):
            ms = np.sort([1000.0 * v for t in timelines if t.success and (v := value(t)) is not None])
            if len(ms):
                axes.step(ms, np.arange(1, len(ms) + 1) / len(ms), where="post", linestyle=style, label=label)
        axes.set(title=f"{name} CDF", xlabel=f"{name} (ms, log scale)", ylabel="fraction of requests",
                 xscale="log", ylim=(0, 1.02))
        axes.grid(alpha=0.3, which="both")
        axes.legend(loc="lower right", fontsize=8)
    figure.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)


def _ttft(t: RequestTimeline) -> float:
    return t.ttft_s


def _tpot(t: RequestTimeline) -> float | None:
    return t.tpot_s
