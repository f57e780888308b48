"""Multi-step decode runs (`instances.engine.decode_run`): planning `k` steps and applying `j` of
them in one call leaves the engine exactly as `j` ordinary steps do (blocks, cache, counters)."""

from __future__ import annotations

import copy
import random

import pytest

from instances.engine.config import EngineConfig
from instances.engine.engine import Engine
from instances.engine.scheduler import SampledToken, ScheduledBatch
from instances.types import EngineRequest, SamplingParams

TOKEN = 0


class ZeroExecutor:
    def execute(self, batch: ScheduledBatch) -> dict[str, SampledToken]:
        return {i.seq.request_id: SampledToken(TOKEN) for i in batch.seqs if i.needs_sample}


def engine(num_blocks: int = 64, caching: bool = True, **kw: int) -> Engine:
    config = EngineConfig(block_size=4, num_blocks=num_blocks, max_num_batched_tokens=64, max_num_seqs=16,
                          max_model_len=min(256, num_blocks * 4), enable_prefix_caching=caching, **kw)
    return Engine(config, ZeroExecutor(), clock=lambda: 0.0)


def request(rid: str, prompt: list[int], max_tokens: int, **kw: object) -> EngineRequest:
    return EngineRequest(request_id=rid, prompt_token_ids=prompt,
                         sampling=SamplingParams(max_tokens=max_tokens, ignore_eos=True, **kw))


def state(e: Engine) -> dict[str, object]:
    """Everything a step changes, in comparable form. `block_hashes` is a memo extended on demand,
    so only the hashes of computed full blocks (the ones the cache can hold) are compared."""
    s, b = e.scheduler, e.scheduler.blocks
    bs = b.block_size
    seqs = {rid: (seq.output_token_ids, seq.num_tokens, seq.num_computed_tokens, seq.block_ids,
                  seq.block_hashes[: seq.num_computed_tokens // bs], seq.num_offered_blocks, seq.private_blocks, seq.num_emitted, seq.status)
            for rid, seq in sorted(s.requests.items())}
    return {"seqs": seqs, "running": [q.request_id for q in s.running], "free": list(b.free_queue),
            "refs": b.ref_counts, "hash": b.block_hash, "cached": b.cached, "steps": e._steps,
            "totals": (s.running_tokens, s.waiting_tokens, s.running_backlog, s.num_preemptions)}


def test_plan_counts_steps_to_the_first_finish_and_the_blocks_each_step_takes() -> None:
    e = engine(caching=False)
    e.add_request(request("a", [1, 2, 3], max_tokens=9))  # 3 prompt tokens, block size 4
    e.add_request(request("b", [1] * 6, max_tokens=5))
    e.step()  # prefill both: a has 4 tokens (1 block), b has 7 (2 blocks); 61 blocks left
    run = e.plan_decode_run(100, TOKEN)
    assert run is not None
    assert [s.request_id for s in run.seqs] == ["a", "b"]
    assert run.steps == 4  # b has 1 of 5 tokens: its 4th decode step finishes it
    assert run.context == 4 + 7
    assert run.base_tokens == (4, 7)
    # step s allocates for a when 4 + s - 1 > 4 (s = 2), for b when 7 + s - 1 > 8 (s = 3)
    assert run.free_blocks == (61, 61, 60, 59, 59)
    assert e.plan_decode_run(3, TOKEN).steps == 3  # the cap


def test_no_plan_when_the_next_step_is_not_a_pure_decode() -> None:
    e = engine(caching=False)
    e.add_request(request("a", [1, 2, 3], max_tokens=9))
    assert e.plan_decode_run(100, TOKEN) is None  # waiting
    e.step()
    assert e.plan_decode_run(100, TOKEN) is not None
    assert e.plan_decode_run(1, TOKEN) is None  # a run needs two steps
    e.add_request(request("b", [1, 2], max_tokens=9))
    assert e.plan_decode_run(100, TOKEN) is None  # b waits
    e.step()
    assert e.plan_decode_run(100, 7) is not None
    e.add_request(request("c", [5, 5], max_tokens=9, stop_token_ids=(7,)))
    e.step()
    assert e.plan_decode_run(100, 7) is None  # 7 would stop c
    assert e.plan_decode_run(100, TOKEN) is not None
    e.abort("c")
    assert e.plan_decode_run(100, TOKEN) is None  # the abort is reported by the next step


def test_plan_stops_before_a_step_whose_allocations_do_not_fit() -> None:
    e = engine(num_blocks=5, caching=False)
    e.add_request(request("a", [1, 2, 3, 4], max_tokens=40))
    e.add_request(request("b", [1, 2, 3, 4], max_tokens=40))
    e.step()  # each holds 1 full block plus its first sample: 3 free blocks
    run = e.plan_decode_run(100, TOKEN)
    # step 1 allocates 2 (a and b cross into block 2), step 5 two more: only 1 is left
    assert run.free_blocks == (3, 1, 1, 1, 1)
    assert run.steps == 4


@pytest.mark.parametrize("caching", [False, True])
@pytest.mark.parametrize("seed", range(12))
def test_advancing_a_run_equals_stepping(seed: int, caching: bool) -> None:
    """Random waves of requests (identical prompts, so decode blocks collide in the prefix cache and
    go private; few blocks, so cached blocks are evicted). At every step boundary with a plan,
    advance a copy by a random j < steps and step the original j times: identical state. Then the
    copy's next ordinary step equals the original's."""
    rng = random.Random(seed)
    e = engine(num_blocks=rng.choice([24, 40, 64]), caching=caching)
    prompts = [[rng.randrange(50) for _ in range(rng.randrange(1, 12))] for _ in range(4)]
    checked = 0
    n = 0
    for _wave in range(5):
        for _ in range(rng.randrange(1, 6)):
            e.add_request(request(f"r{n}", list(rng.choice(prompts)), max_tokens=rng.randrange(1, 30)))
            n += 1
        while e.has_unfinished():
            cap = rng.choice([2, 7, 64])
            run = e.plan_decode_run(cap, TOKEN)
            if run is not None:
                _check_run_ends_where_it_must(copy.deepcopy(e), run.steps, cap)
                j = rng.randrange(run.steps)
                fast = copy.deepcopy(e)
                fast.advance_decode_run(_same_run(fast, run), j, 0.0)
                for _ in range(j):
                    out = e.step()
                    assert all(d.finish_reason is None for d in out.deltas) and not out.num_preempted
                assert state(fast) == state(e)
                assert fast.step() == e.step()
                assert state(fast) == state(e)
                checked += 1
            else:
                e.step()
            if rng.random() < 0.1:
                break  # the next wave arrives while these still run
    assert checked > 0


def _check_run_ends_where_it_must(e: Engine, steps: int, cap: int) -> None:
    """Stepping `steps` times finishes or preempts nobody before the last step; at the last step
    someone finishes, or the next step preempts, or the cap was reached."""
    for s in range(1, steps + 1):
        out = e.step()
        assert not out.num_preempted
        finished = any(d.finish_reason is not None for d in out.deltas)
        assert finished == (s == steps) or (s == steps and not finished)
    if not finished and steps < cap:
        assert e.step().num_preempted > 0


def _same_run(copied: Engine, run: object) -> object:
    """The plan re-made on a deep copy (it holds the copy's sequences); identical to the original."""
    again = copied.plan_decode_run(len(run.free_blocks) - 1, run.token_id)
    assert again is not None
    assert (again.steps, again.context, again.free_blocks, again.base_tokens) == (
        run.steps, run.context, run.free_blocks, run.base_tokens)
    return again
