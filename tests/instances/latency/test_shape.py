"""StepShape: sums of a scheduled batch, from the real local scheduler."""

import dataclasses

import pytest

from instances.engine.config import EngineConfig
from instances.engine.scheduler import LocalScheduler, SampledToken, ScheduledBatch
from instances.engine.sequence import Sequence
from instances.latency import StepShape
from instances.types import EngineRequest, SamplingParams


def sched(**kw) -> LocalScheduler:
    cfg = {"block_size": 4, "num_blocks": 64, "max_num_batched_tokens": 10, "max_num_seqs": 8, "max_model_len": 64}
    return LocalScheduler(EngineConfig(**{**cfg, **kw}))


def add(s: LocalScheduler, rid: str, prompt: list[int], arrival: float, max_tokens: int = 8) -> Sequence:
    req = EngineRequest(rid, prompt, SamplingParams(max_tokens=max_tokens, temperature=0), arrival_time=arrival)
    seq = Sequence.from_request(req, order=len(s.requests) + 1, eos_token_ids=(2,))
    s.add(seq)
    return seq


def step(s: LocalScheduler) -> ScheduledBatch:
    batch = s.schedule()
    s.update(batch, {i.seq.request_id: SampledToken(7) for i in batch.seqs if i.needs_sample})
    return batch


def test_of_sums_prefill_chunks_and_decodes_of_a_real_batch():
    s = sched()
    add(s, "a", list(range(10, 16)), arrival=0)  # 6 tokens
    add(s, "b", list(range(20, 29)), arrival=1)  # 9 tokens
    add(s, "c", list(range(30, 33)), arrival=2)  # 3 tokens
    first = step(s)
    # a: whole prompt (0, 6); b: first chunk (0, 4) within the 10-token budget; c does not fit
    assert [(i.start, i.num_new_tokens) for i in first.seqs] == [(0, 6), (0, 4)]
    assert StepShape.of(first) == StepShape(prefill_tokens=6 + 4, prefill_attn=6 * 6 + 4 * 4, num_prefills=2)
    second = s.schedule()
    # a decodes its sample (start 6, context 7); b's rest (4, 5), context 9; c admitted (0, 3)
    assert [(i.start, i.num_new_tokens) for i in second.seqs] == [(6, 1), (4, 5), (0, 3)]
    assert StepShape.of(second) == StepShape(
        prefill_tokens=5 + 3, prefill_attn=5 * 9 + 3 * 3, num_prefills=2, decode_batch=1, decode_context=7)


def test_a_one_token_rest_after_a_cached_prefix_counts_as_a_decode():
    s = sched(max_num_batched_tokens=16)
    prompt = list(range(40, 49))  # 9 tokens: 2 full blocks of 4 get cached
    add(s, "first", prompt, arrival=0, max_tokens=1)
    step(s)
    add(s, "again", prompt, arrival=1, max_tokens=1)
    batch = s.schedule()
    assert [(i.start, i.num_new_tokens) for i in batch.seqs] == [(8, 1)]
    assert StepShape.of(batch) == StepShape(decode_batch=1, decode_context=9)


def test_empty_batch_and_helpers():
    assert StepShape.of(ScheduledBatch()) == StepShape()
    assert StepShape().empty and not StepShape.decode(1, 5).empty
    assert StepShape.prefill(3, 5) == StepShape(8, 9 + 25, 2, 0, 0)
    assert StepShape.decode(4, 100) == StepShape(0, 0, 0, 4, 400)
    assert StepShape.prefill(3, 5).num_tokens == 8
    with pytest.raises(ValueError):
        StepShape.prefill(1)
    with pytest.raises(ValueError):
        StepShape.decode(0, 10)


def test_frozen_with_slots():
    shape = StepShape(1, 2, 3, 4, 5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        shape.decode_batch = 9  # type: ignore[misc]
    assert not hasattr(shape, "__dict__")
