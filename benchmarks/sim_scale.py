"""How fast the simulator runs: wall time for growing clusters and request counts.

    python -m benchmarks.sim_scale            # 16/64/256 instances, up to 100,000 requests
    python -m benchmarks.sim_scale --quick    # small points, seconds
    python -m benchmarks.sim_scale --loads    # 100,000 requests on 256 instances, light to overloaded

`--loads` is the other view, the cost at graded load (`benchmarks/sim_loads.py`): a synthetic
trace (log-normal lengths, Gamma CV 3 arrivals, round-robin) at half, once and 1.5 times
`--capacity-rps`, each level's wall and CPU time, steps, events, steps/s and peak memory, measured
in a fresh process each. Writes results/sim_loads.json.

Workload: the Azure LLM conversation trace at its own lengths, repeated as often as needed
(`controlplane.workload.cycle`), its arrival times compressed so that every instance gets the same
request rate (`--rate-per-instance`) at every point: the cluster's load stays the same while it
grows. A10 instances serving Llama-2-7B, roofline step times. The baseline of the ratios is the
smallest point, measured in the same run; one point is also run step by step (every engine step
its own event, `max_run_steps=1`), which must give identical results, to show what decode runs
save. Writes results/sim_scale.json and docs/img/sim_scale.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from controlplane.runtime.sim.experiment import Experiment, run_experiment
from controlplane.runtime.sim.report import ProgressBar, pyplot, save_figure
from controlplane.workload import AZURE_CONV_RATE, WorkloadSpec

FULL = ((16, 6_250), (64, 25_000), (256, 25_000), (256, 100_000))
QUICK = ((4, 400), (16, 1_600))
STEPWISE_FULL = (64, 25_000)
STEPWISE_QUICK = (16, 1_600)


def measure(
    instances: int, requests: int, rate_per_instance: float, policy: str, max_run_steps: int = 256
) -> tuple[dict[str, float], dict[str, object]]:
    """One point: simulate and time it. Returns the timing row and the run's results."""
    workload = WorkloadSpec(trace="azure-conv", num_requests=requests,
                            rate_scale=instances * rate_per_instance / AZURE_CONV_RATE)
    exp = Experiment(workload, policy=policy, instances=instances, max_run_steps=max_run_steps)
    label = f"{instances} x {requests}" + (" step by step" if max_run_steps == 1 else "")
    start = time.perf_counter()
    outcome = run_experiment(exp, ProgressBar(sys.stderr, label=label))
    wall = time.perf_counter() - start
    r = outcome.results
    row = {
        "instances": instances, "requests": requests, "max_run_steps": max_run_steps,
        "virtual_s": r["duration_s"], "steps": r["steps"], "events": r["events"], "wall_s": wall,
        "steps_per_s": r["steps"] / wall, "events_per_s": r["events"] / wall,
        "us_per_request": 1e6 * wall / requests, "completed": r["completed"], "ttft_p99_s": r["ttft"]["p99"],
        "busy_fraction": r["busy_fraction"],
    }
    return row, r


def report(points: list[dict[str, float]], stepwise: dict[str, float], same: bool) -> str:
    base = points[0]
    header = (f"{'instances':>9} {'requests':>9} {'virtual s':>10} {'steps':>11} {'events':>10} {'wall s':>8} "
              f"{'steps/s':>10} {'events/s':>9} {'us/request':>10} {'x wall/request':>14} {'busy':>6}")
    lines = [header]
    for p in [*points, stepwise]:
        ratio = p["us_per_request"] / base["us_per_request"]
        lines.append(f"{p['instances']:>9} {p['requests']:>9} {p['virtual_s']:>10,.0f} {p['steps']:>11,} "
                     f"{p['events']:>10,} {p['wall_s']:>8.1f} {p['steps_per_s']:>10,.0f} {p['events_per_s']:>9,.0f} "
                     f"{p['us_per_request']:>10,.0f} {ratio:>14.2f} {p['busy_fraction']:>6.0%}"
                     + ("  (step by step)" if p is stepwise else ""))
    runs = next(p for p in points if (p["instances"], p["requests"]) == (stepwise["instances"], stepwise["requests"]))
    lines.append(f"decode runs vs step by step at {stepwise['instances']} x {stepwise['requests']:,}: "
                 f"{stepwise['wall_s'] / runs['wall_s']:.1f}x faster, "
                 f"{stepwise['events'] / runs['events']:.1f}x fewer events, results identical: {'yes' if same else 'NO'}")
    return "\n".join(lines)


