"""Local scheduler policy: admission order, token budget, running-set bound, preemption victims."""

import pytest

from instances.engine.config import EngineConfig
from instances.engine.scheduler import LocalScheduler, SampledToken
from instances.engine.sequence import Sequence
from instances.types import EngineRequest, FinishReason, Priority, SamplingParams


def sched(**kw) -> LocalScheduler:
    cfg = {"block_size": 4, "num_blocks": 64, "max_num_batched_tokens": 64, "max_num_seqs": 8, "max_model_len": 64}
    return LocalScheduler(EngineConfig(**{**cfg, **kw}))


def add(s: LocalScheduler, rid: str, n_prompt: int, *, priority=0, arrival=0.0, max_tokens=8, **sp) -> Sequence:
    req = EngineRequest(rid, list(range(1, n_prompt + 1)), SamplingParams(max_tokens=max_tokens, temperature=0, **sp),
                        arrival_time=arrival, priority=priority)
    seq = Sequence.from_request(req, order=len(s.requests) + 1, eos_token_ids=(2,))
    s.add(seq)
    return seq


def step(s: LocalScheduler, token: int = 7):
    batch = s.schedule()
    s.update(batch, {i.seq.request_id: SampledToken(token) for i in batch.seqs if i.needs_sample})
    return batch


def test_admission_follows_priority_then_arrival():
    s = sched(max_num_batched_tokens=8)
    add(s, "late-normal", 4, priority=0, arrival=2.0)
    add(s, "early-normal", 4, priority=0, arrival=1.0)
    add(s, "high", 4, priority=-1, arrival=3.0)
    batch = s.schedule()
    assert [i.seq.request_id for i in batch.seqs] == ["high", "early-normal"]


def test_token_budget_chunks_the_head_and_stops_admission():
    s = sched(max_num_batched_tokens=10)
    add(s, "a", 6, arrival=0)
    add(s, "b", 9, arrival=1)
    add(s, "c", 2, arrival=2)
    batch = s.schedule()
    assert [(i.seq.request_id, i.start, i.num_new_tokens, i.needs_sample) for i in batch.seqs] == [
        ("a", 0, 6, True), ("b", 0, 4, False)]


def test_running_set_is_bounded():
    s = sched(max_num_seqs=2)
    for k in range(4):
        add(s, f"r{k}", 3, arrival=k)
    assert len(s.schedule().seqs) == 2
    assert len(s.running) == 2 and len(s.waiting) == 2


def test_preemption_takes_lowest_priority_then_latest_arrival():
    # 6 blocks of 4 tokens; three sequences of 8 tokens hold 2 blocks each; the pool is then full.
    s = sched(num_blocks=6, max_model_len=24)
    hi = add(s, "hi", 8, priority=-1, arrival=5.0)
    old = add(s, "old", 8, priority=0, arrival=1.0)
    new = add(s, "new", 8, priority=0, arrival=2.0)
    step(s)
    assert s.blocks.num_free_blocks == 0
    batch = step(s)  # every sequence needs a third block for its 9th token: someone must go
    assert [q.request_id for q in batch.preempted] == ["new"]
    assert new.num_computed_tokens == 0 and new.block_ids == [] and new.num_preemptions == 1
    assert [i.seq.request_id for i in batch.seqs] == ["hi", "old"]
    assert hi.num_tokens == 10 and old.num_tokens == 10


def test_no_admission_in_a_step_that_preempted():
    s = sched(num_blocks=4, max_model_len=16)
    add(s, "a", 8, arrival=0)
    add(s, "b", 8, arrival=1)
    step(s)
    add(s, "c", 1, arrival=2)
    batch = step(s)
    assert [q.request_id for q in batch.preempted] == ["b"]
    assert "c" not in [i.seq.request_id for i in batch.seqs]


