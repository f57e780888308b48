"""How a simulation shows itself: a progress line while it runs, a table and CDF plots after."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from controlplane.observability.serving_metrics import RequestTimeline


class ProgressBar:
    """A `Progress` callback that redraws one stderr line at most every `interval_s` of wall time."""

    def __init__(self, out: TextIO, label: str = "sim", interval_s: float = 0.5, width: int = 30) -> None:
        self._out = out
        self._label = label
        self._interval_s = interval_s
        self._width = width
        self._start = time.perf_counter()
        self._last = -interval_s

    def __call__(self, finished: int, total: int, now_s: float) -> None:
        wall = time.perf_counter() - self._start
        if finished < total and wall - self._last < self._interval_s:
            return
        self._last = wall
        filled = self._width * finished // max(total, 1)
        bar = "#" * filled + "." * (self._width - filled)
        self._out.write(f"\r[{self._label}] [{bar}] {finished}/{total} requests, "
                        f"virtual {now_s:,.1f} s, wall {wall:.1f} s")
        if finished >= total:
            self._out.write("\n")
        self._out.flush()


def table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A terminal table of results dicts (one row per run): latencies in ms, rates, cost."""
    header = ("policy", "inst", "reqs", "fail", "TTFT p50/p90/p99 ms", "TPOT p50/p90/p99 ms",
              "E2E p99 s", "tok/s", "SLO att.", "goodput", "preempt", "inst-s")
    lines = []
    for r in rows:
        att = r.get("slo_attainment")
        good = r.get("goodput_rps")
        lines.append((
            str(r["policy"]), str(r["instances"]), str(r["requests"]), str(r["failed"]),
            _triple(r["ttft"]), _triple(r["tpot"]), f"{r['e2e']['p99']:.2f}",
            f"{r['throughput_tokens_per_s']:,.0f}",
            "-" if att is None else f"{100 * att:.1f}%", "-" if good is None else f"{good:.2f}/s",
            str(r["preemptions"]), f"{r['instance_seconds']:,.0f}",
        ))
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    out = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    out += ["  ".join(c.rjust(w) for c, w in zip(line, widths)) for line in lines]
    return "\n".join(out)


def _triple(stats: Mapping[str, float]) -> str:
    return f"{1000 * stats['p50']:.0f}/{1000 * stats['p90']:.0f}/{1000 * stats['p99']:.0f}"


def plot_cdfs(runs: Mapping[str, Sequence[RequestTimeline]], path: Path, title: str) -> None:
    """Latency CDFs (TTFT, TPOT, E2E) of successful requests, one curve per named run, to a PNG.

    Raises ModuleNotFoundError with an install hint when matplotlib is missing."""
    import numpy as np

    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    metrics = (("TTFT (s)", lambda t: t.ttft_s), ("TPOT (s)", lambda t: t.tpot_s),
               ("E2E (s)", lambda t: t.latency_s))
    for ax, (name, metric) in zip(axes, metrics):
        for label, timelines in runs.items():
            values = np.sort([v for t in timelines if t.success and (v := metric(t)) is not None])
            if len(values):
                ax.plot(values, np.arange(1, len(values) + 1) / len(values), label=label)
        ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel("fraction of requests")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend()
    fig.suptitle(title)
    save_figure(plt, fig, path)


def save_figure(plt: Any, fig: Any, path: Path) -> None:
    """Lay out `fig`, write it to `path` as a PNG (creating the directory) and close it."""
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError("plots need matplotlib: pip install 'flotilla[bench]'") from e
    return plt
