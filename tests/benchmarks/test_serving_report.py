"""The table and JSON of a hand-made run (the timelines of test_serving_metrics)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.loadgen import BenchmarkConfig, BenchmarkResult, RequestRecord
from benchmarks.openai_stream import StreamOutcome
from benchmarks.serving_report import format_table, result_to_dict, write_json
from controlplane.observability.serving_metrics import SLO, RequestTimeline, compute_metrics
from controlplane.workload import WorkloadSpec

TIMELINES = [
    RequestTimeline(10, 4, 0.0, (0.25, 0.5, 0.75, 1.0), True),
    RequestTimeline(20, 3, 0.5, (1.0, 2.0), True),
    RequestTimeline(30, 1, 1.0, (1.125,), True),
    RequestTimeline(40, 0, 1.5, (), False, "HTTP 500: boom"),
]
ARRIVALS = [0.0, 0.5, 0.75, 1.5]  # send lags 0, 0, 250, 0 ms


def make_result() -> BenchmarkResult:
    spec = WorkloadSpec(trace="sharegpt", request_rate=2.0, length_scale=0.5, max_output_len=64)
    config = BenchmarkConfig("http://h:1", "m", spec, max_concurrency=2, slo=SLO(ttft_ms=300), api_key="k")
    records = tuple(
        RequestRecord(i, a, StreamOutcome(t, usage_reported=t.success))
        for i, (a, t) in enumerate(zip(ARRIVALS, TIMELINES, strict=True))
    )
    return BenchmarkResult(
        config, "2026-01-01T00:00:00+0000", compute_metrics(TIMELINES, 4.0, config.slo), records
    )


def test_table_rows() -> None:
    lines = format_table(make_result()).splitlines()
    assert lines[:9] == [
        "============ Serving Benchmark Result ============",
        "Workload:                                sharegpt, 4 requests",
        "Arrivals:                                2 req/s, poisson",
        "Scaling:                                 rate x1, length x0.5 (max in None, max out 64)",
        "Max concurrency:                         2",
        "Successful requests:                     3",
        "Failed requests:                         1",
        "Benchmark duration (s):                  4.00",
        "Send lag P50 / P99 (ms):                 0.00 / 242.50",
    ]
    assert "Request goodput (req/s):                 0.50" in lines
    assert "SLO attainment (%):                      50.00" in lines
    assert "Median ITL (ms):                         250.00" in lines
    assert "P90 E2EL (ms):                           1400.00" in lines
    assert lines[-2:] == ["=" * 50, "1 x HTTP 500: boom"]


def test_json_has_config_metrics_and_raw_timelines(tmp_path: Path) -> None:
    path = tmp_path / "out" / "r.json"
    write_json(make_result(), path)
    data = json.loads(path.read_text())
    assert data == json.loads(json.dumps(result_to_dict(make_result())))
    assert "api_key" not in json.dumps(data["config"])
    assert data["config"]["workload"]["length_scale"] == 0.5
    assert data["metrics"]["tpot"]["mean_ms"] == 375.0
    assert data["requests"][0] == {
        "index": 0,
        "arrival_s": 0.0,
        "send_s": 0.0,
        "chunk_s": [0.25, 0.5, 0.75, 1.0],
        "prompt_len": 10,
        "output_tokens": 4,
        "usage_reported": True,
        "success": True,
        "error": None,
        "ttft_s": 0.25,
        "latency_s": 1.0,
        "tpot_s": 0.25,
    }
    failed = data["requests"][3]
    assert (failed["success"], failed["error"], failed["ttft_s"], failed["tpot_s"]) == (
        False,
        "HTTP 500: boom",
        None,
        None,
    )
