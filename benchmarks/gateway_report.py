"""Results of a gateway-capacity run: capacity points, added latency, tables, JSON and a plot.

Everything here is pure except `write_json` and `plot_capacity`, which write one file each.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.loadgen import BenchmarkResult
from controlplane.observability.serving_metrics import LatencyStats

TARGET_RPS = 300.0  # the target: requests/s through one gateway with two instances
CPU_ROLES = ("gateway", "instances", "ray", "client")


@dataclass(frozen=True)
class CapacityPoint:
    """One saturating run (rate inf) at a concurrency cap: throughput, E2E latency, and the CPU
    milliseconds per completed request of each role (`gateway`, `instances`, `ray`, `client`)."""

    max_concurrency: int
    completed: int
    failed: int
    duration_s: float
    request_throughput: float
    e2e: LatencyStats
    cpu_ms_per_request: dict[str, float]

    @classmethod
    def of(cls, max_concurrency: int, result: BenchmarkResult, cpu_s: Mapping[str, float]) -> CapacityPoint:
        """From a run and the CPU seconds each role used during it (divided by the completed
        requests, or by 1 when none completed)."""
        m = result.metrics
        per_request = {role: 1000.0 * s / max(m.completed, 1) for role, s in cpu_s.items()}
        return cls(max_concurrency, m.completed, m.failed, m.duration_s, m.request_throughput, m.e2el, per_request)

    @property
    def gateway_bound_rps(self) -> float:
        """Requests/s the gateway process could serve with one core to itself at this CPU cost
        (inf when it used none)."""
        ms = self.cpu_ms_per_request.get("gateway", 0.0)
        return 1000.0 / ms if ms > 0 else math.inf


@dataclass(frozen=True)
class AddedLatency:
    """Median E2E through the server, median engine-only latency, and their difference (ms).

    `added_ms` is median(server) - median(engine): what HTTP, the gateway, dispatch to an instance
    and the way back add to a request that the engine alone serves in `engine_median_ms`.
    """

    server_median_ms: float
    engine_median_ms: float
    added_ms: float
    server_samples: int
    engine_samples: int

    @classmethod
    def of(cls, server_e2e_s: Sequence[float], engine_s: Sequence[float]) -> AddedLatency:
        """From per-request seconds. Raises ValueError when either sample is empty."""
        if not server_e2e_s or not engine_s:
            raise ValueError("added latency needs at least one server and one engine-only sample")
        server = 1000.0 * statistics.median(server_e2e_s)
        engine = 1000.0 * statistics.median(engine_s)
        return cls(server, engine, server - engine, len(server_e2e_s), len(engine_s))


def best_point(points: Sequence[CapacityPoint]) -> CapacityPoint:
    """The point with the highest request throughput (the first of equals). ValueError if empty."""
    if not points:
        raise ValueError("no capacity points")
    return max(points, key=lambda p: p.request_throughput)


def verdict(points: Sequence[CapacityPoint], target_rps: float = TARGET_RPS) -> str:
    """One line: the best throughput, where it was reached, and whether it meets `target_rps`."""
    best = best_point(points)
    status = "meets" if best.request_throughput >= target_rps else "MISSES"
    return (
        f"capacity {best.request_throughput:.0f} req/s (max concurrency {best.max_concurrency}) "
        f"{status} the {target_rps:g} req/s target"
    )


def format_tables(points: Sequence[CapacityPoint], low: LatencyStats, added: AddedLatency, low_rate: float) -> str:
    """The capacity table, the low-load latency table and the verdict, as Markdown."""
    rows = [
        "| max concurrency | req/s | completed | failed | E2E median / P90 / P99 (ms) "
        "| CPU ms/req: gateway / instances / ray / client | gateway-bound req/s |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {p.max_concurrency} | {p.request_throughput:.1f} | {p.completed} | {p.failed} | "
            f"{p.e2e.median_ms:.1f} / {p.e2e.p90_ms:.1f} / {p.e2e.p99_ms:.1f} | "
            + " / ".join(f"{p.cpu_ms_per_request.get(role, 0.0):.2f}" for role in CPU_ROLES)
            + f" | {p.gateway_bound_rps:.0f} |"
            for p in points
        ),
        "",
        f"| low load ({low_rate:g} req/s, Poisson) | median (ms) | P90 (ms) | P99 (ms) | samples |",
        "|---|---:|---:|---:|---:|",
        f"| E2E via HTTP + gateway + Ray + engine | {low.median_ms:.2f} | {low.p90_ms:.2f} | "
        f"{low.p99_ms:.2f} | {added.server_samples} |",
        f"| engine only (in-process, one at a time) | {added.engine_median_ms:.2f} | | | {added.engine_samples} |",
        f"| **added by gateway + dispatch (median difference)** | **{added.added_ms:.2f}** | | | |",
        "",
        verdict(points),
    ]
    return "\n".join(rows)


def write_json(payload: dict[str, object], path: Path) -> None:
    """Write `payload` (JSON-ready values) to `path`, creating its parents."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, allow_nan=False) + "\n", encoding="utf-8")


def results_payload(
    settings: dict[str, object],
    points: Sequence[CapacityPoint],
    low: LatencyStats,
    added: AddedLatency,
    server_e2e_s: Sequence[float],
    engine_s: Sequence[float],
) -> dict[str, object]:
    """The run as JSON-ready values: settings, capacity points, low-load stats, added latency, the
    verdict, and the raw per-request seconds of both low-load samples."""
    return {
        "settings": settings,
        "target_rps": TARGET_RPS,
        "capacity": [asdict(p) for p in points],
        "low_load_e2e": asdict(low),
        "added_latency": asdict(added),
        "verdict": verdict(points),
        "low_load_server_e2e_s": list(server_e2e_s),
        "low_load_engine_only_s": list(engine_s),
    }


def plot_capacity(
    points: Sequence[CapacityPoint], server_e2e_s: Sequence[float], engine_s: Sequence[float], title: str, path: Path
) -> None:
    """Save a PNG: throughput vs max concurrency with the target line, and the CDFs of low-load
    E2E latency through the server and of engine-only latency (log-scaled ms)."""
    # matplotlib is optional (the `bench` extra) and slow to import: only plotting needs it
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    figure = Figure(figsize=(12, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2)
    xs = [p.max_concurrency for p in points]
    left.plot(xs, [p.request_throughput for p in points], marker="o", label="measured")
    left.axhline(TARGET_RPS, color="red", linestyle="--", label=f"target {TARGET_RPS:g} req/s")
    left.set(xscale="log", xlabel="max concurrency (requests in flight)", ylabel="requests/s",
             title="Capacity: 16 in / 1 out, rate inf", ylim=(0, None))
    left.set_xticks(xs, [str(x) for x in xs])
    left.minorticks_off()
    left.legend(loc="lower right")
    left.grid(alpha=0.3)
    for name, values_s in (("E2E via server", server_e2e_s), ("engine only", engine_s)):
        ms = sorted(1000.0 * v for v in values_s)
        right.step(ms, [(i + 1) / len(ms) for i in range(len(ms))], where="post",
                   label=f"{name} (median {statistics.median(ms):.2f} ms)")
    right.set(xscale="log", xlabel="latency (ms)", ylabel="fraction of requests", ylim=(0, 1.02),
              title="Low load: server E2E vs engine only")
    right.legend(loc="lower right")
    right.grid(alpha=0.3)
    figure.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
