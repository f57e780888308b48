"""Llumnix dispatch + migration against the baselines, priorities and offline work, in the simulator.

    python -m benchmarks.llumnix_policy            # 3,000 requests a run
    python -m benchmarks.llumnix_policy --quick    # 800 requests a run (a smoke run)
    python -m benchmarks.llumnix_policy --sections priorities --priority-rate 32   # one section

Setting (Llumnix's evaluation setting, as `benchmarks/policies.py`): 16 simulated A10 (24 GB)
instances serving Llama-2-7B, roofline step times, vLLM-default engine sizes. Two workloads:
`sharegpt-gamma4` (ShareGPT lengths, Gamma arrivals of CV 4) and `azure-conv` (the Azure LLM
conversation trace, its arrivals compressed to the target mean rate). Migration: the default
`LlumnixSettings`, at most 1 migration in flight per instance, a 50 ms controller tick, 10 GB/s KV copies, 5 ms fixed overhead.

1. Load: round-robin's P99 / P50 TTFT at each rate of `--scan`; the experiments run at `--rate`
   (the issue asks for a load where that ratio is over 10).
2. Dispatch + migration: every baseline and `llumnix` at that load; P99 TTFT and TPOT ratios.
3. Priorities, at `--priority-rate` over each seed of `--priority-seeds`
   (`benchmarks/llumnix_priorities.py`): `llumnix` with `--high-fraction` of requests HIGH vs the
   same requests all NORMAL, by default, without the prefill cap, and with `--headroom-fraction`
   of the blocks reserved per HIGH request instead of the default (0: little isolation beyond the
   queues' order); judged on the P99s pooled over the seeds, with bootstrap intervals.
4. Offline: `llumnix` with `--offline-rate` offline requests/s added vs without, at `--offline-online-rate`
   (an online load with spare capacity).
Every baseline is measured in the same run. Tables on stdout, progress on stderr; writes
results/llumnix_policy.json and docs/img/llumnix_policy_{ttft_cdf,classes}.png.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.llumnix_priorities import section
from controlplane.runtime.sim.experiment import Experiment, Outcome, run_experiment
from controlplane.runtime.sim.report import ProgressBar, plot_cdfs, pyplot, save_figure, table
from controlplane.workload import AZURE_CONV_RATE, WorkloadSpec

POLICIES = ("round-robin", "least-requests", "power-of-two", "infaas", "llumnix")
SECTIONS = ("scan", "dispatch", "priorities", "offline")


def workload(name: str, rate: float, requests: int) -> WorkloadSpec:
    if name == "azure-conv":
        return WorkloadSpec(trace="azure-conv", num_requests=requests, rate_scale=rate / AZURE_CONV_RATE)
    return WorkloadSpec(trace="sharegpt", num_requests=requests, request_rate=rate, arrival="gamma", cv=4.0)


def run(exp: Experiment, label: str) -> Outcome:
    """One simulated run, with a progress line on stderr."""
    return run_experiment(exp, ProgressBar(sys.stderr, label=label))


def policy_run(spec: WorkloadSpec, policy: str, label: str) -> Outcome:
    """`policy` on 16 instances with its default settings."""
    return run(Experiment(spec, policy=policy, instances=16), label)


def class_table(rows: dict[str, dict[str, Any]]) -> str:
    """P99 TTFT / TPOT / E2E per run and class, in ms and s."""
    header = (f"{'run':<44} {'class':<8} {'reqs':>6} {'TTFT p50 ms':>11} {'TTFT p99 ms':>11} "
              f"{'TPOT p99 ms':>11} {'E2E p99 s':>9}")
    lines = [header]
    for name, r in rows.items():
        for cls, c in r["classes"].items():
            lines.append(f"{name:<44} {cls:<8} {c['requests']:>6} {1000 * c['ttft']['p50']:>11.0f} "
                         f"{1000 * c['ttft']['p99']:>11.0f} {1000 * c['tpot']['p99']:>11.1f} {c['e2e']['p99']:>9.2f}")
    return "\n".join(lines)


def plot_classes(rows: dict[str, dict[str, Any]], path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 6))
    for ax, metric in zip(axes, ("ttft", "e2e")):
        labels, values = [], []
        for name, r in rows.items():
            for cls, c in r["classes"].items():
                labels.append(f"{name}\n{cls}")
                values.append(c[metric]["p99"])
        ax.bar(range(len(values)), values)
        ax.set_xticks(range(len(values)), labels, fontsize=7, rotation=40, ha="right")
        ax.set_ylabel(f"P99 {metric.upper()} (s)")
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle("llumnix: per-class P99 latency (sharegpt-gamma4, 16 x A10, Llama-2-7B)")
    save_figure(plt, fig, path)


def load_scan(args: argparse.Namespace, n: int) -> dict[str, list[dict[str, float]]]:
    """Section 1: round-robin's P99 / P50 TTFT at each rate of the scans."""
    out = {}
    for name, rates in (("sharegpt-gamma4", args.scan), ("azure-conv", args.azure_scan)):
        scan = []
        for rate in (float(r) for r in rates.split(",")):
            r = policy_run(workload(name, rate, n), "round-robin", f"scan rr {name} {rate:g}/s").results
            scan.append({"rate": rate, "ttft_p50": r["ttft"]["p50"], "ttft_p99": r["ttft"]["p99"],
                         "ratio": r["ttft"]["p99"] / r["ttft"]["p50"]})
        print(f"\nround-robin load scan, {name}: " + ", ".join(
            f"{s['rate']:g} req/s P99/P50 TTFT {s['ratio']:.1f}x" for s in scan))
        out[name] = scan
    return out


