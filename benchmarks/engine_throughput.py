"""Engine throughput: our continuous-batching engine vs `transformers` padded batched `generate`.

Both sides run the same weights (see `engine_bench.models`) over the same ShareGPT-length requests
(`engine_bench.requests`), greedy with EOS ignored, so both generate exactly the requested tokens.
For each concurrency C, a fixed number of requests, max(requests_per_client x C, 16), is served by
C closed-loop clients: our engine always holds C requests (continuous batching, paged KV, chunked
prefill), transformers runs static batches of C padded to their longest prompt and output. Output
tokens/s counts only requested tokens, over the wall time of the whole point, on both sides.

    python -m benchmarks.engine_throughput [--model smollm2-135m] [--concurrency 1,8,32]

Prints a table on stdout (progress on stderr) and writes JSON (`--out`) and a PNG (`--plot`).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import transformers

from benchmarks.engine_bench.models import MODELS, SMOLLM2, ModelPair, load_pair
from benchmarks.engine_bench.ours import BLOCK_SIZE, MAX_NUM_BATCHED_TOKENS, run_engine
from benchmarks.engine_bench.padded import PAD_TOKEN_ID, generate_padded, run_padded
from benchmarks.engine_bench.report import format_table, plot, to_dict, write_json
from benchmarks.engine_bench.requests import BenchRequest, LengthScaling, draw_requests
from benchmarks.engine_bench.result import PointResult

MIN_REQUESTS = 16
TARGET_CONCURRENCY = 32
TARGET_SPEEDUP = 3.0
DEFAULT_CONCURRENCY = "1,2,4,8,16,32,64"
DEFAULT_SCALING = LengthScaling()
WARM_UP = (BenchRequest("warm-0", [11] * 24, 6), BenchRequest("warm-1", [12] * 9, 4))

Progress = Callable[[str, int, int], None]


def num_requests(concurrency: int, requests_per_client: int) -> int:
    """Requests served at one concurrency point."""
    return max(requests_per_client * concurrency, MIN_REQUESTS)


def warm_up(pair: ModelPair, max_model_len: int) -> None:
    """Run two short requests through each side once, untimed (first-call costs of every op)."""
    run_engine(pair.ours, WARM_UP, 2, max_model_len)
    run_padded(pair.hf, WARM_UP, 2)


def run_point(
    pair: ModelPair,
    requests: Sequence[BenchRequest],
    concurrency: int,
    max_model_len: int,
    progress: Progress = lambda side, done, total: None,
) -> PointResult:
    """Serve `requests` on both sides at `concurrency`; raises RuntimeError if a side does not
    produce exactly the requested tokens for every request."""
    reqs = list(requests)
    n = len(reqs)
    ours = run_engine(pair.ours, reqs, concurrency, max_model_len, on_finish=lambda d: progress("ours", d, n))
    ours.check_counts(reqs, "ours")
    padded = run_padded(pair.hf, reqs, concurrency, on_finish=lambda d: progress("transformers", d, n))
    padded.check_counts(reqs, "transformers")
    same = sum(ours.tokens[r.request_id] == padded.tokens[r.request_id] for r in reqs)
    return PointResult(concurrency, n, sum(len(r.prompt) for r in reqs), ours, padded, same)


def unpadded_matches(pair: ModelPair, requests: Sequence[BenchRequest], ours: dict[str, list[int]]) -> int:
    """How many of `requests` get from transformers, run alone (no padding), exactly our tokens."""
    return sum(generate_padded(pair.hf, [r])[0] == ours[r.request_id] for r in requests)


def _stderr_progress(concurrency: int, start: float) -> Progress:
    """Progress on stderr: one line rewritten in place on a terminal, else a line per quarter of a side."""
    tty = sys.stderr.isatty()

    def show(side: str, done: int, total: int) -> None:
        if not tty and done % max(1, total // 4) and done < total:
            return
        elapsed = time.perf_counter() - start
        line = f"[engine_throughput] C={concurrency:<3} {side:<12} {done:>4}/{total} done, {elapsed:6.1f} s"
        sys.stderr.write(("\r" + line) if tty else (line + "\n"))
        if tty and side == "transformers" and done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


def _concurrencies(text: str) -> list[int]:
    values = sorted({int(v) for v in text.split(",") if v.strip()})
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}")
    return values


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line (see `--help`); exits with a usage message on a bad value."""
    p = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = p.add_argument
    add("--model", default=SMOLLM2, choices=MODELS, help="model (default %(default)s)")
    add("--concurrency", type=_concurrencies, default=DEFAULT_CONCURRENCY,
        help="comma-separated concurrency points (default %(default)s)")
    add("--requests-per-client", type=int, default=2,
        help=f"requests per point: max(this x concurrency, {MIN_REQUESTS}) (default %(default)s)")
    add("--length-scale", type=float, default=DEFAULT_SCALING.factor,
        help="factor on the trace's lengths (default %(default)s)")
    add("--max-input", type=int, default=DEFAULT_SCALING.max_input,
        help=f"prompt length clamp [{DEFAULT_SCALING.min_input}, this] after scaling (default %(default)s)")
    add("--max-output", type=int, default=DEFAULT_SCALING.max_output,
        help=f"output length clamp [{DEFAULT_SCALING.min_output}, this] after scaling (default %(default)s)")
    add("--seed", type=int, default=0, help="seed of the request draw and prompts (default %(default)s)")
    add("--threads", type=int, default=2, help="torch threads, both sides (default %(default)s)")
    add("--check-requests", type=int, default=4,
        help="requests also run alone (unpadded) on transformers and compared (default %(default)s)")
    add("--out", type=Path, default=Path("results/engine_throughput.json"), help="JSON results")
    add("--plot", type=Path, default=Path("results/engine_throughput.png"), help="PNG plot")
    args = p.parse_args(argv)
    if args.requests_per_client < 1 or args.threads < 1 or not 0 <= args.check_requests <= MIN_REQUESTS:
        p.error(f"--requests-per-client and --threads must be >= 1, --check-requests in [0, {MIN_REQUESTS}]")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (see the module docstring); returns the exit status."""
    args = parse_args(argv)
    started_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    torch.set_num_threads(args.threads)
    scaling = LengthScaling(factor=args.length_scale, max_input=args.max_input, max_output=args.max_output)
    pair = load_pair(args.model)
    print(f"[engine_throughput] model {pair.name}: {pair.weights}", file=sys.stderr)
    sizes = {c: num_requests(c, args.requests_per_client) for c in args.concurrency}
    all_requests = draw_requests(max(sizes.values()), scaling, args.seed)
    warm_up(pair, scaling.max_model_len)
    points: list[PointResult] = []
    for c in args.concurrency:
        progress = _stderr_progress(c, time.perf_counter())
        points.append(run_point(pair, all_requests[: sizes[c]], c, scaling.max_model_len, progress))
    checked = all_requests[: args.check_requests]
    unpadded = unpadded_matches(pair, checked, points[0].ours.tokens)
    verdict = _verdict(points)
    print(format_table(points))
    print(f"greedy tokens equal to transformers run alone (unpadded): {unpadded}/{len(checked)} requests")
    print(verdict)
    command = ["python", "-m", "benchmarks.engine_throughput", *(sys.argv[1:] if argv is None else argv)]
    run = {
        "started_at": started_at,
        "command": shlex.join(command),
        "model": {"name": pair.name, "weights": pair.weights, "dtype": "float32"},
        "machine": {
            "cpus": os.cpu_count(), "torch_threads": args.threads, "torch": torch.__version__,
            "transformers": transformers.__version__, "platform": platform.platform(),
        },
        "workload": {
            "trace": "sharegpt", "seed": args.seed, "length_scale": scaling.factor,
            "input_range": [scaling.min_input, scaling.max_input],
            "output_range": [scaling.min_output, scaling.max_output],
            "requests_per_point": f"max({args.requests_per_client} x concurrency, {MIN_REQUESTS})",
        },
        "engine": {
            "block_size": BLOCK_SIZE, "max_num_batched_tokens": MAX_NUM_BATCHED_TOKENS,
            "max_num_seqs": "concurrency", "num_blocks": "concurrency x ceil(max_model_len / block_size)",
        },
        "transformers": {"attn_implementation": "sdpa", "padding": "left", "pad_token_id": PAD_TOKEN_ID},
        "unpadded_check": {"requests": len(checked), "identical": unpadded},
        "verdict": verdict,
    }
    write_json(to_dict(run, points), args.out)
    title = f"{pair.name}, {args.threads} CPU threads, ShareGPT lengths x{scaling.factor}"
    plot(points, title, args.plot)
    print(f"wrote {args.out} and {args.plot}", file=sys.stderr)
    return 0


def _verdict(points: Sequence[PointResult]) -> str:
    target = f"target {TARGET_SPEEDUP:.0f}x at {TARGET_CONCURRENCY} concurrent requests"
    at = [p for p in points if p.concurrency == TARGET_CONCURRENCY]
    if not at:
        return f"{target}: not measured in this run"
    return f"{target}: {'MET' if at[0].speedup >= TARGET_SPEEDUP else 'NOT MET'} ({at[0].speedup:.2f}x)"


if __name__ == "__main__":
    sys.exit(main())
