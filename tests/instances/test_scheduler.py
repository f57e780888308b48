"""Local scheduler policy: admission order, token budget, running-set bound, preemption victims."""

from instances.engine.config import EngineConfig
from instances.engine.scheduler import LocalScheduler, SampledToken
from instances.engine.sequence import Sequence
from instances.types import EngineRequest, FinishReason, SamplingParams


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
