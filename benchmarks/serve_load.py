"""CLI of the OpenAI-API load generator (the engine is `benchmarks.loadgen`).

    python -m benchmarks.serve_load --base-url http://127.0.0.1:8000 --model NAME \\
        --trace azure-conv --num-requests 200 --rate-scale 0.5 --length-scale 0.05 \\
        --slo-ttft-ms 500 --out results.json --plot results.png

Prints a vLLM-style table on stdout and a progress line on stderr. Exit status: 0 when at least
one request succeeded, 1 when none did, 2 for a bad flag or an unreadable trace (one line on
stderr). The Python API is `run_benchmark(BenchmarkConfig(...))`, re-exported here.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from benchmarks.loadgen import BenchmarkConfig, BenchmarkResult, RequestRecord, run_benchmark
from benchmarks.serving_report import format_table, plot_cdfs, write_json
from controlplane.observability.serving_metrics import SLO
from controlplane.workload import TRACE_FILES, TraceFormatError, WorkloadSpec

__all__ = ["BenchmarkConfig", "BenchmarkResult", "RequestRecord", "main", "parse_config", "run_benchmark"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"serve_load: error: {message}\n")


def _parser() -> _Parser:
    p = _Parser(prog="python -m benchmarks.serve_load", description=__doc__.split("\n\n")[0])
    p.add_argument("--base-url", required=True, help="server root, e.g. http://127.0.0.1:8000")
    p.add_argument("--model", required=True)
    p.add_argument("--api-key", help="sent as a bearer token")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--trace", help=f"{' | '.join(TRACE_FILES)} | a .csv or .jsonl file")
    source.add_argument("--synthetic", action="store_true", help="fixed --input-len/--output-len")
    p.add_argument("--input-len", type=int)
    p.add_argument("--output-len", type=int)
    p.add_argument("--num-requests", type=int, help="keep the first K requests")
    p.add_argument("--request-rate", type=float, help="req/s (inf allowed); replaces trace timestamps")
    p.add_argument("--arrival", choices=["poisson", "gamma"], default="poisson")
    p.add_argument("--cv", type=float, help="inter-arrival coefficient of variation (gamma)")
    p.add_argument("--rate-scale", type=float, default=1.0, help="divide inter-arrival times by X")
    p.add_argument("--length-scale", type=float, default=1.0, help="multiply lengths by X")
    p.add_argument("--max-input-len", type=int)
    p.add_argument("--max-output-len", type=int)
    p.add_argument("--max-concurrency", type=int)
    p.add_argument("--slo-ttft-ms", type=float)
    p.add_argument("--slo-tpot-ms", type=float)
    p.add_argument("--slo-e2e-ms", type=float)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vocab-range", type=int, nargs=2, metavar=("LO", "HI"), default=[10, 200])
    p.add_argument("--timeout-s", type=float, default=6 * 3600.0, help="per-request timeout")
    p.add_argument("--out", type=Path, help="write results JSON here")
    p.add_argument("--plot", type=Path, help="write latency CDFs (PNG) here")
    return p


def parse_config(argv: Sequence[str]) -> tuple[BenchmarkConfig, argparse.Namespace]:
    """Parse flags into a validated config; exits 2 with one line on stderr for a bad flag."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.synthetic and (args.input_len is None or args.output_len is None):
        parser.error("--synthetic needs --input-len and --output-len")
    if not args.synthetic and (args.input_len is not None or args.output_len is not None):
        parser.error("--input-len/--output-len need --synthetic")
    timed_rate = args.request_rate is not None and math.isfinite(args.request_rate)
    if (args.arrival == "gamma" or args.cv is not None) and not timed_rate:
        parser.error("--arrival gamma and --cv need a finite --request-rate")
    if args.arrival == "gamma" and args.cv is None:
        parser.error("--arrival gamma needs --cv")
    try:
        workload = WorkloadSpec(
            trace=args.trace,
            input_len=args.input_len,
            output_len=args.output_len,
            num_requests=args.num_requests,
            request_rate=args.request_rate,
            arrival=args.arrival,
            cv=1.0 if args.cv is None else args.cv,
            rate_scale=args.rate_scale,
            length_scale=args.length_scale,
            max_input_len=args.max_input_len,
            max_output_len=args.max_output_len,
            seed=args.seed,
            vocab=tuple(args.vocab_range),
        )
        config = BenchmarkConfig(
            base_url=args.base_url,
            model=args.model,
            workload=workload,
            max_concurrency=args.max_concurrency,
            slo=SLO(args.slo_ttft_ms, args.slo_tpot_ms, args.slo_e2e_ms),
            request_timeout_s=args.timeout_s,
            api_key=args.api_key,
        )
    except ValueError as exc:
        parser.error(str(exc))
    return config, args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI (see the module docstring); returns the exit status."""
    config, args = parse_config(sys.argv[1:] if argv is None else argv)
    try:
        result = asyncio.run(run_benchmark(config, progress=sys.stderr))
    except (FileNotFoundError, TraceFormatError) as exc:
        print(f"serve_load: error: {exc}", file=sys.stderr)
        return 2
    print(format_table(result))
    if args.out is not None:
        write_json(result, args.out)
        print(f"results: {args.out}")
    if args.plot is not None:
        plot_cdfs(result, args.plot)
        print(f"plot: {args.plot}")
    return 0 if result.metrics.completed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
