"""How fast `/health` answers while the gateway tokenizes long prompts, against the same gateway idle.

    python -m benchmarks.health_under_load [--model smollm2-135m] [--prompt-bytes 1000000] \\
        [--clients 4] [--seconds 20] [--probe-interval 0.02] \\
        [--out results/health_under_load.json] [--plot results/health_under_load.png]

Starts `flotilla serve --model MODEL --runtime local --instances 1` on a free port, then probes
`GET /health` every `--probe-interval` seconds for `--seconds` in two phases:
1. idle: nothing else reaches the gateway (the baseline);
2. load: `--clients` clients each send `/v1/completions` requests with a prompt of
   `--prompt-bytes` bytes of English text, one after the other. Each prompt is read, tokenized in
   the gateway's worker thread and refused (a 400: it is far longer than the model's context), so
   the load is the tokenizing alone.
The probe measures each `/health` round trip on this side. Prints a Markdown table (P50, P99 and
max per phase, the ratio of the load's P99 to the idle one, prompts tokenized per second), writes
the figures as JSON and a CDF plot as PNG. Exit status 0, or 1 when a probe failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import time
from pathlib import Path

import httpx
from tqdm import tqdm

from benchmarks.serve_process import ServeProcess

SENTENCE = "The quick brown fox jumps over the lazy dog while the gateway keeps answering. "


def percentile(values: list[float], q: float) -> float:
    """The `q`-th percentile (0..100) by the nearest-rank method."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


async def probe(http: httpx.AsyncClient, seconds: float, interval: float, bar: tqdm) -> tuple[list[float], int]:
    """`/health` round trips (seconds) for `seconds`, one every `interval`; and how many failed."""
    latencies: list[float] = []
    failed = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        r = await http.get("/health")
        latencies.append(time.perf_counter() - t0)
        failed += r.status_code != 200
        bar.update(1)
        await asyncio.sleep(max(0.0, interval - (time.perf_counter() - t0)))
    return latencies, failed


async def tokenize_load(http: httpx.AsyncClient, model: str, prompt: str, stop: asyncio.Event) -> int:
    """Send long prompts one after the other until `stop`; returns how many were refused as too long."""
    refused = 0
    while not stop.is_set():
        r = await http.post("/v1/completions", json={"model": model, "prompt": prompt, "max_tokens": 1})
        if r.status_code != 400 or "context" not in r.json()["error"]["message"]:
            raise RuntimeError(f"expected a 400 for a prompt beyond the context, got {r.status_code}: {r.text[:200]}")
        refused += 1
    return refused


async def phase(base_url: str, name: str, args: argparse.Namespace, clients: int) -> dict[str, object]:
    prompt = (SENTENCE * (args.prompt_bytes // len(SENTENCE) + 1))[: args.prompt_bytes]
    limits = httpx.Limits(max_connections=clients + 2)
    async with httpx.AsyncClient(base_url=base_url, timeout=120, limits=limits) as http:
        stop = asyncio.Event()
        loaders = [asyncio.create_task(tokenize_load(http, args.model, prompt, stop)) for _ in range(clients)]
        if loaders:
            await asyncio.sleep(1.0)  # the load is under way before the first probe
        with tqdm(desc=f"{name}: /health probes", total=int(args.seconds / args.probe_interval), unit="probe",
                  leave=False) as bar:
            latencies, failed = await probe(http, args.seconds, args.probe_interval, bar)
        stop.set()
        refused = sum(await asyncio.gather(*loaders))
    return {"phase": name, "clients": clients, "probes": len(latencies), "failed": failed,
            "p50_ms": 1000 * statistics.median(latencies), "p99_ms": 1000 * percentile(latencies, 99),
            "max_ms": 1000 * max(latencies), "prompts_per_s": refused / args.seconds,
            "latencies_ms": [1000 * x for x in latencies]}


def table(rows: list[dict[str, object]]) -> str:
    lines = ["| phase | clients | probes | P50 ms | P99 ms | max ms | prompts tokenized/s |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['phase']} | {r['clients']} | {r['probes']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                     f"{r['max_ms']:.1f} | {r['prompts_per_s']:.2f} |")
    idle, load = rows
    lines.append(f"\nP99 under load / idle: {load['p99_ms'] / idle['p99_ms']:.2f}x "
                 f"({load['p99_ms']:.1f} ms against the 50 ms target)")
    return "\n".join(lines)


def plot(rows: list[dict[str, object]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        xs = sorted(r["latencies_ms"])  # type: ignore[arg-type]
        ax.plot(xs, [(i + 1) / len(xs) for i in range(len(xs))], label=f"{r['phase']} ({r['clients']} clients)")
    ax.axvline(50, color="grey", linestyle=":", label="50 ms target")
    ax.set_xscale("log")
    ax.set_xlabel("/health round trip (ms)")
    ax.set_ylabel("fraction of probes")
    ax.set_title("/health while 1 MB prompts are tokenized")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="health_under_load", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--prompt-bytes", type=int, default=1_000_000)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--probe-interval", type=float, default=0.02)
    p.add_argument("--out", default="results/health_under_load.json")
    p.add_argument("--plot", default="results/health_under_load.png")
    args = p.parse_args(argv)
    if args.prompt_bytes < 1 or args.clients < 1 or args.seconds <= 0 or args.probe_interval <= 0:
        p.error("--prompt-bytes, --clients, --seconds and --probe-interval must be positive")
    print(f"starting flotilla serve --model {args.model} --runtime local ...", flush=True)
    with ServeProcess("--model", args.model, "--runtime", "local", "--instances", "1") as server:
        rows = [asyncio.run(phase(server.base_url, "idle", args, 0)),
                asyncio.run(phase(server.base_url, "load", args, args.clients))]
    print(table(rows))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "phases": rows}, indent=1))
    plot(rows, Path(args.plot))
    print(f"wrote {out} and {args.plot}")
    return 1 if any(r["failed"] for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
