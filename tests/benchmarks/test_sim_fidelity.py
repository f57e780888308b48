"""The simulator-fidelity benchmark: its pure parts on hand-made numbers (overheads from probes,
capacity, the comparison and its table, schedstat parsing, bursts, flags), and the `--quick` path
end to end against a real two-instance cluster."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from benchmarks.fidelity_report import (
    BatchProbe,
    ScaledLatency,
    ServingOverheads,
    SweepPoint,
    ThreadWait,
    burst_share,
    busiest_threads,
    capacity,
    compare,
    format_table,
    parse_schedstat,
    single_burst_share,
    verdict,
)
from benchmarks.sim_fidelity import (
    BackgroundCpu,
    host_model,
    main,
    mean_deltas,
    mean_stretch,
    parse_args,
    parse_rates,
    simulate,
)
from controlplane.observability.serving_metrics import RequestTimeline, compute_metrics
from controlplane.runtime.sim.host import HostModel
from controlplane.scheduling.registry import ProfileConfig
from controlplane.workload import WorkloadSpec
from instances.engine.config import EngineConfig
from instances.latency.distserve import Coefficients, DistServeModel
from instances.latency.shape import StepShape

# prefill 1 ms + 10 us per token; decode 0.5 ms + 1 us per context token (per-sequence cost 0)
MODEL = DistServeModel(Coefficients(0.001, 1e-5, 0.0), Coefficients(0.0005, 1e-6, 0.0))


def test_overheads_from_lone_requests() -> None:
    # prompt 100: prefill 1 + 1 = 2 ms. 11 outputs: decode contexts 101..110, mean 105.5 -> 0.6055 ms
    o = ServingOverheads.measure(MODEL, 100, 11, one_token_e2e_s=0.008, lone_tpot_s=0.0026055)
    assert o.predicted_prefill_s == pytest.approx(0.002)
    assert o.predicted_decode_s == pytest.approx(0.0006055)
    assert o.step_overhead_s == pytest.approx(0.002)
    assert o.dispatch_delay_s == pytest.approx(0.008 - 0.002 - 0.002)
    assert o.clamped == ()


def test_overheads_never_negative() -> None:
    o = ServingOverheads.measure(MODEL, 100, 11, one_token_e2e_s=0.001, lone_tpot_s=0.0005)
    assert (o.step_overhead_s, o.dispatch_delay_s) == (0.0, 0.0)
    assert o.clamped == ("step_overhead_s", "dispatch_delay_s")
    with pytest.raises(ValueError, match="output_len >= 2"):
        ServingOverheads.measure(MODEL, 100, 1, 0.01, 0.01)


def test_per_sequence_overhead_from_the_batch_probe() -> None:
    o = ServingOverheads.measure(MODEL, 100, 11, one_token_e2e_s=0.008, lone_tpot_s=0.0026055)  # 2 ms per step
    # 8 at a time on 2 instances: batches of 4; decode at contexts 4 x (101 .. 110): 0.0005 + 4e-6 x 105.5;
    # 2 stepping instances and 0.5 background cores on 2 cores: rate 0.8
    b = BatchProbe.measure(MODEL, o, 8, 2, tpot_s=(0.000922 + 0.002 + 4 * 0.0005) / 0.8, host=HostModel(2.0, 0.5))
    assert (b.rate, b.predicted_decode_s) == (pytest.approx(0.8), pytest.approx(0.000922))
    assert b.per_seq_s == pytest.approx(0.0005)
    assert BatchProbe.measure(MODEL, o, 8, 2, tpot_s=0.001, host=HostModel(2.0)).per_seq_s == 0.0  # clamped
    with pytest.raises(ValueError, match="multiple of the instances"):
        BatchProbe.measure(MODEL, o, 7, 2, 0.01, HostModel(2.0))


def test_gateway_means_are_over_the_observations_between_two_readings() -> None:
    before = {"ttft": (1.0, 10.0), "tpot": (0.5, 10.0), "e2e": (2.0, 10.0)}
    after = {"ttft": (1.6, 30.0), "tpot": (0.5, 10.0), "e2e": (6.0, 30.0)}
    assert mean_deltas(before, after) == {"ttft": pytest.approx(0.03), "tpot": 0.0, "e2e": pytest.approx(0.2)}


def _point(offered: float, achieved: float) -> SweepPoint:
    return SweepPoint(offered, 300, 300, achieved, 10.0, 2.0, 50.0)


def test_capacity_is_the_highest_completed_rate() -> None:
    assert capacity([_point(20, 18.0), _point(80, 66.5), _point(math.inf, 104.0)]) == 104.0
    assert capacity([_point(20, 18.0), _point(math.inf, 15.0)]) == 18.0
    with pytest.raises(ValueError, match="no sweep points"):
        capacity([])
    with pytest.raises(ValueError, match="completed"):
        capacity([_point(20, 0.0)])


def _timeline(send: float, chunks: list[float]) -> RequestTimeline:
    return RequestTimeline(16, len(chunks), send, chunks, True)


def _metrics(ttfts_ms: list[float], tpot_ms: float):
    # requests of 3 tokens: first at TTFT, then two more `tpot_ms` apart
    timelines = [_timeline(0.0, [t / 1e3, (t + tpot_ms) / 1e3, (t + 2 * tpot_ms) / 1e3]) for t in ttfts_ms]
    return compute_metrics(timelines, 1.0)


def test_compare_and_verdict() -> None:
    measured = _metrics([10.0, 20.0, 30.0], 4.0)
    simulated = _metrics([11.0, 22.0, 33.0], 5.0)  # TTFT +10%, TPOT +25%
    rows = compare(measured, simulated)
    assert [(r.metric, r.percentile) for r in rows[:4]] == [("ttft", "p50"), ("ttft", "p90"), ("ttft", "p99"),
                                                          ("tpot", "p50")]
    ttft50, tpot50 = rows[0], rows[3]
    assert (ttft50.measured_ms, ttft50.simulated_ms) == (pytest.approx(20.0), pytest.approx(22.0))
    assert ttft50.rel_error == pytest.approx(0.1)
    assert ttft50.checked and ttft50.within
    assert tpot50.rel_error == pytest.approx(0.25)
    assert tpot50.checked and not tpot50.within
    assert not rows[2].checked  # P99 is reported, not checked
    assert not any(r.checked for r in rows if r.metric in ("itl", "e2el"))
    assert verdict(rows) == (2, 4)  # TTFT P50 and P90 within 15%, TPOT P50 and P90 not


def test_relative_error_of_a_zero_measurement() -> None:
    measured, simulated = _metrics([10.0], 0.0), _metrics([10.0], 1.0)
    tpot = compare(measured, simulated)[3]
    assert (tpot.measured_ms, tpot.rel_error, tpot.within) == (0.0, math.inf, False)
    assert compare(measured, measured)[3].rel_error == 0.0


def test_table_marks_the_checked_figures_of_the_headline() -> None:
    measured = _metrics([10.0, 20.0, 30.0], 4.0)
    table = format_table(measured, {"bare": _metrics([5.0, 10.0, 15.0], 1.0),
                                    "head": _metrics([11.0, 22.0, 33.0], 5.0)}, "head")
    lines = table.splitlines()
    assert lines[0] == ("| metric | measured (ms) | bare (ms) | error | head (ms) | error | within 15% (head) |")
    assert lines[2] == "| TTFT P50 | 20.00 | 10.00 | -50% | 22.00 | +10% | yes |"
    assert lines[4].startswith("| TTFT P99 |") and lines[4].endswith("| - |")
    assert lines[5] == "| TPOT P50 | 4.00 | 1.00 | -75% | 5.00 | +25% | **NO** |"
    assert len(lines) == 2 + 12
    with pytest.raises(ValueError, match="headline variant"):
        format_table(measured, {"bare": measured}, "head")


def test_schedstat_and_the_busiest_thread() -> None:
    assert parse_schedstat("123456 7890 42\n") == (123456, 7890)
    with pytest.raises(ValueError, match="not a schedstat line"):
        parse_schedstat("garbage")
    before = {10: {10: (1_000_000_000, 0), 11: (0, 0)}, 20: {20: (0, 0)}}
    after = {10: {10: (1_100_000_000, 50_000_000), 11: (2_000_000_000, 1_000_000_000), 12: (5, 5)},
             20: {20: (500_000_000, 500_000_000)}}
    waits = busiest_threads(before, after)
    assert waits == {10: ThreadWait(2.0, 1.0), 20: ThreadWait(0.5, 0.5)}
    assert waits[10].stretch == 1.5
    assert mean_stretch(waits) == pytest.approx((2.5 + 1.5) / 2.5)
    assert mean_stretch({}) == 1.0 and ThreadWait(0.0, 1.0).stretch == 1.0


def test_burst_share_counts_gaps_of_tokens_delivered_together() -> None:
    timelines = [_timeline(0.0, [0.01, 0.01, 0.013, 0.016]), _timeline(0.0, [0.02, 0.02005]),
                 RequestTimeline(16, 0, 0.0, [], False, "boom")]
    assert burst_share(timelines) == pytest.approx(2 / 4)
    assert burst_share([]) == 0.0
    assert single_burst_share(timelines) == pytest.approx(1 / 2)  # the second request: 2 tokens 50 us apart
    assert single_burst_share([]) == 0.0


def test_scaled_latency_multiplies_every_step() -> None:
    shape = StepShape.decode(2, 100)
    assert ScaledLatency(MODEL, 2.5).step_time(shape) == pytest.approx(2.5 * MODEL.step_time(shape))
    assert ScaledLatency(MODEL, 2.5).describe()["factor"] == 2.5


def test_simulate_uses_the_overheads() -> None:
    spec = WorkloadSpec(input_len=100, output_len=3, num_requests=1)
    engine = EngineConfig(block_size=16, num_blocks=64, max_num_batched_tokens=512, max_num_seqs=8, max_model_len=512)
    profile = ProfileConfig(filters=("healthy",), scorers={"load": 1.0}, picker="power_of_two")
    bare = simulate(spec, 2, "default", profile, engine, MODEL, 0)
    over = simulate(spec, 2, "default", profile, engine, MODEL, 0, dispatch_delay_s=0.005, step_overhead_s=0.001)
    # prefill 2 ms, decodes at contexts 101 and 102: 0.601 and 0.602 ms
    assert list(bare.timelines[0].chunk_s) == pytest.approx([0.002, 0.002601, 0.003203])
    assert list(over.timelines[0].chunk_s) == pytest.approx([0.008, 0.009601, 0.011203])
    assert over.results["serving_overheads"] == {"dispatch_delay_s": 0.005, "step_overhead_s": 0.001,
                                                 "step_overhead_per_seq_s": 0.0}
    # one instance steps (0.601 ms of work each): with 1.5 background cores on 2 cores it gets 0.8
    hosted = simulate(spec, 2, "default", profile, engine, MODEL, 0, host=HostModel(2.0, 1.5))
    assert list(hosted.timelines[0].chunk_s) == pytest.approx([0.0025, 0.00325125, 0.00400375])
    assert hosted.results["host"] == {"cores": 2.0, "background_cores": 1.5}


def test_host_model_takes_the_background_cpu_at_the_measured_rate() -> None:
    # 0.1 cores at no load plus 20 ms per request: the line through the sweep's points
    sweep = BackgroundCpu(((2.0, 0.14), (4.0, 0.18), (8.0, 0.26)), "capacity sweep")
    m = SimpleNamespace(background=sweep, rate=25.0)
    host = host_model(m)
    assert host.background_cores == pytest.approx(0.6)
    assert host.cores == os.cpu_count()
    assert BackgroundCpu(((10.0, 0.5),), "warm-up").cores_at(4.0) == pytest.approx(0.2)  # one point: per request
    assert BackgroundCpu(((2.0, 0.5), (4.0, 0.1)), "sweep").cores_at(20.0) == 0.0  # never negative


def test_flags() -> None:
    assert parse_rates("20,40,inf") == (20.0, 40.0, math.inf)
    with pytest.raises(ValueError, match="comma-separated numbers"):
        parse_rates("20,fast")
    with pytest.raises(ValueError, match="> 0"):
        parse_rates("0,10")
    args = parse_args([])
    assert (args.num_requests, args.rates, args.load, args.length_scale) == (300, (2.0, 4.0, 8.0, 16.0), 0.7, 0.5)
    assert (args.max_input_len, args.max_output_len, args.sweep_requests, args.probe_concurrency) == (1024, 256, 100, 8)
    assert args.out == Path("results/sim_fidelity.json") and args.plot == Path("docs/img/sim_fidelity.png")
    quick = parse_args(["--quick", "--num-requests", "50"])
    assert (quick.num_requests, quick.rates, quick.out) == (50, (math.inf,), Path("results/sim_fidelity_quick.json"))


@pytest.mark.parametrize("argv", [["--load", "1.5"], ["--rate", "inf"], ["--instances", "0"],
                                  ["--sweep-rates", "x"], ["--probe-output", "1"]])
def test_bad_flags_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    assert capsys.readouterr().err.startswith("sim_fidelity: error:")


def test_bad_config_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--set", "engine.block_size=0"]) == 2
    assert "engine.block_size" in capsys.readouterr().err


@pytest.mark.slow
def test_quick_run_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, plot = tmp_path / "fidelity.json", tmp_path / "fidelity.png"
    assert main(["--quick", "--num-requests", "60", "--out", str(out), "--plot", str(plot)]) == 0
    data = json.loads(out.read_text())
    assert data["measured"]["metrics"]["completed"] == 60
    assert set(data["simulated"]) == {"profile only", "+ overheads", "+ host", "+ CPU wait", "calibrated"}
    assert data["headline"] == "calibrated"
    # the calibration runs (before and after the measured one: same rate, other seeds) give the
    # headline its step noise, read from the instances' step traces, and its dispatch delays
    cal = data["calibration"]
    assert [r["workload"]["seed"] for r in cal["runs"]] == [6, 7]
    assert all(r["metrics"]["completed"] == 60 and r["workload"]["request_rate"] == data["rate_rps"]
               for r in cal["runs"])
    assert cal["dispatch_delay_ms"]["samples"] == 120
    headline = data["simulated"]["calibrated"]["results"]
    assert headline["step_noise"] == cal["step_noise"] and cal["step_noise"]["sequences"] == 2
    assert cal["step_noise"]["steps"] > 120 and cal["step_noise"]["mean_stretch"] > 0
    windows = data["windows"]
    assert windows["calibration before"][1] <= windows["measured"][0] <= windows["measured"][1] <= (
        windows["calibration after"][0])
    assert sorted(p.name for p in (tmp_path / "fidelity_steps").glob("*.csv")) == ["instance-0.csv", "instance-1.csv"]
    background = data["background_cpu"]
    assert background["source"] == "capacity sweep" and len(background["points"]) == 1
    assert data["simulated"]["+ host"]["results"]["host"] == background["host"]
    assert data["simulated"]["+ host"]["results"]["serving_overheads"]["step_overhead_per_seq_s"] == (
        data["batch_probe"]["per_seq_s"])
    assert all(s["metrics"]["completed"] == 60 for s in data["simulated"].values())
    assert data["capacity_rps"] > 0 and data["rate_rps"] == pytest.approx(0.7 * data["capacity_rps"])
    assert data["simulated"]["+ overheads"]["results"]["serving_overheads"]["step_overhead_s"] == (
        data["serving_overheads"]["step_overhead_s"])
    assert data["engine"]["max_num_seqs"] == 64 and data["settings"]["instances"] == 2
    gateway = data["measured"]["gateway_means_s"]
    assert 0 < gateway["ttft"] <= gateway["e2e"]  # the gateway saw the 60 measured requests
    assert Path(tmp_path / "fidelity_profile.json").exists() and plot.stat().st_size > 0
    assert "| TTFT P50 |" in capsys.readouterr().out
