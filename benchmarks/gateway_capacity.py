"""Gateway capacity and the latency the serving path adds, measured in one run.

    python -m benchmarks.gateway_capacity [--instances 2] [--requests 2000] \\
        [--concurrency 32,128,256] [--low-rate 5] [--low-requests 200] \\
        [--out results/gateway_capacity.json] [--plot results/gateway_capacity.png]

Starts `flotilla serve --model MODEL --instances N` (Ray runtime) on a free port, then:
1. warm-up: `--warmup-requests` requests at the first concurrency, discarded;
2. capacity: for each max concurrency, `--requests` synthetic requests of 16 prompt tokens and
   `max_tokens=1`, all at once (rate inf); request throughput and E2E percentiles;
3. low load: `--low-requests` requests of the same shape, Poisson arrivals at `--low-rate` req/s;
4. engine-only baseline, with the server still up and idle: the same low-load prompts run one at
   a time on an in-process `Engine` with the served engine settings and one torch thread.
Added latency = median low-load E2E through the server - median engine-only latency. Each
capacity run also records the CPU milliseconds per request of the gateway process, the instance
actors, Ray's other processes and this client (`benchmarks.cpu_usage`): on a shared machine these
are steadier than the throughput itself.
Progress goes to stderr, Markdown tables and the verdict to stdout. Exit status: 0 when every
request succeeded, 1 when some failed (results are still written), 2 for a bad flag.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from benchmarks.cpu_usage import cpu_delta_by_role, session_cpu
from benchmarks.engine_baseline import engine_only_latencies, served_engine
from benchmarks.gateway_report import (
    AddedLatency,
    CapacityPoint,
    format_tables,
    plot_capacity,
    results_payload,
    write_json,
)
from benchmarks.loadgen import BenchmarkConfig, BenchmarkResult, run_benchmark
from benchmarks.serve_process import ServeProcess
from controlplane.workload import WorkloadSpec, build_workload, prompt_token_ids

INPUT_LEN = 16
OUTPUT_LEN = 1


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"gateway_capacity: error: {message}\n")


def parse_concurrencies(text: str) -> tuple[int, ...]:
    """`"32,128,256"` -> `(32, 128, 256)`. Raises ValueError unless every item is an integer >= 1."""
    try:
        values = tuple(int(item) for item in text.split(","))
    except ValueError:
        raise ValueError(f"--concurrency takes comma-separated integers, got {text!r}") from None
    if any(v < 1 for v in values):
        raise ValueError(f"every --concurrency value must be >= 1, got {text!r}")
    return values


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse and check the flags; exits 2 with one line on stderr for a bad flag."""
    p = _Parser(prog="python -m benchmarks.gateway_capacity", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny-llama")
    p.add_argument("--instances", type=int, default=2)
    p.add_argument("--requests", type=int, default=2000, help="requests per capacity run")
    p.add_argument("--concurrency", default="32,128,256", help="max concurrencies, comma-separated")
    p.add_argument("--warmup-requests", type=int, default=200)
    p.add_argument("--low-rate", type=float, default=5.0, help="req/s of the low-load run")
    p.add_argument("--low-requests", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("results/gateway_capacity.json"))
    p.add_argument("--plot", type=Path, default=Path("results/gateway_capacity.png"))
    args = p.parse_args(argv)
    try:
        args.concurrencies = parse_concurrencies(args.concurrency)
    except ValueError as exc:
        p.error(str(exc))
    for flag in ("instances", "requests", "warmup_requests", "low_requests"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be >= 1")
    if not (args.low_rate > 0 and math.isfinite(args.low_rate)):
        p.error("--low-rate must be a finite number > 0")
    return args


def _say(message: str) -> None:
    print(f"gateway_capacity: {message}", file=sys.stderr, flush=True)


def _config(
    args: argparse.Namespace, base_url: str, requests: int, rate: float, concurrency: int | None
) -> BenchmarkConfig:
    spec = WorkloadSpec(input_len=INPUT_LEN, output_len=OUTPUT_LEN, num_requests=requests, request_rate=rate,
                        seed=args.seed)
    return BenchmarkConfig(base_url=base_url, model=args.model, workload=spec, max_concurrency=concurrency)


async def _measure_server(
    args: argparse.Namespace, base_url: str, server_session: int
) -> tuple[list[CapacityPoint], BenchmarkResult]:
    """Warm-up, the capacity sweep (with the CPU time of the server's processes, by role, and of
    this client process) and the low-load run against `base_url`."""
    _say(f"warm-up: {args.warmup_requests} requests")
    await run_benchmark(_config(args, base_url, args.warmup_requests, math.inf, args.concurrencies[0]))
    points = []
    for concurrency in args.concurrencies:
        _say(f"capacity: {args.requests} requests, rate inf, max concurrency {concurrency}")
        before, client_before = session_cpu(server_session), time.process_time()
        result = await run_benchmark(_config(args, base_url, args.requests, math.inf, concurrency), progress=sys.stderr)
        cpu_s = cpu_delta_by_role(before, session_cpu(server_session))
        cpu_s["client"] = time.process_time() - client_before
        points.append(CapacityPoint.of(concurrency, result, cpu_s))
    _say(f"low load: {args.low_requests} requests, Poisson {args.low_rate:g} req/s")
    low = await run_benchmark(_config(args, base_url, args.low_requests, args.low_rate, None), progress=sys.stderr)
    return points, low


def _settings(args: argparse.Namespace) -> dict[str, object]:
    return {
        "model": args.model, "instances": args.instances, "runtime": "ray", "input_len": INPUT_LEN,
        "output_len": OUTPUT_LEN, "requests": args.requests, "concurrencies": list(args.concurrencies),
        "warmup_requests": args.warmup_requests, "low_rate": args.low_rate, "low_requests": args.low_requests,
        "seed": args.seed, "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpus": os.cpu_count(),
        "platform": platform.platform(), "python": platform.python_version(),
        "loadavg_at_start": list(os.getloadavg()),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (see the module docstring); returns the exit status."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    settings = _settings(args)
    low_spec = _config(args, "http://unused", args.low_requests, args.low_rate, None).workload
    prompts = [prompt_token_ids(r, i, low_spec.seed, low_spec.vocab) for i, r in enumerate(build_workload(low_spec))]
    _say(f"starting flotilla serve --model {args.model} --instances {args.instances} ...")
    with ServeProcess("--model", args.model, "--instances", str(args.instances)) as server:
        _say(f"serving at {server.base_url}; gateway pid {server.pid}")
        points, low = asyncio.run(_measure_server(args, server.base_url, server.pid))
        _say(f"engine-only baseline: {len(prompts)} requests one at a time (server idle)")
        engine_s = engine_only_latencies(served_engine(args.model), prompts, OUTPUT_LEN)
    settings["loadavg_at_end"] = list(os.getloadavg())
    server_s = [r.outcome.timeline.latency_s for r in low.records if r.outcome.timeline.success]
    if not server_s:
        _say("every low-load request failed; no added latency to report")
        return 1
    added = AddedLatency.of(server_s, engine_s)
    print(format_tables(points, low.metrics.e2el, added, args.low_rate))
    write_json(results_payload(settings, points, low.metrics.e2el, added, server_s, engine_s), args.out)
    title = f"{args.model}, {args.instances} instances (Ray), {os.cpu_count()} CPUs"
    plot_capacity(points, server_s, engine_s, title, args.plot)
    print(f"results: {args.out}\nplot: {args.plot}")
    failed = sum(p.failed for p in points) + low.metrics.failed
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
