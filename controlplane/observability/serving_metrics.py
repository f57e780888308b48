"""Serving metrics, defined exactly as vLLM's `benchmarks/benchmark_serving.py` defines them.

Per successful request (times from `RequestTimeline`):
- TTFT = first content chunk time - send time;
- E2E latency = last content chunk time - send time;
- ITL = the gaps between successive content chunks (all requests' gaps pooled into one sample);
- TPOT = (E2E - TTFT) / (output_tokens - 1), only for output_tokens > 1 (for goodput a request
  with one output token counts as TPOT 0).
Over the run (duration = wall time from the first send to the last response):
- request throughput = successful requests / duration; output token throughput = output tokens of
  successful requests / duration; total token throughput adds their prompt tokens;
- goodput = successful requests that meet every given SLO / duration, where meeting an SLO means
  metric <= SLO; SLO attainment = those requests / all requests (failed ones count as misses).
Summaries are mean, std, median, P90 and P99 in milliseconds (numpy, linear interpolation); an
empty sample summarises to zeros, as in vLLM.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RequestTimeline:
    """What one request did, on one clock in seconds (benchmark start = 0).

    `chunk_s` holds the arrival time of every streamed chunk that carried a choice (a token
    chunk), in order. `output_tokens` is the server's usage count (or the number of token chunks
    when the server sent no usage); `success` is False for a request that failed or streamed no
    token, and then `error` says why.
    """

    prompt_len: int
    output_tokens: int
    send_s: float
    chunk_s: Sequence[float]
    success: bool
    error: str | None = None

    @property
    def ttft_s(self) -> float:
        """Time to first token. Raises ValueError when no chunk arrived."""
        return self._first() - self.send_s

    @property
    def latency_s(self) -> float:
        """End-to-end latency (to the last token chunk). Raises ValueError when no chunk arrived."""
        self._first()
        return self.chunk_s[-1] - self.send_s

    @property
    def itl_s(self) -> np.ndarray:
        """Gaps between successive token chunks."""
        return np.diff(np.asarray(self.chunk_s, dtype=float))

    @property
    def tpot_s(self) -> float | None:
        """Time per output token after the first; None when `output_tokens <= 1`."""
        if self.output_tokens <= 1:
            return None
        return (self.latency_s - self.ttft_s) / (self.output_tokens - 1)

    def _first(self) -> float:
        if not self.chunk_s:
            raise ValueError("the request streamed no token chunk")
        return self.chunk_s[0]


@dataclass(frozen=True)
class SLO:
    """Latency targets in milliseconds; None leaves a metric unconstrained."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2el_ms: float | None = None

    def __post_init__(self) -> None:
        for name in ("ttft_ms", "tpot_ms", "e2el_ms"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ValueError(f"SLO {name} must be a positive number, got {value}")

    @property
    def empty(self) -> bool:
        return self.ttft_ms is None and self.tpot_ms is None and self.e2el_ms is None

    def met_by(self, t: RequestTimeline) -> bool:
        """Whether successful request `t` meets every target (vLLM: SLO in s >= metric)."""
        checks = (
            (self.ttft_ms, t.ttft_s),
            (self.tpot_ms, t.tpot_s or 0.0),
            (self.e2el_ms, t.latency_s),
        )
        return all(slo is None or slo / 1000.0 >= value for slo, value in checks)


@dataclass(frozen=True)
class LatencyStats:
    """Summary of one latency sample, in milliseconds."""

    mean_ms: float
    std_ms: float
    median_ms: float
    p90_ms: float
    p99_ms: float

    @classmethod
    def of(cls, values_s: Sequence[float] | np.ndarray) -> LatencyStats:
        """Summarise `values_s` (seconds); an empty sample gives zeros, as vLLM's `x or 0` does."""
        ms = np.asarray(values_s if len(values_s) else [0.0], dtype=float) * 1000.0
        return cls(
            mean_ms=float(np.mean(ms)),
            std_ms=float(np.std(ms)),
            median_ms=float(np.median(ms)),
            p90_ms=float(np.percentile(ms, 90)),
            p99_ms=float(np.percentile(ms, 99)),
        )


@dataclass(frozen=True)
class BenchmarkMetrics:
    """Every aggregate of one run. `request_goodput` and `slo_attainment` are None without SLOs."""

    completed: int
    failed: int
    total_input: int
    total_output: int
    duration_s: float
    request_throughput: float
    output_throughput: float
    total_token_throughput: float
    request_goodput: float | None
    slo_attainment: float | None
    ttft: LatencyStats
    tpot: LatencyStats
    itl: LatencyStats
    e2el: LatencyStats


def compute_metrics(
    timelines: Sequence[RequestTimeline], duration_s: float, slo: SLO | None = None
) -> BenchmarkMetrics:
    """Aggregate `timelines` over a run of `duration_s` seconds (see the module docstring).

    Raises ValueError when there is no request, `duration_s <= 0`, or a successful request has no
    token chunk.
    """
    if not timelines:
        raise ValueError("no requests to compute metrics over")
    if not duration_s > 0:
        raise ValueError(f"duration must be > 0 s, got {duration_s}")
    ok = [t for t in timelines if t.success]
    total_input = sum(t.prompt_len for t in ok)
    total_output = sum(t.output_tokens for t in ok)
    good = None if slo is None or slo.empty else sum(slo.met_by(t) for t in ok)
    return BenchmarkMetrics(
        completed=len(ok),
        failed=len(timelines) - len(ok),
        total_input=total_input,
        total_output=total_output,
        duration_s=duration_s,
        request_throughput=len(ok) / duration_s,
        output_throughput=total_output / duration_s,
        total_token_throughput=(total_input + total_output) / duration_s,
        request_goodput=None if good is None else good / duration_s,
        slo_attainment=None if good is None else good / len(timelines),
        ttft=LatencyStats.of([t.ttft_s for t in ok]),
        tpot=LatencyStats.of([tpot for t in ok if (tpot := t.tpot_s) is not None]),
        itl=LatencyStats.of(np.concatenate([t.itl_s for t in ok]) if ok else []),
        e2el=LatencyStats.of([t.latency_s for t in ok]),
    )
