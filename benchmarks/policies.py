"""Every baseline dispatch policy on two workloads at three loads, in the simulator.

    python -m benchmarks.policies            # 5 policies x 2 workloads x 3 loads + max-rate search
    python -m benchmarks.policies --quick    # fewer requests, no search (for a smoke run)

Setting (Llumnix's evaluation setting): 16 simulated A10 (24 GB) instances serving Llama-2-7B,
roofline step times, vLLM-default engine sizes (16-token blocks, 2,048-token step budget).
Workloads:
- `azure-conv`: the Azure LLM conversation trace with its own lengths and arrival pattern, arrival
  times compressed to the target mean rate;
- `sharegpt-gamma4`: ShareGPT prompt/output lengths with Gamma arrivals of coefficient of
  variation 4 (bursty, as BurstGPT documents) at the target rate.
SLO (joint, DistServe's attainment): TTFT <= 2 s and TPOT <= 100 ms. The max-rate search finds,
per policy and workload, the highest rate whose attainment is >= 90% (bisection on the rate).
Round-robin is the baseline every ratio refers to, measured in the same run.
Writes results/policies.json, docs/img/policies_<workload>_cdf.png (latency CDFs at the highest
load) and docs/img/policies_attainment.png (attainment vs rate).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controlplane.observability.serving_metrics import SLO
from controlplane.runtime.sim.experiment import Experiment, Outcome, run_experiment
from controlplane.runtime.sim.report import ProgressBar, plot_cdfs, pyplot, save_figure, table
from controlplane.scheduling.policies import BASELINE_POLICIES
from controlplane.workload import AZURE_CONV_RATE, WorkloadSpec

SLO_TARGET = SLO(ttft_ms=2000, tpot_ms=100)
ATTAINMENT_TARGET = 0.9


@dataclass(frozen=True)
class Workload:
    name: str
    rates: tuple[float, float, float]  # requests/s over the 16 instances: light, medium, heavy

    def spec(self, rate: float, requests: int) -> WorkloadSpec:
        if self.name == "azure-conv":
            return WorkloadSpec(trace="azure-conv", num_requests=requests, rate_scale=rate / AZURE_CONV_RATE)
        return WorkloadSpec(trace="sharegpt", num_requests=requests, request_rate=rate, arrival="gamma", cv=4.0)


WORKLOADS = (Workload("azure-conv", (6.0, 8.0, 10.0)), Workload("sharegpt-gamma4", (10.0, 15.0, 20.0)))


def run_one(workload: Workload, policy: str, rate: float, requests: int, quiet: bool) -> Outcome:
    exp = Experiment(workload.spec(rate, requests), policy=policy, instances=16, slo=SLO_TARGET)
    progress = None if quiet else ProgressBar(sys.stderr, label=f"{workload.name} {policy} {rate:g}/s")
    return run_experiment(exp, progress)


def max_rate(workload: Workload, policy: str, requests: int, lo: float, hi: float, steps: int) -> float:
    """Highest rate in [lo, hi] with attainment >= 90%, by bisection (lo if even lo misses)."""
    best = lo
    for _ in range(steps):
        mid = (lo + hi) / 2
        if run_one(workload, policy, mid, requests, quiet=True).results["slo_attainment"] >= ATTAINMENT_TARGET:
            best = lo = mid
        else:
            hi = mid
    return best


def plot_attainment(rows: list[dict[str, Any]], path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(WORKLOADS), figsize=(6 * len(WORKLOADS), 4))
    for ax, workload in zip(axes, WORKLOADS):
        for policy in BASELINE_POLICIES:
            pts = [r for r in rows if r["workload_name"] == workload.name and r["policy"] == policy]
            ax.plot([r["rate"] for r in pts], [100 * r["slo_attainment"] for r in pts], "o-", label=policy)
        ax.axhline(100 * ATTAINMENT_TARGET, color="grey", linestyle="--")
        ax.set_title(f"{workload.name}, 16 x A10, Llama-2-7B")
        ax.set_xlabel("request rate (req/s)")
        ax.set_ylabel("SLO attainment (%)")
        ax.grid(True, alpha=0.3)
    axes[0].legend()
    save_figure(plt, fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000, help="requests per run (default 3000)")
    parser.add_argument("--search-steps", type=int, default=5, help="bisection steps of the max-rate search")
    parser.add_argument("--quick", action="store_true", help="600 requests per run, no search")
    parser.add_argument("--out", default="results/policies.json")
    parser.add_argument("--img-dir", default="docs/img")
    args = parser.parse_args(argv)
    requests = 600 if args.quick else args.requests
    rows: list[dict[str, Any]] = []
    for workload in WORKLOADS:
        for rate in workload.rates:
            outcomes = {p: run_one(workload, p, rate, requests, quiet=False) for p in BASELINE_POLICIES}
            for outcome in outcomes.values():
                rows.append({**outcome.results, "workload_name": workload.name, "rate": rate})
            base = outcomes["round-robin"].results["ttft"]["p99"]
            print(f"\n{workload.name} at {rate:g} req/s ({requests} requests, SLO TTFT 2 s, TPOT 100 ms)")
            print(table([o.results for o in outcomes.values()]))
            print("P99 TTFT vs round-robin: " + ", ".join(
                f"{p} {o.results['ttft']['p99'] / base:.2f}x" for p, o in outcomes.items()))
            if rate == workload.rates[-1]:
                plot_cdfs({p: o.timelines for p, o in outcomes.items()},
                          Path(args.img_dir) / f"policies_{workload.name}_cdf.png",
                          f"{workload.name} at {rate:g} req/s, 16 x A10, Llama-2-7B")
    searched: dict[str, dict[str, float]] = {}
    if not args.quick:
        for workload in WORKLOADS:
            lo, hi = workload.rates[0] / 4, workload.rates[-1] * 1.5
            searched[workload.name] = {
                p: max_rate(workload, p, requests, lo, hi, args.search_steps) for p in BASELINE_POLICIES
            }
            print(f"\nhighest rate at >= 90% attainment, {workload.name}: " + ", ".join(
                f"{p} {r:.2f} req/s" for p, r in searched[workload.name].items()))
    plot_attainment(rows, Path(args.img_dir) / "policies_attainment.png")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"requests": requests, "slo": {"ttft_ms": 2000, "tpot_ms": 100},
                               "runs": rows, "max_rate_at_90pct": searched}, indent=2) + "\n")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
