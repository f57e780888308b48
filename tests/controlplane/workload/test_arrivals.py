"""Arrival processes: rate, burstiness and determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest

from controlplane.workload import TraceRequest, arrival_times, with_arrivals


def gaps(times: np.ndarray) -> np.ndarray:
    return np.diff(times)


def test_poisson_mean_rate_and_unit_cv() -> None:
    times = arrival_times(50_000, rate=5.0, cv=1.0, rng=np.random.default_rng(1))
    assert times[0] == 0.0
    assert np.all(gaps(times) >= 0)
    assert 1.0 / gaps(times).mean() == pytest.approx(5.0, rel=0.02)
    assert gaps(times).std() / gaps(times).mean() == pytest.approx(1.0, rel=0.03)


@pytest.mark.parametrize("cv", [0.5, 3.0])
def test_gamma_has_the_requested_rate_and_cv(cv: float) -> None:
    times = arrival_times(100_000, rate=2.0, cv=cv, rng=np.random.default_rng(2))
    g = gaps(times)
    assert 1.0 / g.mean() == pytest.approx(2.0, rel=0.03)
    assert g.std() / g.mean() == pytest.approx(cv, rel=0.05)


def test_same_seed_same_arrivals_other_seed_other_arrivals() -> None:
    a = arrival_times(100, 3.0, 2.0, np.random.default_rng(7))
    b = arrival_times(100, 3.0, 2.0, np.random.default_rng(7))
    c = arrival_times(100, 3.0, 2.0, np.random.default_rng(8))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_infinite_rate_sends_everything_at_zero() -> None:
    assert arrival_times(4, math.inf, 1.0, np.random.default_rng(0)).tolist() == [0.0, 0.0, 0.0, 0.0]
    assert arrival_times(0, 1.0, 1.0, np.random.default_rng(0)).tolist() == []


@pytest.mark.parametrize(
    ("n", "rate", "cv", "message"),
    [(-1, 1.0, 1.0, "n must be"), (3, 0.0, 1.0, "rate must be > 0"), (3, 1.0, 0.0, "cv must be")],
)
def test_bad_arguments_raise(n: int, rate: float, cv: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        arrival_times(n, rate, cv, np.random.default_rng(0))


def test_with_arrivals_keeps_lengths_and_replaces_times() -> None:
    requests = [TraceRequest(9.0, 5, 6), TraceRequest(9.0, 7, 8)]
    out = with_arrivals(requests, 1.0, 1.0, np.random.default_rng(3))
    expected = arrival_times(2, 1.0, 1.0, np.random.default_rng(3))
    assert [(r.arrival_s, r.prompt_len, r.output_len) for r in out] == [
        (0.0, 5, 6),
        (float(expected[1]), 7, 8),
    ]