def test_finish_on_eos_stop_token_and_length():
    s = sched()
    eos = add(s, "eos", 3)
    stop = add(s, "stop", 3, stop_token_ids=(9,))
    ignore = add(s, "ignore", 3, ignore_eos=True, max_tokens=2)
    batch = s.schedule()
    finished = s.update(batch, {"eos": SampledToken(2), "stop": SampledToken(9), "ignore": SampledToken(2)})
    assert [q.request_id for q in finished] == ["eos", "stop"]
    assert eos.finish_reason is stop.finish_reason is FinishReason.STOP
    finished = step(s, token=2)
    assert finished.seqs[0].seq is ignore and ignore.finish_reason is FinishReason.LENGTH
    assert s.blocks.num_free_blocks == 64


def test_max_model_len_ends_a_sequence():
    s = sched(max_model_len=6)
    seq = add(s, "a", 4, max_tokens=100)
    step(s)
    step(s)
    assert seq.num_tokens == 6 and seq.finish_reason is FinishReason.LENGTH


def test_abort_frees_running_and_waiting():
    s = sched(max_num_seqs=1)
    add(s, "run", 5)
    add(s, "wait", 5)
    step(s)
    assert s.abort("run").finish_reason is FinishReason.ABORT
    assert s.abort("wait") is not None
    assert s.abort("unknown") is None
    assert not s.has_work() and s.blocks.num_free_blocks == 64



HIGH, NORMAL = Priority.HIGH, Priority.NORMAL


def test_high_priority_running_caps_the_prefill_tokens_of_a_step():
    s = sched(max_num_batched_tokens=32, high_priority_prefill_tokens=5, enable_prefix_caching=False)
    add(s, "hi", 4, priority=HIGH, arrival=0)
    step(s)  # nobody HIGH runs yet: the whole budget; "hi" decodes from now on
    add(s, "a", 9, priority=NORMAL, arrival=1)
    add(s, "b", 3, priority=NORMAL, arrival=2)
    batch = step(s)
    # hi's decode is free; a's prompt gets the 5 prefill tokens; b would need more and waits
    assert [(i.seq.request_id, i.start, i.num_new_tokens) for i in batch.seqs] == [("hi", 4, 1), ("a", 0, 5)]
    batch = step(s)
    assert [(i.seq.request_id, i.start, i.num_new_tokens) for i in batch.seqs] == [
        ("hi", 5, 1), ("a", 5, 4), ("b", 0, 1)]


def test_a_capped_prefill_is_skipped_but_later_decodes_run():
    s = sched(max_num_batched_tokens=32, high_priority_prefill_tokens=4, enable_prefix_caching=False)
    add(s, "hi", 12, priority=HIGH, arrival=0)
    add(s, "n", 2, priority=NORMAL, arrival=1)
    step(s)  # no HIGH running yet: hi's whole prompt and n's
    add(s, "hi2", 9, priority=HIGH, arrival=2)
    step(s)  # hi2 is admitted with the 4 prompt tokens of the cap
    add(s, "n2", 6, priority=NORMAL, arrival=3)
    batch = step(s)
    # batch order hi, hi2, n: hi2's next chunk takes the cap, n decodes, n2 is not admitted
    assert [(i.seq.request_id, i.start, i.num_new_tokens) for i in batch.seqs] == [
        ("hi", 13, 1), ("hi2", 4, 4), ("n", 3, 1)]
    assert [seq.request_id for _, seq in s.waiting] == ["n2"]


def test_without_a_high_priority_request_the_step_budget_holds():
    s = sched(max_num_batched_tokens=32, high_priority_prefill_tokens=4, enable_prefix_caching=False)
    add(s, "n", 4, priority=NORMAL, arrival=0)
    step(s)
    add(s, "m", 20, priority=NORMAL, arrival=1)
    add(s, "hi", 6, priority=HIGH, arrival=2)  # waiting, not running: no cap yet
    batch = step(s)
    assert [(i.seq.request_id, i.num_new_tokens) for i in batch.seqs] == [("n", 1), ("hi", 6), ("m", 20)]


def test_high_priority_prefill_tokens_must_be_positive():
    with pytest.raises(ValueError, match="high_priority_prefill_tokens"):
        sched(high_priority_prefill_tokens=0)
