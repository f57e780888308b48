"""Synthetic arrival processes: Poisson and Gamma, as vLLM's `benchmark_serving.py` draws them.

Inter-arrival times are Gamma(shape = 1/cv^2, scale = 1/(rate * shape)): mean 1/rate and
coefficient of variation `cv`. `cv = 1` is the Poisson process (exponential gaps); larger `cv` is
burstier (BurstGPT documents 2-8). The first request arrives at 0, as in vLLM.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from controlplane.workload.request import TraceRequest


def arrival_times(n: int, rate: float, cv: float, rng: np.random.Generator) -> np.ndarray:
    """`n` non-decreasing arrival times in seconds, starting at 0.

    `rate` is requests per second (`math.inf`: everything at 0); `cv` > 0 is the inter-arrival
    coefficient of variation. Draws `n - 1` gaps from `rng` (nothing when `rate` is infinite).
    Raises ValueError when `n < 0`, `rate <= 0` or `cv <= 0`.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not rate > 0:
        raise ValueError(f"rate must be > 0 (inf allowed), got {rate}")
    if not (cv > 0 and math.isfinite(cv)):
        raise ValueError(f"cv must be a positive number, got {cv}")
    if n == 0:
        return np.zeros(0)
    if math.isinf(rate):
        return np.zeros(n)
    shape = 1.0 / (cv * cv)
    gaps = rng.gamma(shape=shape, scale=1.0 / (rate * shape), size=n - 1)
    return np.concatenate(([0.0], np.cumsum(gaps)))


def with_arrivals(
    requests: Sequence[TraceRequest], rate: float, cv: float, rng: np.random.Generator
) -> list[TraceRequest]:
    """`requests` in order with arrivals replaced by `arrival_times(len(requests), rate, cv, rng)`."""
    times = arrival_times(len(requests), rate, cv, rng)
    return [replace(r, arrival_s=float(t)) for r, t in zip(requests, times, strict=True)]
