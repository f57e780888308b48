"""Reports of the engine benchmark: the stdout table, the JSON file and the throughput plot."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from benchmarks.engine_bench.result import PointResult, SideResult

SCHEMA_VERSION = 1


def format_table(points: Sequence[PointResult]) -> str:
    """One row per concurrency: tokens/s of both sides, their ratio, our mean TPOT, how much of
    the padded batches' computed output was useful, and the greedy-equality count."""
    header = (
        f"{'conc':>4} {'reqs':>4} {'out tok':>7} | {'ours tok/s':>10} {'hf tok/s':>9} {'ratio':>6} | "
        f"{'ours TPOT ms':>12} {'hf useful':>9} {'identical':>9}"
    )
    rows = [header, "-" * len(header)]
    for p in points:
        tpot = p.ours.mean_tpot_s
        rows.append(
            f"{p.concurrency:>4} {p.num_requests:>4} {p.ours.output_tokens:>7} | "
            f"{p.ours.tokens_per_s:>10.1f} {p.padded.tokens_per_s:>9.1f} {p.speedup:>5.2f}x | "
            f"{'-' if tpot is None else f'{tpot * 1e3:.1f}':>12} "
            f"{p.padded.output_tokens / p.padded.computed_tokens:>9.0%} "
            f"{f'{p.identical_requests}/{p.num_requests}':>9}"
        )
    return "\n".join(rows)


def _side(s: SideResult) -> dict[str, object]:
    return {
        "elapsed_s": s.elapsed_s,
        "output_tokens": s.output_tokens,
        "computed_output_tokens": s.computed_tokens,
        "output_tokens_per_s": s.tokens_per_s,
        "mean_tpot_s": s.mean_tpot_s,
    }


def to_dict(run: dict[str, object], points: Sequence[PointResult]) -> dict[str, object]:
    """JSON-ready results: `run` (command settings, model, machine, checks) plus one entry per point."""
    return {
        "schema_version": SCHEMA_VERSION,
        **run,
        "points": [
            {
                "concurrency": p.concurrency,
                "num_requests": p.num_requests,
                "prompt_tokens": p.prompt_tokens,
                "ours": _side(p.ours),
                "transformers_padded": _side(p.padded),
                "speedup": p.speedup,
                "identical_greedy_requests": p.identical_requests,
            }
            for p in points
        ],
    }


def write_json(data: dict[str, object], path: Path) -> None:
    """Write `data` to `path` (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def plot(points: Sequence[PointResult], title: str, path: Path) -> None:
    """Output tokens/s against concurrency (log-x) for both sides, ratios annotated; a PNG at `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conc = [p.concurrency for p in points]
    ours = [p.ours.tokens_per_s for p in points]
    padded = [p.padded.tokens_per_s for p in points]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(conc, ours, "o-", label="Flotilla engine (continuous batching, paged KV)")
    ax.plot(conc, padded, "s--", label="transformers generate (padded static batches)")
    for c, y, p in zip(conc, ours, points, strict=True):
        ax.annotate(
            f"{p.speedup:.1f}x", (c, y), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8
        )
    ax.set_xscale("log", base=2)
    ax.set_xticks(conc, [str(c) for c in conc])
    ax.set_xlabel("concurrent requests")
    ax.set_ylabel("output tokens / s")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
