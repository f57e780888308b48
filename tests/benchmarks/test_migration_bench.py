"""The migration benchmark's core on tiny-llama over a real local Ray: the migrated request's tokens
equal an unmigrated run's, every migration commits with a measured downtime, and the pure helpers
that read arrival times do what their docstrings say."""

from __future__ import annotations

import asyncio

import pytest

from benchmarks.migration import format_table, format_verdicts, measure
from benchmarks.migration_analysis import (
    excess,
    first_from,
    last_before,
    loop_blocked,
    median_gap,
    no_batch_gap,
    per_token,
    step_slowdown,
)
from benchmarks.migration_run import RunShape, target_request
from controlplane.transfer.settings import TransferSettings
from instances.engine.config import EngineConfig
from instances.models.loader import load_model
from instances.replica import Replica, ReplicaSpec
from instances.step_trace import StepRecord

MAX_MODEL_LEN = 1024


def unmigrated(req, n: int) -> list[int]:
    replica = Replica.build(ReplicaSpec("ref", "tiny-llama", EngineConfig(max_model_len=MAX_MODEL_LEN)),
                            load_model("tiny-llama"))
    replica.add(type(req)(req.request_id, req.prompt_token_ids, type(req.sampling)(
        max_tokens=n, temperature=0.0, ignore_eos=True)))
    out: list[int] = []
    while replica.has_work():
        for c in replica.step():
            out.extend(c.token_ids)
    return out


def test_arrival_helpers():
    times = [1.0, 2.0, 2.0, 3.0, 10.0, 11.0]
    assert last_before(times, 2.0) == 0 and last_before(times, 0.5) is None
    assert first_from(times, 1.5) == 2  # the last token of the chunk that arrived at 2.0
    assert per_token(times, 3.0, 10.0) == pytest.approx((10.0 - 3.0) / 1)
    assert per_token(times, 1.5, 2.5) == pytest.approx((3.0 - 1.0) / 3)
    assert excess(times, 3, 5, 1.0) == pytest.approx(11.0 - 3.0 - 2.0)
    assert excess(times, 3, None, 1.0) is None
    assert median_gap(times, 0, 3) == pytest.approx(0.75)  # median of (2 - 1) / 2 (one chunk of two) and 3 - 2


def step(end: float, seconds: float, batch: int, context: int) -> StepRecord:
    return StepRecord(end, seconds, 0, 0, 0, batch, context)


def test_trace_helpers():
    # the source steps every 1 s (0.8 s of compute); r (1000 tokens) leaves after the step ending at 3.0,
    # and the loop is busy for 0.7 s before the step ending at 5.0
    src = [step(1.0, 0.8, 3, 1100), step(2.0, 0.8, 3, 1103), step(3.0, 0.8, 3, 1106), step(3.9, 0.7, 2, 108),
           step(5.0, 0.4, 2, 110)]
    dst = [step(1.5, 0.5, 2, 200), step(2.5, 0.5, 2, 202), step(3.5, 0.5, 2, 204), step(4.6, 0.8, 3, 1210)]
    assert no_batch_gap(src, dst, 1.5, 500) == pytest.approx(3.8 - 3.0)
    assert no_batch_gap(src, dst[:3], 1.5, 500) is None
    assert loop_blocked(src, 3.5, 4.0) == pytest.approx((0.7, 0.7))
    assert step_slowdown(src, (1.0, 3.0), (3.0, 5.0)) == pytest.approx(1.0)


def test_quick_run_on_tiny_llama():
    shape = RunShape(lengths=(128, 256), repeats=2, others=1, other_prompt=16, other_max_tokens=600, lead=32,
                     max_output=200, settle=1, window=3)
    results = asyncio.run(measure("tiny-llama", shape, TransferSettings(transfer_timeout_s=20.0),
                                  max_model_len=MAX_MODEL_LEN))
    rows, lengths = results["migrations"], results["lengths"]
    assert [s["length"] for s in lengths] == [128, 256]
    assert rows and all(r["result"] == "committed" for r in rows), rows
    for r in rows:
        assert r["downtime_s"] > 0  # r was out of every batch for a while, found in both step traces
        assert r["gateway_downtime_s"] is not None and r["stall_s"] is not None
        assert r["migration_s"] >= r["migrator_downtime_s"] > 0
        assert r["source_slowdown"] > 0 and r["destination_slowdown"] > 0
        assert r["stages"] >= 2 and r["bytes"] > 0
        assert r["seq_tokens"] > r["length"] - shape.lead
    for s in lengths:
        assert s["committed"] >= 1 and s["prefill_s"] > 0 and s["downtime_s"] is not None
        req = target_request(shape, s["length"], MAX_MODEL_LEN)
        assert s["tokens"] == unmigrated(req, len(s["tokens"]))  # migrating changed nothing
    assert set(results["verdicts"]) == {"one_step", "flat", "below_recompute", "source_slowdown"}
    assert "| 256 |" in format_table(lengths)
    assert "downtime flat" in format_verdicts(results["verdicts"])
