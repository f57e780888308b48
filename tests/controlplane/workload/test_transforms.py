"""Head, rate scaling, length scaling and the spec that chains them."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from controlplane.workload import (
    TRACE_FILES,
    TraceRequest,
    WorkloadSpec,
    arrival_times,
    build_workload,
    cycle,
    head,
    scale_lengths,
    scale_rate,
)


def test_head_keeps_the_first_requests() -> None:
    requests = [TraceRequest(float(i), 1, 1) for i in range(5)]
    assert head(requests, 2) == requests[:2]
    assert head(requests, 10) == requests
    with pytest.raises(ValueError, match="limit must be >= 1"):
        head(requests, 0)


def test_rate_scale_divides_arrivals() -> None:
    out = scale_rate([TraceRequest(0.0, 1, 1), TraceRequest(3.0, 1, 1)], 4.0)
    assert [r.arrival_s for r in out] == [0.0, 0.75]
    with pytest.raises(ValueError, match="rate scale must be a positive number"):
        scale_rate([], 0.0)


def test_length_scale_rounds_and_clamps() -> None:
    requests = [TraceRequest(0.0, 1000, 300), TraceRequest(0.0, 30, 3)]
    out = scale_lengths(requests, 0.1, max_prompt_len=64, max_output_len=20)
    assert [(r.prompt_len, r.output_len) for r in out] == [(64, 20), (3, 1)]
    assert [(r.prompt_len, r.output_len) for r in scale_lengths(requests, 2.0)] == [(2000, 600), (60, 6)]
    with pytest.raises(ValueError, match="max_output_len must be >= 1"):
        scale_lengths(requests, 1.0, max_output_len=0)
    with pytest.raises(ValueError, match="length scale must be a positive number"):
        scale_lengths(requests, math.inf)


def test_length_scale_keeps_prefix_blocks() -> None:
    shared = TraceRequest(0.0, 1030, 6, (0, 1, 2), 512)
    out = scale_lengths([shared], 1 / 64)[0]
    # 1030/64 = 16.09 -> 16 tokens in blocks of 512/64 = 8 -> the first 2 hash ids
    assert (out.prompt_len, out.block_tokens, out.hash_ids, out.output_len) == (16, 8, (0, 1), 1)
    capped = scale_lengths([shared], 1.0, max_prompt_len=600)[0]
    assert (capped.prompt_len, capped.block_tokens, capped.hash_ids) == (600, 512, (0, 1))
    # a prompt rounded past its blocks' capacity is capped at it: 1024 * f = 10.8 -> 11, while the
    # blocks hold 2 * round(512 * f) = 2 * round(5.4) = 10 tokens
    full = scale_lengths([TraceRequest(0.0, 1024, 1, (4, 5), 512)], 5.4 / 512)[0]
    assert (full.prompt_len, full.block_tokens, full.hash_ids) == (10, 5, (4, 5))


def test_spec_builds_synthetic_requests_with_poisson_arrivals() -> None:
    spec = WorkloadSpec(input_len=8, output_len=4, num_requests=3, request_rate=2.0, seed=5, rate_scale=2.0)
    expected = arrival_times(3, 2.0, 1.0, np.random.default_rng(5)) / 2.0
    assert build_workload(spec) == [TraceRequest(float(t), 8, 4) for t in expected]


def test_spec_keeps_trace_timestamps_unless_a_rate_is_given(tmp_path: Path) -> None:
    (tmp_path / TRACE_FILES["mooncake"]).write_text(
        '{"timestamp": 0, "input_length": 600, "output_length": 6, "hash_ids": [0, 1]}\n'
        '{"timestamp": 500, "input_length": 10, "output_length": 3, "hash_ids": [0]}\n'
        '{"timestamp": 900, "input_length": 10, "output_length": 3, "hash_ids": [0]}\n'
    )
    spec = WorkloadSpec(trace="mooncake", num_requests=2, rate_scale=2.0, length_scale=0.5, max_input_len=200)
    assert build_workload(spec, tmp_path) == [
        TraceRequest(0.0, 200, 3, (0,), 256),
        TraceRequest(0.25, 5, 2, (0,), 256),
    ]
    respaced = build_workload(WorkloadSpec(trace="mooncake", request_rate=math.inf), tmp_path)
    assert [r.arrival_s for r in respaced] == [0.0, 0.0, 0.0]


def test_spec_gives_length_only_traces_an_infinite_rate_by_default(tmp_path: Path) -> None:
    (tmp_path / TRACE_FILES["sharegpt"]).write_text("num_prefill_tokens,num_decode_tokens\n7,8\n9,10\n")
    assert build_workload(WorkloadSpec(trace="sharegpt"), tmp_path) == [
        TraceRequest(0.0, 7, 8),
        TraceRequest(0.0, 9, 10),
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"trace": "x", "input_len": 3}, "either a trace or synthetic"),
        ({"input_len": 3}, "need both input_len and output_len"),
        ({"input_len": 3, "output_len": 2}, "need num_requests"),
        ({"trace": "x", "num_requests": 0}, "num_requests must be >= 1"),
        ({"trace": "x", "request_rate": -1.0}, "request rate must be > 0"),
        ({"trace": "x", "arrival": "uniform"}, "arrival must be one of"),
        ({"trace": "x", "cv": 2.0}, "a poisson process has cv 1"),
        ({"trace": "x", "arrival": "gamma", "cv": 0.0}, "cv must be a positive number"),
        ({"trace": "x", "vocab": (5, 5)}, "vocab range must satisfy"),
        ({"trace": "x", "rate_scale": 0.0}, "rate scale must be a positive number"),
        ({"trace": "x", "length_scale": math.nan}, "length scale must be a positive number"),
        ({"trace": "x", "max_input_len": 0}, "max_input_len must be >= 1"),
        ({"trace": "x", "seed": -1}, "seed must be >= 0"),
    ],
)
def test_spec_rejects_inconsistent_fields(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WorkloadSpec(**kwargs)  # type: ignore[arg-type]


def test_spec_describe_is_json_ready() -> None:
    spec = WorkloadSpec(trace="sharegpt", request_rate=math.inf, vocab=(1, 9))
    described = spec.describe()
    assert (described["request_rate"], described["vocab"], described["trace"]) == ("inf", [1, 9], "sharegpt")


def test_cycle_repeats_a_timed_trace_one_mean_gap_after_its_end() -> None:
    reqs = [TraceRequest(0.0, 5, 1), TraceRequest(1.0, 6, 2), TraceRequest(4.0, 7, 3)]
    out = cycle(reqs, 7)
    # mean gap 2 s, so the second pass starts at 4 + 2 = 6 s and the third at 12 s
    assert [r.arrival_s for r in out] == [0.0, 1.0, 4.0, 6.0, 7.0, 10.0, 12.0]
    assert [r.prompt_len for r in out] == [5, 6, 7, 5, 6, 7, 5]
    assert cycle(reqs, 2) == reqs[:2]
    with pytest.raises(ValueError, match="empty"):
        cycle([], 3)


def test_build_workload_repeats_a_short_trace_to_the_requested_count() -> None:
    spec = WorkloadSpec(trace="sharegpt", num_requests=10_005, request_rate=50.0)
    reqs = build_workload(spec)
    assert len(reqs) == 10_005
    assert [r.prompt_len for r in reqs[10_000:]] == [r.prompt_len for r in reqs[:5]]
