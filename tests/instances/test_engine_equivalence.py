"""Greedy outputs of the paged engine equal a no-cache reference, with batching, chunked prefill,
prefix reuse and preemption all active at once."""

import random

from instances.types import EngineRequest
from tests.instances.engine_fixtures import (
    greedy,
    make_engine,
    reference_greedy,
    run_to_completion,
    tiny_model,
)


def mixed_requests(n: int, seed: int) -> list[EngineRequest]:
    rng = random.Random(seed)
    shared = [rng.randrange(1, 128) for _ in range(40)]  # a common system-prompt-like prefix
    reqs = []
    for i in range(n):
        length = rng.choice([1, 3, 7, 16, 33, 70, 150])
        own = [rng.randrange(1, 128) for _ in range(length)]
        prompt = (shared[: rng.choice([8, 24, 40])] + own) if i % 3 == 0 else own
        reqs.append(EngineRequest(f"r{i}", prompt, greedy(rng.randrange(4, 24)), arrival_time=float(i)))
    return reqs


def test_paged_engine_matches_no_cache_reference():
    model = tiny_model()
    # 48 blocks of 4 tokens cannot hold every running sequence: preemption must happen.
    engine = make_engine(model, num_blocks=48, max_num_batched_tokens=32, max_num_seqs=12, max_model_len=192)
    reqs = mixed_requests(24, seed=1)
    cached: dict[str, int] = {}
    got = run_to_completion(engine, reqs, cached)
    for r in reqs:
        assert got[r.request_id] == reference_greedy(model, r.prompt_token_ids, r.sampling.max_tokens), r.request_id
    stats = engine.stats()
    # every feature was active in this one run:
    assert stats.preemptions > 0  # preemption by recompute
    assert sum(1 for n in cached.values() if n > 0) >= 3  # prefix reuse
    assert max(len(r.prompt_token_ids) for r in reqs) > 32  # prompts longer than the step budget: chunked
    assert stats.free_blocks == stats.total_blocks  # nothing leaked
    assert stats.running == stats.waiting == 0


def test_prefix_reuse_and_chunked_prefill_are_exercised():
    model = tiny_model()
    engine = make_engine(model, max_num_batched_tokens=16)
    prefix = list(range(1, 41))
    first = EngineRequest("a", prefix + [50, 51], greedy(5))
    run_to_completion(engine, [first])
    second = EngineRequest("b", prefix + [60, 61, 62], greedy(5))
    engine.add_request(second)
    steps, deltas = 0, []
    while engine.has_unfinished():
        out = engine.step()
        steps += 1
        assert out.num_scheduled_tokens <= 16
        deltas.extend(out.deltas)
    assert deltas[0].num_cached_tokens == 40  # ten full 4-token blocks of the shared prefix
    assert [t for d in deltas for t in d.token_ids] == reference_greedy(model, second.prompt_token_ids, 5)
    # a 45-token prompt without the cache would need 3 chunked steps before its first token
    assert steps == 5


def test_long_prompt_is_chunked_over_steps():
    model = tiny_model()
    engine = make_engine(model, max_num_batched_tokens=16)
    req = EngineRequest("long", list(range(1, 101)), greedy(3))
    engine.add_request(req)
    first_delta_step = None
    for step in range(1, 50):
        out = engine.step()
        assert out.num_scheduled_tokens <= 16
        if out.deltas and first_delta_step is None:
            first_delta_step = step
        if not engine.has_unfinished():
            break
    assert first_delta_step == 7  # ceil(100 / 16)
    assert run_to_completion(make_engine(model), [EngineRequest("x", list(range(1, 101)), greedy(3))])["x"] == \
        reference_greedy(model, list(range(1, 101)), 3)
