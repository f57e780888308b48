"""`flotilla sim`: replay a trace through the simulated cluster and write `results.json` and plots."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controlplane.observability.serving_metrics import SLO
from controlplane.runtime.private_ray import prepare_private_ray
from controlplane.workload import TraceFormatError, WorkloadSpec
from flotilla.errors import ConfigError
from instances.engine.config import DEFAULT_HIGH_PRIORITY_PREFILL_TOKENS

if TYPE_CHECKING:
    from controlplane.runtime.sim.experiment import Experiment


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sim", help="simulate a cluster serving a trace, in virtual time",
                       description="Replay a trace through simulated instances that run the real engine "
                                   "scheduler and the real scheduling framework; step times come from a "
                                   "latency model. Writes results.json and a latency-CDF plot. "
                                   "`flotilla sim sweep --help`: a grid of policies x rates x seeds on Ray.")
    p.add_argument("--policy", default="round-robin",
                   help="round-robin (default), random, least-requests, power-of-two, infaas, "
                        "llumnix (freeness dispatch + live migration)")
    p.add_argument("--rate", type=float,
                   help="draw arrivals at this many requests/s (required meaning for length-only traces; "
                        "default for them: all at once)")
    p.add_argument("--seed", type=int, default=0)
    _experiment_flags(p)
    p.add_argument("--out", default="results.json", help="results file (default results.json)")
    p.add_argument("--plot", help="latency CDF PNG (default: next to --out, .png)")
    p.add_argument("--no-plot", action="store_true", help="write no plot")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    commands = p.add_subparsers(dest="sim_command", metavar="{sweep}")
    s = commands.add_parser("sweep", help="a grid of policies x request rates x seeds, each point a Ray task",
                            description="Run a grid of policies x request rates x seeds as independent "
                                        "simulations on Ray (a private local Ray using every core, or the "
                                        "cluster at --ray-address): one results file per point, a summary "
                                        "table, summary.json and summary.png.")
    s.add_argument("--policies", required=True, type=_names, help="comma-separated, e.g. round-robin,infaas")
    s.add_argument("--rates", required=True, type=_numbers(float), help="requests/s, comma-separated")
    s.add_argument("--seeds", default=[0], type=_numbers(int), help="comma-separated (default 0)")
    s.add_argument("--arrival", choices=["poisson", "gamma"], default="poisson", help="arrival process")
    _experiment_flags(s, arrival=False)
    s.add_argument("--out-dir", default="results/sweep", help="where the results go (default results/sweep)")
    s.add_argument("--ray-address", metavar="ADDRESS", help="run on this Ray cluster (default: a local one)")
    s.add_argument("--no-plot", action="store_true", help="write no plot")
    s.add_argument("--quiet", action="store_true", help="no progress bar")


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give at least one name")
    return names


def _numbers(kind: type) -> Any:
    def parse(text: str) -> list[Any]:
        try:
            values = [kind(v) for v in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a comma-separated list of {kind.__name__}s: {text!r}") from None
        if any(v < 0 for v in values):
            raise argparse.ArgumentTypeError(f"values must be >= 0: {text!r}")
        return values
    return parse


def _experiment_flags(p: argparse.ArgumentParser, arrival: bool = True) -> None:
    """The flags `sim` and `sim sweep` share (all but the grid's)."""
    p.add_argument("--trace",
                   help="azure-conv, mooncake, sharegpt, or a trace file of one of those formats (required)")
    p.add_argument("--instances", type=int, default=16, help="simulated instances (default 16)")
    p.add_argument("--gpu", default="A10", help="A10 (default), A100-80GB, H100, H200")
    p.add_argument("--model-config", default="llama-2-7b",
                   help="llama-2-7b (default), llama-3-8b, llama-2-13b, llama-2-70b, qwen-moe")
    p.add_argument("--latency", metavar="FILE",
                   help="DistServe-form coefficients (e.g. from `flotilla profile --fit`) instead of the roofline")
    p.add_argument("--num-requests", type=int, help="replay only the first N requests")
    if arrival:
        p.add_argument("--arrival", choices=["poisson", "gamma"], default="poisson", help="arrival process for --rate")
    p.add_argument("--cv", type=float, default=1.0, help="coefficient of variation of gamma arrivals")
    p.add_argument("--rate-scale", type=float, default=1.0, help="divide inter-arrival times by X")
    p.add_argument("--length-scale", type=float, default=1.0, help="multiply prompt and output lengths by X")
    p.add_argument("--high-priority-fraction", type=float, default=0.0,
                   help="share of requests made high-priority (default 0)")
    p.add_argument("--offline-rate", type=float, default=0.0,
                   help="offline (best-effort) requests/s added beside the trace (default 0)")
    p.add_argument("--migration-interval-ms", type=float, default=50.0,
                   help="controller tick of a migrating policy, virtual ms (default 50)")
    p.add_argument("--migration-bandwidth-gbs", type=float, default=10.0,
                   help="KV copy bandwidth between instances, GB/s (default 10)")
    p.add_argument("--slo-ttft-ms", type=float, help="TTFT target for SLO attainment and goodput")
    p.add_argument("--slo-tpot-ms", type=float, help="TPOT target for SLO attainment and goodput")
    p.add_argument("--num-blocks", type=int, help="KV blocks per instance (default: what fits the GPU)")
    p.add_argument("--block-size", type=int, default=16)
    p.add_argument("--max-num-seqs", type=int, default=256)
    p.add_argument("--max-batched-tokens", type=int, default=2048)
    p.add_argument("--max-model-len", type=int, default=4096)
    p.add_argument("--high-priority-prefill-tokens", type=int, default=DEFAULT_HIGH_PRIORITY_PREFILL_TOKENS,
                   help="prompt tokens a step computes while a HIGH request runs on the instance "
                        f"(default {DEFAULT_HIGH_PRIORITY_PREFILL_TOKENS}; 0: no cap)")


def experiment_of(args: argparse.Namespace) -> Experiment:
    """The `Experiment` the flags describe. Raises ValueError / ConfigError naming the bad flag.
    (The simulator is imported here, not at module level, so `flotilla --help` stays quick.)"""
    from controlplane.runtime.sim.experiment import Experiment

    if args.trace is None:
        raise ValueError("--trace is required (azure-conv, mooncake, sharegpt or a trace file)")
    if args.instances < 1:
        raise ValueError(f"--instances must be >= 1, got {args.instances}")
    if args.high_priority_prefill_tokens < 0:
        raise ValueError(f"--high-priority-prefill-tokens must be >= 0 (0: no cap), got "
                         f"{args.high_priority_prefill_tokens}")
    slo = None
    if args.slo_ttft_ms is not None or args.slo_tpot_ms is not None:
        slo = SLO(ttft_ms=args.slo_ttft_ms, tpot_ms=args.slo_tpot_ms)
    policy, rate, seed = _point(args)
    workload = WorkloadSpec(
        trace=args.trace, num_requests=args.num_requests, request_rate=rate, arrival=args.arrival,
        cv=args.cv, rate_scale=args.rate_scale, length_scale=args.length_scale, seed=seed,
        high_priority_fraction=args.high_priority_fraction, offline_rate=args.offline_rate,
    )
    return Experiment(
        workload=workload, policy=policy, instances=args.instances, gpu=args.gpu,
        model=args.model_config, latency_file=args.latency, block_size=args.block_size,
        num_blocks=args.num_blocks, max_num_seqs=args.max_num_seqs,
        max_num_batched_tokens=args.max_batched_tokens, max_model_len=args.max_model_len,
        high_priority_prefill_tokens=args.high_priority_prefill_tokens or None,
        seed=seed, slo=slo, migration_interval_s=args.migration_interval_ms / 1000.0,
        migration_bandwidth_bytes_s=args.migration_bandwidth_gbs * 1e9,
    )


def _point(args: argparse.Namespace) -> tuple[str, float | None, int]:
    """The policy, rate and seed of `sim`, or the first point of `sim sweep` (each point sets its own)."""
    if args.sim_command == "sweep":
        return args.policies[0], args.rates[0], args.seeds[0]
    return args.policy, args.rate, args.seed


def run(args: argparse.Namespace) -> int:
    """Run the simulation (or the sweep) the flags describe. Bad input raises ConfigError (one line
    for the CLI)."""
    if args.sim_command == "sweep":
        return run_sweep_command(args)
    from controlplane.runtime.sim.experiment import run_experiment
    from controlplane.runtime.sim.report import ProgressBar, plot_cdfs, table

    try:
        exp = experiment_of(args)
        progress = None if args.quiet else ProgressBar(sys.stderr)
        outcome = run_experiment(exp, progress)
    except (ValueError, FileNotFoundError) as e:  # TraceFormatError is a ValueError
        kind = "trace" if isinstance(e, (TraceFormatError, FileNotFoundError)) else "input"
        raise ConfigError(f"bad {kind}: {e}") from e
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(outcome.results, indent=2) + "\n")
    print(table([outcome.results]))
    print(f"results: {out}")
    if not args.no_plot:
        plot = Path(args.plot) if args.plot else out.with_suffix(".png")
        plot_cdfs({exp.policy: outcome.timelines}, plot,
                  f"{exp.policy}: {exp.instances} x {exp.gpu} {exp.model}, trace {args.trace}")
        print(f"plot: {plot}")
    return 0


def run_sweep_command(args: argparse.Namespace) -> int:
    """`flotilla sim sweep`: every point checked first (a bad flag or policy fails before Ray starts)."""
    from controlplane.runtime.sim.experiment import sim_config
    from controlplane.runtime.sim.sweep import grid, plot_summary, run_sweep, summary_table

    points = grid(args.policies, args.rates, args.seeds)
    if args.ray_address is None:
        prepare_private_ray(os.environ)  # before Ray is imported
    try:
        base = experiment_of(args)
        for point in points:
            sim_config(point.experiment(base))
    except (ValueError, FileNotFoundError) as e:
        kind = "trace" if isinstance(e, (TraceFormatError, FileNotFoundError)) else "input"
        raise ConfigError(f"bad {kind}: {e}") from e
    out = Path(args.out_dir)
    rows, workers = run_sweep(base, points, out, address=args.ray_address, show_progress=not args.quiet)
    print(summary_table(rows))
    print(f"{len(points)} points on {workers} worker process(es); results: {out}/")
    if not args.no_plot:
        plot_summary(rows, out / "summary.png", f"{args.trace}: {base.instances} x {base.gpu} {base.model}")
        print(f"plot: {out / 'summary.png'}")
    return 0
