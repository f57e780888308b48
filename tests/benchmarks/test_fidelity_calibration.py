"""The simulator's calibration from one served run: step traces inside a wall-clock window, step
noise, and per-request dispatch delays from measured minus simulated TTFT."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.fidelity_calibration import Calibration, window_traces
from controlplane.observability.serving_metrics import RequestTimeline
from controlplane.runtime.sim.noise import StepNoise
from instances.latency.distserve import Coefficients, DistServeModel
from instances.step_trace import COLUMNS, StepRecord

# prefill: 0.1 s + 1 ms per token; decode: 10 ms + 1 ms per sequence
LATENCY = DistServeModel(Coefficients(0.1, 0.001, 0.0), Coefficients(0.01, 0.0, 0.001))


def record(end_s: float, seconds: float = 0.011) -> StepRecord:
    return StepRecord(end_s, seconds, 0, 0, 0, 1, 10)  # one decode (LATENCY: 0.011 s)


def write_trace(path: Path, records: list[StepRecord]) -> None:
    lines = [",".join(COLUMNS)] + [",".join(repr(v) for v in (r.end_s, r.seconds, r.prefill_tokens, r.prefill_attn,
                                                               r.num_prefills, r.decode_batch, r.decode_context))
                                   for r in records]
    path.write_text("\n".join(lines) + "\n")


# ---- window_traces -------------------------------------------------------------------------------


def test_window_keeps_records_ending_inside_it_one_list_per_file_in_name_order(tmp_path: Path) -> None:
    write_trace(tmp_path / "instance-1.csv", [record(9.0), record(10.0), record(12.5), record(15.0), record(15.5)])
    write_trace(tmp_path / "instance-0.csv", [record(11.0), record(20.0)])
    write_trace(tmp_path / "instance-2.csv", [record(1.0)])  # nothing in the window: an empty list
    (tmp_path / "notes.txt").write_text("not a trace")
    traces = window_traces(tmp_path, (10.0, 15.0))
    # bounds included; instance-0 first, then instance-1, then instance-2
    assert traces == [[record(11.0)], [record(10.0), record(12.5), record(15.0)], []]


def test_several_windows_concatenate_each_instance_s_records_in_order(tmp_path: Path) -> None:
    write_trace(tmp_path / "instance-0.csv", [record(1.0), record(2.0), record(3.0), record(4.0), record(5.0)])
    assert window_traces(tmp_path, (0.5, 1.5), (3.5, 4.5)) == [[record(1.0), record(4.0)]]


def test_window_of_a_directory_without_traces_names_it(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a trace")
    with pytest.raises(FileNotFoundError, match=rf"no step traces in {tmp_path}"):
        window_traces(tmp_path, (0.0, 1.0))
    missing = tmp_path / "missing"
    with pytest.raises(FileNotFoundError, match=rf"no step traces in {missing}"):
        window_traces(missing, (0.0, 1.0))


def test_window_of_a_malformed_trace_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="bad.csv: not a step trace"):
        window_traces(tmp_path, (0.0, 1.0))


# ---- Calibration.measure -------------------------------------------------------------------------

# instance 0: a prefill of 100 tokens in 0.4 s (model 0.2: stretch 2), then a decode in 0.022 s
# (model 0.011: stretch 2) starting 0.003 s after it; instance 1 has a single step: left out
TRACES = [[StepRecord(1.0, 0.4, 100, 10_000, 1, 0, 0), StepRecord(1.025, 0.022, 0, 0, 0, 1, 101)],
          [StepRecord(5.0, 0.2, 100, 10_000, 1, 0, 0)]]


def ok(send_s: float, ttft_s: float) -> RequestTimeline:
    return RequestTimeline(prompt_len=10, output_tokens=2, send_s=send_s, chunk_s=[send_s + ttft_s, send_s + 1.0],
                           success=True)


def failed(send_s: float) -> RequestTimeline:
    return RequestTimeline(prompt_len=10, output_tokens=0, send_s=send_s, chunk_s=[], success=False, error="boom")


MEASURED = [ok(0.0, 0.5), ok(1.0, 0.2), failed(2.0), ok(3.0, 0.3), ok(4.0, 0.1)]
SIMULATED = [ok(0.0, 0.3), ok(1.0, 0.25), ok(2.0, 0.2), failed(3.0), ok(4.0, 0.1)]


def test_measure_by_hand() -> None:
    seen = []

    def simulate(noise: StepNoise) -> list[list[RequestTimeline]]:
        seen.append(noise)
        return [SIMULATED[:2], SIMULATED[2:]]

    # two calibration runs: requests 0-1 and 2-4
    cal = Calibration.measure(TRACES, LATENCY, 0.01, [MEASURED[:2], MEASURED[2:]], simulate)
    assert len(seen) == 1 and seen[0] is cal.noise  # the simulation replays the measured noise
    (seq,) = cal.noise.sequences
    assert [pytest.approx(p, abs=1e-12) for p in seq] == [(2.0, 0.003), (2.0, 0.003)]
    # residuals (measured - simulated TTFT) of requests 0, 1 and 4 (2 failed measured, 3 simulated):
    # 0.2, -0.05, 0.0; delays base 0.01 + residual, clamped at 0: 0.21, 0 (-0.04), 0.01
    assert cal.dispatch_delays_s == pytest.approx((0.21, 0.0, 0.01), abs=1e-12)
    assert cal.dispatch_delays_s[1] == 0.0
    # percentiles of (-0.05, 0.0, 0.2) with linear interpolation: P10 at rank 0.2, P90 at rank 1.8
    assert cal.residual_ms == {"p10": pytest.approx(-40.0), "p50": pytest.approx(0.0, abs=1e-9),
                               "p90": pytest.approx(160.0)}
    d = cal.describe()
    assert d["step_noise"] == {"sequences": 1, "steps": 2, "mean_stretch": pytest.approx(2.0),
                               "mean_gap_s": pytest.approx(0.003)}
    assert d["ttft_residual_ms"] == cal.residual_ms
    # delays in ms (210, 0, 10): sorted 0, 10, 210
    assert d["dispatch_delay_ms"] == {"p10": pytest.approx(2.0), "p50": pytest.approx(10.0),
                                      "p90": pytest.approx(170.0), "samples": 3}


def test_a_zero_base_delay_keeps_non_negative_residuals_as_they_are() -> None:
    cal = Calibration.measure(TRACES, LATENCY, 0.0, [[ok(0.0, 0.5), ok(1.0, 0.2)]],
                              lambda noise: [[ok(0.0, 0.25), ok(1.0, 0.3)]])
    assert cal.dispatch_delays_s == pytest.approx((0.25, 0.0), abs=1e-12)
    assert cal.residual_ms["p50"] == pytest.approx(75.0)  # the mean of 250 and -100


def test_no_request_succeeding_on_both_sides_is_an_error() -> None:
    with pytest.raises(ValueError, match="no request of the calibration run succeeded on both sides"):
        Calibration.measure(TRACES, LATENCY, 0.01, [[failed(0.0), ok(1.0, 0.2)]],
                            lambda noise: [[ok(0.0, 0.2), failed(1.0)]])


def test_measured_and_simulated_must_be_the_same_requests() -> None:
    with pytest.raises(ValueError):
        Calibration.measure(TRACES, LATENCY, 0.01, [MEASURED], lambda noise: [SIMULATED[:-1]])
    with pytest.raises(ValueError):
        Calibration.measure(TRACES, LATENCY, 0.01, [MEASURED], lambda noise: [SIMULATED, SIMULATED])


def test_traces_without_two_steps_are_an_error() -> None:
    with pytest.raises(ValueError, match="at least one non-empty sequence"):
        Calibration.measure([TRACES[1], []], LATENCY, 0.01, [MEASURED], lambda noise: [SIMULATED])
