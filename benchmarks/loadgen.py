"""The load generator's engine: replay a workload against any OpenAI-compatible server.

Each request is a streaming `/v1/completions` call whose prompt is a list of token ids of the
workload's length (random ids in the workload's vocab range, or Mooncake's hash-derived prefix blocks), with
`max_tokens` = its output length and `ignore_eos`. Requests are sent at their arrival times by a
loop that never waits on responses; `--max-concurrency` caps requests in flight (a request that
waits for a slot is timed from when it is sent, as in vLLM). `benchmarks.serve_load` is its CLI.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

import aiohttp

from benchmarks.openai_stream import StreamOutcome, stream_completion
from benchmarks.progress import ProgressLine
from controlplane.observability.serving_metrics import SLO, BenchmarkMetrics, compute_metrics
from controlplane.workload import TraceRequest, WorkloadSpec, build_workload, prompt_token_ids

COMPLETIONS_PATH = "/v1/completions"
DEFAULT_TIMEOUT_S = 6 * 3600.0  # vLLM's benchmark client allows a request six hours
UNBOUNDED_CONNECTION_CAP = 1024  # open connections at most when max_concurrency is None
# Idle connections are dropped after this long: under uvicorn's 5 s keep-alive timeout, so the
# client never picks a connection the server is about to close.
KEEPALIVE_S = 4.0


@dataclass(frozen=True)
class BenchmarkConfig:
    """One load run: where to send, what to send (`workload`), and how to judge it (`slo`).

    `base_url` is the server root (`/v1/completions` is appended). `max_concurrency` None leaves
    requests in flight unbounded. `api_key`, when set, is sent as a bearer token and never written
    to results. Raises ValueError from the constructor on a bad field.
    """

    base_url: str
    model: str
    workload: WorkloadSpec
    max_concurrency: int | None = None
    slo: SLO = field(default_factory=SLO)
    request_timeout_s: float = DEFAULT_TIMEOUT_S
    api_key: str | None = None

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base URL must start with http:// or https://, got {self.base_url!r}")
        if self.base_url.rstrip("/").endswith("/v1"):
            raise ValueError(f"give the server's root as base URL, without /v1: {self.base_url!r}")
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise ValueError(f"max concurrency must be >= 1, got {self.max_concurrency}")
        if not self.request_timeout_s > 0:
            raise ValueError(f"request timeout must be > 0 s, got {self.request_timeout_s}")

    def describe(self) -> dict[str, object]:
        """JSON-ready settings, without the API key."""
        return {
            "base_url": self.base_url,
            "model": self.model,
            "endpoint": COMPLETIONS_PATH,
            "max_concurrency": self.max_concurrency,
            "slo": asdict(self.slo),
            "request_timeout_s": self.request_timeout_s,
            "workload": self.workload.describe(),
        }


@dataclass(frozen=True)
class RequestRecord:
    """One request's raw result: its workload position, scheduled arrival and stream outcome."""

    index: int
    arrival_s: float
    outcome: StreamOutcome


@dataclass(frozen=True)
class BenchmarkResult:
    """A finished run: its config, wall-clock start, aggregate metrics and every request."""

    config: BenchmarkConfig
    started_at: str
    metrics: BenchmarkMetrics
    records: tuple[RequestRecord, ...]


async def run_benchmark(
    config: BenchmarkConfig, *, progress: TextIO | None = None, data_dir: Path | None = None
) -> BenchmarkResult:
    """Build `config.workload` (named traces looked up in `data_dir`) and replay it.

    Writes a progress line to `progress` while it runs, if given. One aiohttp session serves the
    run: its connections are kept alive and reused, at most `config.max_concurrency` of them, or
    UNBOUNDED_CONNECTION_CAP when that is None (more requests in flight then wait for a connection,
    timed from when they were sent). `config.request_timeout_s` bounds each request as a whole, a
    wait for a connection included. Connects directly (proxy environment variables are ignored).
    Failed requests are recorded, never raised. Raises FileNotFoundError / TraceFormatError when
    the trace cannot be loaded.
    """
    requests = build_workload(config.workload, data_dir)
    concurrency = config.max_concurrency or len(requests)
    connections = config.max_concurrency or min(len(requests), UNBOUNDED_CONNECTION_CAP)
    headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
    connector = aiohttp.TCPConnector(limit=connections, keepalive_timeout=KEEPALIVE_S)
    async with aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=config.request_timeout_s),
        headers=headers,
        trust_env=False,  # no proxies from the environment: time the server, not a proxy
    ) as session:
        return await _replay(config, requests, session, concurrency, progress)


async def _replay(
    config: BenchmarkConfig,
    requests: Sequence[TraceRequest],
    session: aiohttp.ClientSession,
    concurrency: int,
    progress: TextIO | None,
) -> BenchmarkResult:
    slots = asyncio.Semaphore(concurrency)
    url = config.base_url.rstrip("/") + COMPLETIONS_PATH
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    t0 = time.perf_counter()

    def clock() -> float:
        return time.perf_counter() - t0

    line = ProgressLine(len(requests), clock)
    reporter = asyncio.create_task(line.run(progress)) if progress is not None else None

    async def one(index: int, request: TraceRequest) -> RequestRecord:
        async with slots:
            line.sent()
            payload = _payload(config, request, index)
            outcome = await stream_completion(session, url, payload, request.prompt_len, clock)
        line.finished(outcome.timeline.success)
        return RequestRecord(index, request.arrival_s, outcome)

    try:
        tasks = []
        for index, request in enumerate(requests):
            delay = request.arrival_s - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(index, request)))
        records = await asyncio.gather(*tasks)
        duration_s = clock()
    finally:
        line.stop()
        if reporter is not None:
            await reporter
    metrics = compute_metrics([r.outcome.timeline for r in records], duration_s, config.slo)
    return BenchmarkResult(config, started_at, metrics, tuple(records))


def _payload(config: BenchmarkConfig, request: TraceRequest, index: int) -> dict[str, object]:
    spec = config.workload
    return {
        "model": config.model,
        "prompt": prompt_token_ids(request, index, spec.seed, spec.vocab),
        "max_tokens": request.output_len,
        "temperature": 0.0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
