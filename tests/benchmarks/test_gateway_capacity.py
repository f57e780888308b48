"""The pure parts of the gateway-capacity benchmark on hand-made numbers: added latency, capacity
points and verdict, the tables, the flags, and the engine-only timing loop under a counting clock."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest

from benchmarks.engine_baseline import engine_only_latencies
from benchmarks.gateway_capacity import parse_args, parse_concurrencies
from benchmarks.gateway_report import (
    AddedLatency,
    CapacityPoint,
    best_point,
    format_tables,
    results_payload,
    verdict,
    write_json,
)
from benchmarks.loadgen import BenchmarkConfig, BenchmarkResult, RequestRecord
from benchmarks.openai_stream import StreamOutcome
from controlplane.observability.serving_metrics import LatencyStats, RequestTimeline, compute_metrics
from controlplane.workload import WorkloadSpec
from tests.instances.engine_fixtures import make_engine, tiny_model


def _stats(median_ms: float) -> LatencyStats:
    return LatencyStats(mean_ms=median_ms, std_ms=0.0, median_ms=median_ms, p90_ms=2 * median_ms, p99_ms=4 * median_ms)


def _point(concurrency: int, rps: float, gateway_ms: float = 2.0) -> CapacityPoint:
    cpu = {"gateway": gateway_ms, "instances": 1.0, "ray": 0.25, "client": 1.5}
    return CapacityPoint(concurrency, 2000, 0, 2000 / rps, rps, _stats(100.0), cpu)


def test_added_latency_is_the_difference_of_medians() -> None:
    added = AddedLatency.of([0.75, 0.25, 0.5], [0.125, 0.25])
    assert added == AddedLatency(server_median_ms=500.0, engine_median_ms=187.5, added_ms=312.5,
                                 server_samples=3, engine_samples=2)


@pytest.mark.parametrize(("server", "engine"), [([], [0.1]), ([0.1], [])])
def test_added_latency_needs_both_samples(server: list[float], engine: list[float]) -> None:
    with pytest.raises(ValueError, match="at least one server and one engine-only sample"):
        AddedLatency.of(server, engine)


def test_capacity_point_from_a_run_counts_cpu_per_completed_request() -> None:
    timelines = [RequestTimeline(16, 1, 0.0, (0.25,), True), RequestTimeline(16, 1, 0.0, (0.5,), True),
                 RequestTimeline(16, 0, 0.0, (), False, "HTTP 500: boom")]
    spec = WorkloadSpec(input_len=16, output_len=1, num_requests=3)
    records = tuple(RequestRecord(i, 0.0, StreamOutcome(t, True)) for i, t in enumerate(timelines))
    result = BenchmarkResult(BenchmarkConfig("http://h:1", "m", spec, max_concurrency=8), "t",
                             compute_metrics(timelines, 0.5), records)
    point = CapacityPoint.of(8, result, {"gateway": 0.5, "client": 0.25})
    assert (point.max_concurrency, point.completed, point.failed, point.request_throughput) == (8, 2, 1, 4.0)
    assert point.cpu_ms_per_request == {"gateway": 250.0, "client": 125.0}
    assert point.e2e.median_ms == 375.0
    assert point.gateway_bound_rps == 4.0


def test_gateway_bound_is_one_core_over_gateway_cpu() -> None:
    assert _point(32, 300.0, gateway_ms=2.0).gateway_bound_rps == 500.0
    assert _point(32, 300.0, gateway_ms=0.0).gateway_bound_rps == math.inf


def test_best_point_and_verdict() -> None:
    points = [_point(32, 250.0), _point(128, 320.5), _point(256, 320.5)]
    assert best_point(points).max_concurrency == 128
    assert verdict(points) == "capacity 320 req/s (max concurrency 128) meets the 300 req/s target"
    assert verdict(points[:1]) == "capacity 250 req/s (max concurrency 32) MISSES the 300 req/s target"
    with pytest.raises(ValueError, match="no capacity points"):
        best_point([])


def test_tables() -> None:
    added = AddedLatency(500.0, 187.5, 312.5, 3, 2)
    lines = format_tables([_point(32, 250.0), _point(128, 320.5)], _stats(500.0), added, 5.0).splitlines()
    assert lines[2] == "| 32 | 250.0 | 2000 | 0 | 100.0 / 200.0 / 400.0 | 2.00 / 1.00 / 0.25 / 1.50 | 500 |"
    assert lines[3] == "| 128 | 320.5 | 2000 | 0 | 100.0 / 200.0 / 400.0 | 2.00 / 1.00 / 0.25 / 1.50 | 500 |"
    assert lines[5] == "| low load (5 req/s, Poisson) | median (ms) | P90 (ms) | P99 (ms) | samples |"
    assert lines[7] == "| E2E via HTTP + gateway + Ray + engine | 500.00 | 1000.00 | 2000.00 | 3 |"
    assert lines[8] == "| engine only (in-process, one at a time) | 187.50 | | | 2 |"
    assert lines[9] == "| **added by gateway + dispatch (median difference)** | **312.50** | | | |"
    assert lines[-1] == "capacity 320 req/s (max concurrency 128) meets the 300 req/s target"


def test_results_json(tmp_path: Path) -> None:
    added = AddedLatency(500.0, 187.5, 312.5, 3, 2)
    payload = results_payload({"model": "m"}, [_point(32, 250.0)], _stats(500.0), added, [0.5], [0.125])
    path = tmp_path / "sub" / "r.json"
    write_json(payload, path)
    data = json.loads(path.read_text())
    assert data["capacity"][0]["cpu_ms_per_request"]["gateway"] == 2.0
    assert data["added_latency"]["added_ms"] == 312.5
    assert data["verdict"].endswith("MISSES the 300 req/s target")
    assert (data["low_load_server_e2e_s"], data["low_load_engine_only_s"]) == ([0.5], [0.125])


def test_parse_concurrencies() -> None:
    assert parse_concurrencies("32,128,256") == (32, 128, 256)
    with pytest.raises(ValueError, match="comma-separated integers"):
        parse_concurrencies("32,lots")
    with pytest.raises(ValueError, match=">= 1"):
        parse_concurrencies("0,8")


def test_flags(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse_args([])
    assert (args.instances, args.requests, args.concurrencies, args.low_rate, args.low_requests) == (
        2, 2000, (32, 128, 256), 5.0, 200)
    assert args.out == Path("results/gateway_capacity.json")
    for bad in (["--concurrency", "x"], ["--low-rate", "inf"], ["--requests", "0"]):
        with pytest.raises(SystemExit) as exc:
            parse_args(bad)
        assert exc.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == "gateway_capacity: error: --requests must be >= 1"


def test_engine_only_latencies_time_each_request_alone() -> None:
    ticks = itertools.count()
    engine = make_engine(tiny_model())
    latencies = engine_only_latencies(engine, [[1, 2, 3], [4, 5, 6, 7]], 3, clock=lambda: float(next(ticks)))
    assert latencies == [1.0, 1.0]  # the clock is read once before add_request and once when finished
    assert not engine.has_unfinished()
    assert engine.stats().steps == 6  # one prefill step with the first token, then two decode steps, each