def dispatch(args: argparse.Namespace, n: int) -> dict[str, Any]:
    """Section 2: every policy at the dispatch loads, the ratios the issue names, a TTFT CDF each."""
    out = {}
    for name, rate in (("sharegpt-gamma4", args.rate), ("azure-conv", args.azure_rate)):
        outcomes = {p: policy_run(workload(name, rate, n), p, f"{name} {p}") for p in POLICIES}
        res = {p: o.results for p, o in outcomes.items()}
        rr, inf, ll = res["round-robin"], res["infaas"], res["llumnix"]
        ratios = {"rr_p99_over_p50_ttft": rr["ttft"]["p99"] / rr["ttft"]["p50"],
                  "ttft_p99_rr_over_llumnix": rr["ttft"]["p99"] / ll["ttft"]["p99"],
                  "ttft_p99_infaas_over_llumnix": inf["ttft"]["p99"] / ll["ttft"]["p99"],
                  "tpot_p99_llumnix_over_rr": ll["tpot"]["p99"] / rr["tpot"]["p99"],
                  "tpot_p99_llumnix_over_infaas": ll["tpot"]["p99"] / inf["tpot"]["p99"]}
        print(f"\n{name} at {rate:g} req/s ({n} requests)")
        print(table(list(res.values())))
        print("migrations (llumnix): " + json.dumps(ll["migrations"]))
        print("ratios: " + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()))
        out[name] = {"rate": rate, "runs": res, "ratios": ratios}
        plot_cdfs({p: o.timelines for p, o in outcomes.items()},
                  Path(args.img_dir) / f"llumnix_policy_{name}_cdf.png",
                  f"{name} at {rate:g} req/s, 16 x A10, Llama-2-7B")
    return out


