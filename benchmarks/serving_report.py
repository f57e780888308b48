"""Reports of a load run: vLLM-style table, JSON with every request, and latency CDF plots."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from benchmarks.loadgen import BenchmarkResult, RequestRecord
from controlplane.observability.serving_metrics import LatencyStats

SCHEMA_VERSION = 1
_WIDTH = 50


def result_to_dict(result: BenchmarkResult) -> dict[str, object]:
    """The run as JSON-ready values: config, metrics and per-request raw timelines.

    Times of a request (`arrival_s` scheduled, `send_s`, `chunk_s`) are seconds since the run
    started; `ttft_s`, `latency_s` and `tpot_s` are derived from them (null when undefined).
    """
    return {
        "schema_version": SCHEMA_VERSION,
        "started_at": result.started_at,
        "config": result.config.describe(),
        "metrics": asdict(result.metrics),
        "requests": [_record_to_dict(r) for r in result.records],
    }


def write_json(result: BenchmarkResult, path: Path) -> None:
    """Write `result_to_dict(result)` to `path` (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result_to_dict(result), allow_nan=False) + "\n", encoding="utf-8")


def format_table(result: BenchmarkResult) -> str:
    """The metrics as a table laid out like vLLM's `benchmark_serving.py` summary."""
    m = result.metrics
    rows = [
        "{s:{c}^{n}}".format(s=" Serving Benchmark Result ", n=_WIDTH, c="="),
        *_workload_rows(result),
        _row("Successful requests:", m.completed),
        _row("Failed requests:", m.failed),
        _row("Benchmark duration (s):", f"{m.duration_s:.2f}"),
        _row("Send lag P50 / P99 (ms):", "{:.2f} / {:.2f}".format(*_send_lag_ms(result.records))),
        _row("Total input tokens:", m.total_input),
        _row("Total generated tokens:", m.total_output),
        _row("Request throughput (req/s):", f"{m.request_throughput:.2f}"),
    ]
    if m.request_goodput is not None and m.slo_attainment is not None:
        rows.append(_row("Request goodput (req/s):", f"{m.request_goodput:.2f}"))
        rows.append(_row("SLO attainment (%):", f"{100 * m.slo_attainment:.2f}"))
    rows += [
        _row("Output token throughput (tok/s):", f"{m.output_throughput:.2f}"),
        _row("Total Token throughput (tok/s):", f"{m.total_token_throughput:.2f}"),
    ]
    rows += _section("Time to First Token", "TTFT", m.ttft)
    rows += _section("Time per Output Token (excl. 1st token)", "TPOT", m.tpot)
    rows += _section("Inter-token Latency", "ITL", m.itl)
    rows += _section("End-to-end Latency", "E2EL", m.e2el)
    rows.append("=" * _WIDTH)
    rows += _error_rows(result.records)
    return "\n".join(rows)


def plot_cdfs(result: BenchmarkResult, path: Path) -> None:
    """Save a PNG with the CDFs of TTFT, TPOT and E2E latency (ms) of the successful requests,
    with the SLO targets drawn where set."""
    # matplotlib is optional (the `bench` extra) and slow to import: only plotting needs it
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    ok = [r.outcome.timeline for r in result.records if r.outcome.timeline.success]
    slo = result.config.slo
    panels = [
        ("TTFT", [t.ttft_s for t in ok], slo.ttft_ms),
        ("TPOT", [tpot for t in ok if (tpot := t.tpot_s) is not None], slo.tpot_ms),
        ("E2E latency", [t.latency_s for t in ok], slo.e2el_ms),
    ]
    figure = Figure(figsize=(13, 4), layout="constrained")
    FigureCanvasAgg(figure)
    for axes, (name, values_s, target_ms) in zip(figure.subplots(1, 3), panels, strict=True):
        ms = sorted(1000.0 * v for v in values_s)
        axes.step(ms, [(i + 1) / len(ms) for i in range(len(ms))], where="post")
        if target_ms is not None:
            axes.axvline(target_ms, color="red", linestyle="--", label=f"SLO {target_ms:g} ms")
            axes.legend(loc="lower right")
        axes.set(title=f"{name} (n={len(ms)})", xlabel="ms", ylabel="fraction of requests", ylim=(0, 1.02))
        axes.grid(alpha=0.3)
    workload = result.config.workload.describe()
    figure.suptitle(
        f"{result.config.model} - {workload['trace'] or 'synthetic'}, "
        f"rate scale {workload['rate_scale']}, length scale {workload['length_scale']}"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)


def _record_to_dict(record: RequestRecord) -> dict[str, object]:
    t = record.outcome.timeline
    return {
        "index": record.index,
        "arrival_s": record.arrival_s,
        "send_s": t.send_s,
        "chunk_s": list(t.chunk_s),
        "prompt_len": t.prompt_len,
        "output_tokens": t.output_tokens,
        "usage_reported": record.outcome.usage_reported,
        "success": t.success,
        "error": t.error,
        "ttft_s": t.ttft_s if t.success else None,
        "latency_s": t.latency_s if t.success else None,
        "tpot_s": t.tpot_s if t.success else None,
    }


def _row(label: str, value: object) -> str:
    return f"{label:<40} {value}"


def _workload_rows(result: BenchmarkResult) -> list[str]:
    w = result.config.workload
    source = w.trace if w.trace is not None else f"synthetic, {w.input_len} in / {w.output_len} out tokens"
    if w.request_rate is None:
        arrivals = "trace timestamps" if w.trace is not None else "all at once (rate inf)"
    else:
        arrivals = f"{w.request_rate:g} req/s, {w.arrival}" + (
            f" cv {w.cv:g}" if w.arrival == "gamma" else ""
        )
    caps = f" (max in {w.max_input_len}, max out {w.max_output_len})"
    return [
        _row("Workload:", f"{source}, {len(result.records)} requests"),
        _row("Arrivals:", arrivals),
        _row("Scaling:", f"rate x{w.rate_scale:g}, length x{w.length_scale:g}{caps}"),
        _row("Max concurrency:", result.config.max_concurrency or "unbounded"),
    ]


def _send_lag_ms(records: tuple[RequestRecord, ...]) -> tuple[float, float]:
    """P50 and P99 of send time - scheduled arrival: how far the client fell behind its schedule
    (slot waits under a concurrency cap included)."""
    lag = LatencyStats.of([r.outcome.timeline.send_s - r.arrival_s for r in records])
    return lag.median_ms, lag.p99_ms


def _error_rows(records: tuple[RequestRecord, ...], shown: int = 3) -> list[str]:
    """The most frequent request errors, with their counts."""
    errors = Counter(r.outcome.timeline.error for r in records if not r.outcome.timeline.success)
    return [f"{count} x {error}" for error, count in errors.most_common(shown)]


def _section(title: str, short: str, stats: LatencyStats) -> list[str]:
    return [
        "{s:{c}^{n}}".format(s=title, n=_WIDTH, c="-"),
        _row(f"Mean {short} (ms):", f"{stats.mean_ms:.2f}"),
        _row(f"Median {short} (ms):", f"{stats.median_ms:.2f}"),
        _row(f"P90 {short} (ms):", f"{stats.p90_ms:.2f}"),
        _row(f"P99 {short} (ms):", f"{stats.p99_ms:.2f}"),
    ]
