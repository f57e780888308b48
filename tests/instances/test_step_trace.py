"""Step traces: one CSV line per executed engine step (its wall-clock end, measured time and shape)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from controlplane.config import load_config
from instances.engine.config import EngineConfig
from instances.replica import Replica, ReplicaSpec
from instances.step_trace import COLUMNS, StepRecord, StepTrace, read_trace, trace_path
from instances.types import EngineRequest, SamplingParams
from tests.instances.engine_fixtures import greedy, make_engine, tiny_model

HEADER = "end_s,seconds,prefill_tokens,prefill_attn,num_prefills,decode_batch,decode_context"


def counter():
    """A wall clock that reads 1.0, 2.0, 3.0, ... on successive calls."""
    return itertools.count(1.0).__next__


def step_until_done(engine) -> list[float]:
    """Step until idle; the measured time of every step, as the engine's stats report it."""
    times = []
    for _ in range(100):
        if not engine.has_unfinished():
            return times
        engine.step()
        times.append(engine.stats().last_step_time_s)
    raise AssertionError("engine did not finish")


def shapes(records: list[StepRecord]) -> list[tuple[int, int, int, int, int]]:
    return [(r.prefill_tokens, r.prefill_attn, r.num_prefills, r.decode_batch, r.decode_context) for r in records]


def test_columns_are_the_record_fields_in_order() -> None:
    assert ",".join(COLUMNS) == HEADER