def offline(args: argparse.Namespace, n: int) -> dict[str, Any]:
    """Section 4: online requests with and without offline ones beside them."""
    online = workload("sharegpt-gamma4", args.offline_online_rate, n)
    orate = f"{args.offline_online_rate:g}/s"
    alone_key, off_key = f"llumnix {orate}", f"llumnix {orate}, +{args.offline_rate:g}/s offline"
    classes = {
        alone_key: policy_run(online, "llumnix", "online").results,
        off_key: policy_run(replace(online, offline_rate=args.offline_rate), "llumnix", "offline").results,
    }
    print(f"\noffline work, sharegpt-gamma4 at {orate}")
    print(class_table(classes))
    alone, off = classes[alone_key], classes[off_key]
    summary: dict[str, Any] = {
        "online_ttft_p99_with_offline_vs_without": off["classes"]["normal"]["ttft"]["p99"]
        / alone["classes"]["normal"]["ttft"]["p99"],
        "online_tpot_p99_with_offline_vs_without": off["classes"]["normal"]["tpot"]["p99"]
        / alone["classes"]["normal"]["tpot"]["p99"],
        "offline_completed": off["classes"]["offline"]["completed"],
        "offline_throughput_tokens_per_s": off["throughput_tokens_per_s"] - alone["throughput_tokens_per_s"],
    }
    print("offline: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.items()))
    return {"rate": args.offline_online_rate, "runs": classes, "summary": summary}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--quick", action="store_true", help="800 requests a run")
    parser.add_argument("--rate", type=float, default=26.0, help="sharegpt-gamma4 rate, req/s (default 26)")
    parser.add_argument("--azure-rate", type=float, default=14.0, help="azure-conv mean rate, req/s (default 14)")
    parser.add_argument("--azure-scan", default="10,12,14", help="rates of the azure-conv round-robin load scan")
    parser.add_argument("--scan", default="15,20,25,26", help="rates of the round-robin load scan")
    parser.add_argument("--high-fraction", type=float, default=0.1)
    parser.add_argument("--priority-rate", type=float, default=34.0,
                        help="sharegpt-gamma4 rate of the priority runs, req/s (default 34)")
    parser.add_argument("--priority-seeds", default="0,1,2,3,4", help="workload seeds of the priority runs")
    parser.add_argument("--headroom-fraction", type=float, default=0.0,
                        help="blocks reserved per HIGH request, as a share, in the fourth priority run (default 0)")
    parser.add_argument("--priority-step-budget", type=int, default=Experiment.max_num_batched_tokens,
                        help="every engine's max_num_batched_tokens in the priority runs "
                             f"(default {Experiment.max_num_batched_tokens}, as everywhere else)")
    parser.add_argument("--offline-rate", type=float, default=2.0, help="offline requests/s")
    parser.add_argument("--offline-online-rate", type=float, default=15.0,
                        help="sharegpt-gamma4 online rate of the offline experiment (default 15)")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"which sections to run, comma-separated (default all: {','.join(SECTIONS)})")
    parser.add_argument("--out", default="results/llumnix_policy.json")
    parser.add_argument("--img-dir", default="docs/img")
    args = parser.parse_args(argv)

    sections = [x.strip() for x in args.sections.split(",")]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    n = 800 if args.quick else args.requests
    out: dict[str, Any] = {"requests": n}
    if "scan" in sections:
        out["scan"] = load_scan(args, n)
    if "dispatch" in sections:
        out["dispatch"] = dispatch(args, n)
    if "priorities" in sections:
        seeds = [int(x) for x in args.priority_seeds.split(",")]
        out["priorities"] = {"rate": args.priority_rate, "high_fraction": args.high_fraction, "seeds": seeds,
                             "step_budget": args.priority_step_budget,
                             **section(workload("sharegpt-gamma4", args.priority_rate, n), seeds, args.high_fraction,
                                       args.headroom_fraction, args.priority_step_budget, run, class_table,
                                       np.random.default_rng(0))}
    if "offline" in sections:
        out["offline"] = offline(args, n)
    rows: dict[str, dict[str, Any]] = {}
    if "priorities" in out:
        first = min(out["priorities"]["runs"])  # the plot shows one seed's priority runs
        rows |= {f"{k}, seed {first}": r for k, r in out["priorities"]["runs"][first].items()}
    rows |= out.get("offline", {}).get("runs", {})
    if rows:
        plot_classes(rows, Path(args.img_dir) / "llumnix_policy_classes.png")

    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
