"""Live migration downtime with the real engine: two instance actors on a local Ray, SmolLM2-135M.

    python -m benchmarks.migration            # lengths 256 .. 8,192, 5 migrations each (~12 min)
    python -m benchmarks.migration --quick    # a smoke run: two short lengths

One request of each length is migrated back and forth between the two instances while `--others`
short requests decode on each (`benchmarks/migration_run.py` has the method). Reported per
length, medians over the migrations: the downtime (the time the request was in no running batch,
from the source's last step with it to the destination's first, read from both step traces), the
source's decode step in the same run (its median step interval just before each migration), the
downtime seen at the gateway (its token arrivals, less its normal inter-token time), the
migrator's own downtime (suspend call to commit answer), the stall over the whole migration
(pre-copy stages included), the stages and bytes moved, the longest pause of the source's steps
and its share of the copy, and the slowdown of the other requests on the source (per-token time
while the request is copied over the same requests' just before, with the same batch). The
recompute baseline is the prefill time of the longest request on its instance, in the same run.
Targets: the median downtime at most the source's median decode step at every length, downtime
flat over the lengths (max/min <= 2), at least 10x below recomputing, and the others' slowdown at
most 5%, judged on its mean over every migration (with a 95% confidence interval, beside the
destination's as the machine's noise). Writes results/migration.json and
docs/img/migration_downtime.png.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import json
import math
import os
import platform
import shlex
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

from benchmarks.migration_run import Probe, RunShape, run
from controlplane.runtime.ray_cluster import RayCluster
from controlplane.runtime.sim.report import pyplot, save_figure
from controlplane.transfer.settings import TransferSettings
from instances.engine.config import EngineConfig
from instances.models.loader import load_frontend
from instances.replica import ReplicaSpec

FULL_LENGTHS = (256, 512, 1024, 2048, 4096, 8192)
QUICK_LENGTHS = (256, 512)
IDS = ("instance-a", "instance-b")
FLAT_RATIO = 2.0
BELOW_RECOMPUTE = 10.0
MAX_SLOWDOWN = 1.05


def engine_config(shape: RunShape, max_model_len: int, block_size: int = 16, batched_tokens: int = 512) -> EngineConfig:
    """Room for the longest request plus the others on each instance (the destination's reservation)."""
    tokens = max_model_len + shape.others * (shape.other_prompt + shape.other_max_tokens)
    return EngineConfig(block_size=block_size, num_blocks=math.ceil(tokens / block_size) + 8,
                        max_num_batched_tokens=batched_tokens, max_num_seqs=2 * shape.others + 2,
                        max_model_len=max_model_len, reservation_timeout_s=60.0)


async def measure(
    model: str, shape: RunShape, settings: TransferSettings, threads: int = 1, max_model_len: int | None = None,
    progress=lambda line: None,
) -> dict:
    """Start two instances, run `shape` (`migration_run.run`), close; the run's results plus verdicts."""
    max_model_len = max_model_len or max(shape.lengths)
    engine = engine_config(shape, max_model_len)
    with tempfile.TemporaryDirectory(prefix="migration-traces-") as tmp:
        traces = {iid: Path(tmp) / f"{iid}.csv" for iid in IDS}
        specs = [ReplicaSpec(instance_id=iid, model=model, engine=engine, torch_threads=threads,
                             step_trace=str(traces[iid])) for iid in IDS]
        cluster = await RayCluster.start(specs, transfer=settings)
        try:
            results = await run(cluster, IDS, Probe(traces), shape, max_model_len, progress)
        finally:
            await cluster.close()
    results["engine"] = {k: getattr(engine, k) for k in ("block_size", "num_blocks", "max_num_batched_tokens",
                                                          "max_num_seqs", "max_model_len")}
    results["settings"] = dataclasses.asdict(settings)
    results["verdicts"] = verdicts(results["lengths"], results["migrations"])
    return results


def pooled(rows: list[dict], key: str) -> dict | None:
    """Mean of `key` over the committed migrations with a 95% confidence interval (normal
    approximation: mean +- 1.96 standard errors), and how many; None with fewer than two."""
    vals = [r[key] for r in rows if r["result"] == "committed" and r.get(key) is not None]
    if len(vals) < 2:
        return None
    mean, half = statistics.fmean(vals), 1.96 * statistics.stdev(vals) / math.sqrt(len(vals))
    return {"mean": mean, "ci95": [mean - half, mean + half], "n": len(vals)}


def verdicts(lengths: list[dict], rows: list[dict]) -> dict:
    """Each target: the measured figure and whether it is met (None: not measured). The source
    slowdown is judged on its mean over every migration of every length (one migration's ratio
    moves by +-10% with the machine's noise, as the untouched destination's shows; the lengths'
    medians are in the table), beside the destination's as the noise's reference and the share of
    the copy the source's loop was blocked serving it."""
    down = [s["downtime_s"] for s in lengths if s["downtime_s"] is not None]
    per_length = [{"length": s["length"], "downtime_s": s["downtime_s"], "source_step_s": s["source_step_s"],
                   "met": None if s["downtime_s"] is None or s["source_step_s"] is None
                   else s["downtime_s"] <= s["source_step_s"]} for s in lengths]
    step_met = None if any(x["met"] is None for x in per_length) else all(x["met"] for x in per_length)
    longest = max(lengths, key=lambda s: s["length"])
    recompute = longest["prefill_s"]
    slow = pooled(rows, "source_slowdown")
    flat = max(down) / max(min(down), 1e-6) if down else None
    below = recompute / max(down) if down else None
    return {
        "one_step": {"lengths": per_length, "met": step_met},
        "flat": {"max_over_min": flat, "target": FLAT_RATIO, "met": None if flat is None else flat <= FLAT_RATIO},
        "below_recompute": {"recompute_s": recompute, "recompute_tokens": longest["prompt_tokens"],
                            "factor": below, "target": BELOW_RECOMPUTE,
                            "met": None if below is None else below >= BELOW_RECOMPUTE},
        "source_slowdown": {"pooled": slow, "destination": pooled(rows, "destination_slowdown"),
                            "blocked_share": pooled(rows, "source_blocked_share"), "target": MAX_SLOWDOWN,
                            "met": None if slow is None else slow["mean"] <= MAX_SLOWDOWN},
    }


def _f(v: float | None, scale: float = 1.0, fmt: str = ".0f") -> str:
    return "-" if v is None else format(v * scale, fmt)


def format_table(lengths: list[dict]) -> str:
    head = ("| length | seq tokens | prefill s | downtime ms | source step ms | gateway ms | migrator ms | stall ms "
            "| r TPOT ms | stages | MB moved | migration s | source blocked ms | source blocked % "
            "| source others x | dest. others x |")
    lines = [head, "|" + "---:|" * 16]
    for s in lengths:
        lines.append(
            f"| {s['length']:,} | {_f(s['seq_tokens'], fmt=',.0f')} | {s['prefill_s']:.2f} "
            f"| {_f(s['downtime_s'], 1e3)} | {_f(s['source_step_s'], 1e3)} | {_f(s['gateway_downtime_s'], 1e3)} "
            f"| {_f(s['migrator_downtime_s'], 1e3)} | {_f(s['stall_s'], 1e3)} | {_f(s['tpot_s'], 1e3)} "
            f"| {_f(s['stages'])} | {_f(s['bytes'], 1e-6, '.1f')} | {_f(s['migration_s'], fmt='.2f')} "
            f"| {_f(s['source_blocked_s'], 1e3)} | {_f(s['source_blocked_share'], 100, '.1f')} "
            f"| {_f(s['source_slowdown'], fmt='.2f')} "
            f"| {_f(s['destination_slowdown'], fmt='.2f')} |")
    return "\n".join(lines)


def _pooled(p: dict | None, scale: float = 1.0, unit: str = "x") -> str:
    if p is None:
        return "-"
    lo, hi = p["ci95"]
    return f"{p['mean'] * scale:.3f}{unit} [95% CI {lo * scale:.3f}..{hi * scale:.3f}, n={p['n']}]"


def format_verdicts(v: dict) -> str:
    def met(x: dict) -> str:
        return "not measured" if x["met"] is None else ("MET" if x["met"] else "NOT MET")

    fl, br, sl, st = v["flat"], v["below_recompute"], v["source_slowdown"], v["one_step"]
    steps = ", ".join(f"{x['length']:,}: {_f(x['downtime_s'], 1e3)} / {_f(x['source_step_s'], 1e3)} ms"
                      for x in st["lengths"])
    return "\n".join([
        f"median downtime <= the source's median decode step at every length: {met(st)} ({steps})",
        f"downtime flat over lengths (max/min <= {fl['target']:.0f}): {met(fl)} ({_f(fl['max_over_min'], fmt='.2f')})",
        (f"downtime >= {br['target']:.0f}x below recomputing {br['recompute_tokens']:,} tokens "
         f"({br['recompute_s']:.2f} s): {met(br)} ({_f(br['factor'], fmt='.1f')}x)"),
        (f"slowdown of the source's other requests <= {100 * (sl['target'] - 1):.0f}%: {met(sl)} "
         f"(mean over migrations {_pooled(sl['pooled'])}; destination's, as noise: {_pooled(sl['destination'])}; "
         f"source loop blocked {_pooled(sl['blocked_share'], 100, '%')} of the copy)"),
    ])


def plot(results: dict, title: str, path: Path) -> None:
    plt = pyplot()
    lengths = results["lengths"]
    xs = [s["seq_tokens"] or s["length"] for s in lengths]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
    for key, label in (("downtime_s", "downtime: in no batch"), ("source_step_s", "source's decode step (target)"),
                       ("gateway_downtime_s", "downtime at the gateway"),
                       ("migrator_downtime_s", "suspend call -> commit answer"),
                       ("stall_s", "stall incl. pre-copy (gateway)")):
        pts = [(x, 1e3 * s[key]) for x, s in zip(xs, lengths) if s[key] is not None and s[key] > 0]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=label)
    rec = results["verdicts"]["below_recompute"]["recompute_s"]
    ax.axhline(1e3 * rec, color="red", linestyle="--", label=f"recompute {lengths[-1]['prompt_tokens']:,} tokens")
    ax.axhline(1e3 * rec / BELOW_RECOMPUTE, color="grey", linestyle=":", label="recompute / 10")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sequence length at migration (tokens)")
    ax.set_ylabel("ms (median)")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    for key, label in (("source_slowdown", "source's other requests"),
                       ("destination_slowdown", "destination's other requests")):
        pts = [(x, s[key]) for x, s in zip(xs, lengths) if s[key] is not None]
        bx.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=label)
    bx.axhline(MAX_SLOWDOWN, color="red", linestyle="--", label="+5% target")
    bx.set_xscale("log", base=2)
    bx.set_xlabel("sequence length at migration (tokens)")
    bx.set_ylabel("per-token time during migration / before")
    bx.legend(fontsize=8)
    bx.grid(True, which="both", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    save_figure(plt, fig, path)


def _lengths(text: str) -> tuple[int, ...]:
    values = tuple(sorted({int(v) for v in text.split(",") if v.strip()}))
    if not values or values[0] < 8:
        raise argparse.ArgumentTypeError(f"expected lengths >= 8 separated by commas, got {text!r}")
    return values


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = p.add_argument
    add("--quick", action="store_true", help=f"smoke run: lengths {QUICK_LENGTHS}, 2 migrations each")
    add("--model", default="smollm2-135m", help="model of both instances (default %(default)s)")
    add("--lengths", type=_lengths, default=None, help="comma-separated sequence lengths (default 256..8192)")
    add("--repeats", type=int, default=5, help="migrations per length (default %(default)s)")
    add("--others", type=int, default=3, help="other requests decoding on each instance (default %(default)s)")
    add("--threads", type=int, default=1, help="torch threads per instance (default %(default)s)")
    add("--last-stage-blocks", type=int, default=TransferSettings.last_stage_blocks)
    add("--max-stages", type=int, default=TransferSettings.max_stages)
    add("--transfer-timeout", type=float, default=60.0, help="seconds per migration call (default %(default)s)")
    add("--seed", type=int, default=0)
    add("--out", type=Path, default=None, help="JSON results (default results/migration[_quick].json)")
    add("--plot", type=Path, default=None,
        help="PNG plot (default docs/img/migration_downtime.png, with --quick results/migration_quick.png)")
    args = p.parse_args(argv)
    if args.lengths is None:
        args.lengths = QUICK_LENGTHS if args.quick else FULL_LENGTHS
    if args.quick:
        args.repeats = min(args.repeats, 2)
    args.out = args.out or Path("results/migration_quick.json" if args.quick else "results/migration.json")
    args.plot = args.plot or Path("results/migration_quick.png" if args.quick else "docs/img/migration_downtime.png")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    positions = load_frontend(args.model).config.max_position_embeddings
    if max(args.lengths) > positions:
        sys.exit(f"{args.model} has {positions} positions; the longest length must fit them")
    shape = RunShape(lengths=args.lengths, repeats=args.repeats, others=args.others, seed=args.seed,
                     other_max_tokens=min(1024, positions - 128))
    settings = TransferSettings(last_stage_blocks=args.last_stage_blocks, max_stages=args.max_stages,
                                transfer_timeout_s=args.transfer_timeout)
    started_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")

    def progress(line: str) -> None:
        print(f"[migration] {line}", file=sys.stderr, flush=True)

    max_model_len = min(positions, max(args.lengths) + shape.max_output // 2)  # room to decode past L
    results = asyncio.run(measure(args.model, shape, settings, args.threads, max_model_len, progress))
    print(format_table(results["lengths"]))
    print(format_verdicts(results["verdicts"]))
    command = ["python", "-m", "benchmarks.migration", *(sys.argv[1:] if argv is None else argv)]
    results.update(started_at=started_at, command=shlex.join(command), model=args.model,
                   machine={"cpus": os.cpu_count(), "torch_threads": args.threads, "torch": torch.__version__,
                            "platform": platform.platform(), "loadavg": os.getloadavg()})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    plot(results, f"{args.model}, 2 instances, {args.others} other requests on each, "
                  f"{args.threads} torch thread(s) per instance", args.plot)
    print(f"wrote {args.out} and {args.plot}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