def test_engine_records_one_line_per_step_with_its_shape_and_times(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    engine = make_engine(tiny_model())
    trace = StepTrace(path, wall_clock=counter())
    engine.on_step = trace.record
    engine.add_request(EngineRequest("a", list(range(1, 21)), greedy(3)))
    times = step_until_done(engine)
    trace.close()
    records = read_trace(path)
    assert len(records) == len(times) == 3
    # step 1: the 20-token prompt from position 0 (20 * 20 query-key pairs), sampling token 1;
    # steps 2 and 3: one decode each, at positions 20 and 21 (context start + 1)
    assert shapes(records) == [(20, 400, 1, 0, 0), (0, 0, 0, 1, 21), (0, 0, 0, 1, 22)]
    assert [r.end_s for r in records] == [1.0, 2.0, 3.0]
    assert [r.seconds for r in records] == times  # written with repr: read back exactly
    assert all(t > 0 for t in times)
    assert path.read_text().splitlines()[0] == HEADER
    assert records[0].shape.num_tokens == 20 and records[1].shape.num_tokens == 1


def test_a_chunked_prefill_is_recorded_chunk_by_chunk(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    engine = make_engine(tiny_model())  # max_num_batched_tokens 64
    trace = StepTrace(path, wall_clock=counter())
    engine.on_step = trace.record
    engine.add_request(EngineRequest("a", [7] * 100, greedy(2)))
    first = engine.step()
    times = [engine.stats().last_step_time_s]
    assert first.deltas == []  # the first chunk samples nothing
    second = engine.step()
    times.append(engine.stats().last_step_time_s)
    assert [(d.request_id, d.first_index, len(d.token_ids)) for d in second.deltas] == [("a", 0, 1)]
    times += step_until_done(engine)
    trace.close()
    records = read_trace(path)
    # chunk 1: 64 tokens from position 0, attn 64 * 64; chunk 2: the other 36 from position 64,
    # attn 36 * (64 + 36), which samples the first token; then one decode at position 100 (context 101)
    assert shapes(records) == [(64, 64 * 64, 1, 0, 0), (36, 36 * 100, 1, 0, 0), (0, 0, 0, 1, 101)]
    assert [r.end_s for r in records] == [1.0, 2.0, 3.0]
    assert [r.seconds for r in records] == times
    assert all(t > 0 for t in times)


def test_no_hook_no_trace_and_idle_steps_are_not_recorded(tmp_path: Path) -> None:
    calls = []
    engine = make_engine(tiny_model())
    engine.on_step = lambda batch, seconds: calls.append(seconds)
    engine.step()  # nothing to run: no executed step, no call
    assert calls == []
    engine.add_request(EngineRequest("a", [1, 2, 3], greedy(1)))
    engine.step()
    assert calls == [engine.stats().last_step_time_s]


def test_appending_to_an_existing_trace_keeps_one_header(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "t.csv"  # the directory is created
    for clock in (iter([1.5]).__next__, iter([2.5]).__next__):
        engine = make_engine(tiny_model())
        trace = StepTrace(path, wall_clock=clock)
        engine.on_step = trace.record
        engine.add_request(EngineRequest("a", [1, 2, 3, 4], greedy(1)))
        engine.step()
        trace.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and lines[0] == HEADER and lines.count(HEADER) == 1
    records = read_trace(path)
    assert [r.end_s for r in records] == [1.5, 2.5]
    assert shapes(records) == [(4, 16, 1, 0, 0)] * 2


def test_an_empty_existing_file_gets_the_header(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("")
    StepTrace(path).close()
    assert path.read_text().splitlines() == [HEADER]
    assert read_trace(path) == []


def test_read_trace_parses_rows_and_skips_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(f"{HEADER}\n10.25,0.125,8,64,1,2,9\n\n11.0,0.5,0,0,0,3,30\n")
    assert read_trace(path) == [StepRecord(10.25, 0.125, 8, 64, 1, 2, 9), StepRecord(11.0, 0.5, 0, 0, 0, 3, 30)]


@pytest.mark.parametrize("text", ["", "end_s,seconds\n1.0,0.1\n", HEADER.replace("seconds", "secs") + "\n"])
def test_read_trace_rejects_a_wrong_header_naming_the_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"{path}: not a step trace"):
        read_trace(path)


@pytest.mark.parametrize("row", ["1.0,0.1,8,64,1,2", "1.0,0.1,8,64,1,2,9,9", "x,0.1,8,64,1,2,9",
                                 "1.0,0.1,8.5,64,1,2,9"])
def test_read_trace_rejects_a_malformed_row_naming_the_file_and_line(tmp_path: Path, row: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(f"{HEADER}\n1.0,0.1,8,64,1,2,9\n{row}\n")
    with pytest.raises(ValueError, match=rf"{path}:3: malformed step record"):
        read_trace(path)


def test_trace_path() -> None:
    assert trace_path(None, "x") is None
    assert trace_path("/d", "instance-0") == "/d/instance-0.csv"


ENGINE = EngineConfig(block_size=4, num_blocks=64, max_num_batched_tokens=64, max_num_seqs=8, max_model_len=128)


def test_a_replica_with_a_step_trace_writes_a_line_per_step(tmp_path: Path) -> None:
    path = tmp_path / "traces" / "i0.csv"
    replica = Replica.build(ReplicaSpec("i0", "tiny-llama", ENGINE, step_trace=str(path)))
    replica.add(EngineRequest("a", [10, 11, 12], SamplingParams(max_tokens=4, temperature=0, ignore_eos=True)))
    steps = 0
    while replica.has_work():
        replica.step()
        steps += 1
    assert steps == replica.stats().steps == 4
    records = read_trace(path)  # readable while the instance runs: the file is line-buffered
    replica.engine.on_step.__self__.close()  # the replica never closes its trace
    assert len(records) == 4
    assert shapes(records) == [(3, 9, 1, 0, 0), (0, 0, 0, 1, 4), (0, 0, 0, 1, 5), (0, 0, 0, 1, 6)]
    assert all(r.seconds > 0 for r in records)
    assert [b.end_s >= a.end_s for a, b in itertools.pairwise(records)] == [True] * 3


def test_a_replica_without_a_step_trace_has_no_hook() -> None:
    replica = Replica.build(ReplicaSpec("i0", "tiny-llama", ENGINE))
    assert replica.engine.on_step is None


def test_cluster_step_trace_dir_config_key() -> None:
    assert load_config().cluster.step_trace_dir is None
    assert load_config(overrides={"cluster.step_trace_dir": "/tmp/x"}).cluster.step_trace_dir == "/tmp/x"