def plot(points: list[dict[str, float]], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for n in sorted({p["instances"] for p in points}):
        pts = [p for p in points if p["instances"] == n]
        ax.plot([p["requests"] for p in pts], [p["wall_s"] for p in pts], "o-", label=f"{n} instances")
    ax.axhline(60, color="grey", linestyle="--", label="60 s target")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("simulated requests")
    ax.set_ylabel("wall time (s)")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    save_figure(plt, fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small points only")
    parser.add_argument("--rate-per-instance", type=float, default=0.6,
                        help="requests/s per A10 instance (default 0.6)")
    parser.add_argument("--policy", default="least-requests")
    parser.add_argument("--out", default="results/sim_scale.json")
    parser.add_argument("--plot", default="docs/img/sim_scale.png")
    parser.add_argument("--loads", action="store_true", help="the graded-load grid instead (see above)")
    parser.add_argument("--capacity-rps", type=float, default=267.0,
                        help="--loads: the saturating rate of 256 instances, req/s (default 267: overloaded "
                             "is then 400)")
    parser.add_argument("--loads-out", default="results/sim_loads.json")
    args = parser.parse_args(argv)
    if args.loads:
        return run_loads(args)
    grid, (sn, sr) = (QUICK, STEPWISE_QUICK) if args.quick else (FULL, STEPWISE_FULL)
    points, same_point = [], None
    for n, r in grid:
        row, results = measure(n, r, args.rate_per_instance, args.policy)
        points.append(row)
        if (n, r) == (sn, sr):
            same_point = results
    stepwise, stepwise_results = measure(sn, sr, args.rate_per_instance, args.policy, max_run_steps=1)
    same = _without_counts(stepwise_results) == _without_counts(same_point)
    print(report(points, stepwise, same))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"policy": args.policy, "rate_per_instance": args.rate_per_instance,
                               "points": points, "step_by_step": stepwise, "identical_results": same},
                              indent=2) + "\n")
    plot(points, Path(args.plot))
    print(f"results: {out}  plot: {args.plot}")
    return 0 if same else 1


def run_loads(args: argparse.Namespace) -> int:
    """The graded-load grid: 100,000 requests on 256 instances (--quick: 2,000 on 16, a sixteenth of
    the rate), each level in a fresh process."""
    from tqdm import tqdm

    from benchmarks import sim_loads

    instances, requests = (16, 2_000) if args.quick else (256, 100_000)
    capacity = args.capacity_rps * instances / 256
    trace = sim_loads.write_trace(Path(args.loads_out).with_suffix(".csv"), requests)
    rows = []
    for level in tqdm(sim_loads.levels(capacity), desc="load levels", unit="level"):
        rows.append(sim_loads.measure_apart(trace, level, instances, requests))
    print(sim_loads.report(rows))
    out = Path(args.loads_out)
    out.write_text(json.dumps({"capacity_rps": capacity, "levels": rows}, indent=2) + "\n")
    print(f"results: {out}")
    return 0


def _without_counts(results: dict[str, object] | None) -> dict[str, object]:
    """Results without the event count, the one figure decode runs change."""
    return {k: v for k, v in (results or {}).items() if k != "events"}


if __name__ == "__main__":
    sys.exit(main())
