"""Serving metrics on hand-made timelines, against hand-computed values.

The run lasts 4 s and has four requests (times in s):
  r1: 10 prompt tokens, 4 output, sent 0.0, chunks 0.25 0.5 0.75 1.0
      -> TTFT 0.25, E2E 1.0, ITL 0.25 0.25 0.25, TPOT (1.0 - 0.25) / 3 = 0.25
  r2: 20 prompt tokens, 3 output (usage; two chunks), sent 0.5, chunks 1.0 2.0
      -> TTFT 0.5, E2E 1.5, ITL 1.0, TPOT (1.5 - 0.5) / 2 = 0.5
  r3: 30 prompt tokens, 1 output, sent 1.0, chunk 1.125 -> TTFT 0.125, E2E 0.125, no TPOT
  r4: 40 prompt tokens, failed
"""

from __future__ import annotations

import math

import pytest

from controlplane.observability.serving_metrics import SLO, LatencyStats, RequestTimeline, compute_metrics

R1 = RequestTimeline(10, 4, 0.0, (0.25, 0.5, 0.75, 1.0), True)
R2 = RequestTimeline(20, 3, 0.5, (1.0, 2.0), True)
R3 = RequestTimeline(30, 1, 1.0, (1.125,), True)
R4 = RequestTimeline(40, 0, 1.5, (), False, "HTTP 500: boom")
RUN = [R1, R2, R3, R4]


def test_per_request_values() -> None:
    assert (R1.ttft_s, R1.latency_s, R1.itl_s.tolist(), R1.tpot_s) == (0.25, 1.0, [0.25, 0.25, 0.25], 0.25)
    assert (R2.ttft_s, R2.latency_s, R2.itl_s.tolist(), R2.tpot_s) == (0.5, 1.5, [1.0], 0.5)
    assert (R3.ttft_s, R3.latency_s, R3.itl_s.tolist(), R3.tpot_s) == (0.125, 0.125, [], None)
    with pytest.raises(ValueError, match="no token chunk"):
        _ = R4.ttft_s


def test_counts_and_throughputs() -> None:
    m = compute_metrics(RUN, duration_s=4.0)
    assert (m.completed, m.failed, m.total_input, m.total_output) == (3, 1, 60, 8)
    assert (m.request_throughput, m.output_throughput, m.total_token_throughput) == (0.75, 2.0, 17.0)
    assert (m.request_goodput, m.slo_attainment) == (None, None)


def test_latency_summaries() -> None:
    m = compute_metrics(RUN, duration_s=4.0)
    # TTFT sample [250, 500, 125] ms; sorted [125, 250, 500]; P90 at rank 1.8, P99 at rank 1.98
    assert m.ttft.mean_ms == 875 / 3
    assert m.ttft.median_ms == 250.0
    assert m.ttft.p90_ms == pytest.approx(450.0, abs=1e-9)
    assert m.ttft.p99_ms == pytest.approx(495.0, abs=1e-9)
    assert m.ttft.std_ms == pytest.approx(125 * math.sqrt(14) / 3, abs=1e-9)
    # TPOT sample [250, 500] ms (r3 has one output token and no TPOT)
    assert (m.tpot.mean_ms, m.tpot.median_ms, m.tpot.std_ms) == (375.0, 375.0, 125.0)
    assert (m.tpot.p90_ms, m.tpot.p99_ms) == pytest.approx((475.0, 497.5), abs=1e-9)
    # ITL pooled over requests [250, 250, 250, 1000] ms; P90 at rank 2.7, P99 at rank 2.97
    assert (m.itl.mean_ms, m.itl.median_ms) == (437.5, 250.0)
    assert (m.itl.p90_ms, m.itl.p99_ms) == pytest.approx((775.0, 977.5), abs=1e-9)
    assert m.itl.std_ms == pytest.approx(187.5 * math.sqrt(3), abs=1e-9)
    # E2E sample [1000, 1500, 125] ms
    assert (m.e2el.mean_ms, m.e2el.median_ms) == (875.0, 1000.0)
    assert (m.e2el.p90_ms, m.e2el.p99_ms) == pytest.approx((1400.0, 1490.0), abs=1e-9)


@pytest.mark.parametrize(
    ("slo", "good"),
    [
        (SLO(ttft_ms=300, tpot_ms=400), 2),  # r1, r3 (TPOT 0); r2's TTFT 500 misses
        (SLO(e2el_ms=1000), 2),  # r1 meets it exactly, r3; r2 misses
        (SLO(e2el_ms=999), 1),  # r3 only
        (SLO(tpot_ms=250), 2),  # r1 exactly, r3 with TPOT 0
        (SLO(ttft_ms=100), 0),
    ],
)
def test_goodput_and_attainment_count_failed_requests_as_misses(slo: SLO, good: int) -> None:
    m = compute_metrics(RUN, duration_s=4.0, slo=slo)
    assert (m.request_goodput, m.slo_attainment) == (good / 4.0, good / 4)


def test_an_empty_slo_means_no_goodput() -> None:
    assert compute_metrics(RUN, 4.0, SLO()).request_goodput is None


def test_all_failed_summarises_to_zeros() -> None:
    m = compute_metrics([R4], duration_s=2.0, slo=SLO(ttft_ms=1))
    assert (m.completed, m.failed, m.total_output, m.request_throughput) == (0, 1, 0, 0.0)
    assert (m.request_goodput, m.slo_attainment) == (0.0, 0.0)
    assert m.ttft == LatencyStats(0.0, 0.0, 0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("timelines", "duration", "message"),
    [([], 1.0, "no requests"), ([R1], 0.0, "duration must be > 0")],
)
def test_bad_inputs_raise(timelines: list[RequestTimeline], duration: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compute_metrics(timelines, duration)


def test_slo_rejects_non_positive_targets() -> None:
    with pytest.raises(ValueError, match="SLO tpot_ms must be a positive number, got 0"):
        SLO(tpot_ms=0)
