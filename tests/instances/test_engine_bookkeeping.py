"""The engine's incremental bookkeeping equals a recomputation from scratch.

The per-step code keeps derived values instead of recomputing them: `Sequence.num_tokens`, the
scheduler's token totals behind `Engine.stats()`, the block manager's per-sequence count of blocks
already offered to the prefix cache, and an `allocate` that returns at once when the sequence's
blocks have room. Each test here checks one of them against the plain computation, the randomized
ones against an engine whose block manager does the full bookkeeping of every call (the code as it
was before these shortcuts), step by step: same batches, same block ids, same cache, same stats.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence as Seq

import pytest

from instances.engine.block_manager import BlockManager
from instances.engine.config import EngineConfig
from instances.engine.engine import Engine
from instances.engine.scheduler import LocalScheduler, SampledToken, ScheduledBatch
from instances.engine.sequence import Sequence
from instances.types import EngineRequest, SamplingParams, TokenLogprob


def make_seq(tokens, rid="r") -> Sequence:
    return Sequence(
        request_id=rid,
        prompt_token_ids=list(tokens),
        sampling=SamplingParams(),
        arrival_time=0.0,
        priority=0,
        eos_token_ids=(),
        order=0,
    )


class FullScanBlockManager(BlockManager):
    """`allocate` and `cache_full_blocks` without shortcuts: full bookkeeping on every call, every
    full computed block looked at on every call (the reference the shortcuts must match)."""

    def allocate(self, seq: Sequence, num_tokens: int, cached_prefix: Seq[int] = ()) -> bool:
        if cached_prefix and seq.block_ids:
            raise ValueError("a cached prefix can only start an empty block table")
        reused_free = sum(1 for b in cached_prefix if self.ref_counts[b] == 0)
        new_blocks = max(0, -(-num_tokens // self.block_size) - len(seq.block_ids) - len(cached_prefix))
        if new_blocks + reused_free > self.num_free_blocks:
            return False
        for b in cached_prefix:
            if self.ref_counts[b] == 0:
                del self.free_queue[b]
            self.ref_counts[b] += 1
            seq.block_ids.append(b)
        for _ in range(new_blocks):
            b, _ = self.free_queue.popitem(last=False)
            self._evict(b)
            self.ref_counts[b] = 1
            seq.block_ids.append(b)
        return True

    def cache_full_blocks(self, seq: Sequence) -> None:
        if not self.enable_prefix_caching:
            return
        seq.update_block_hashes(self.block_size)
        n_full = min(seq.num_computed_tokens // self.block_size, len(seq.block_hashes))
        for i in range(n_full):
            b = seq.block_ids[i]
            if self.block_hash[b] is not None:
                continue
            h = seq.block_hashes[i]
            if h in self.cached:
                continue
            self.block_hash[b] = h
            self.cached[h] = b


# ---- Sequence ---------------------------------------------------------------------------------
def test_num_tokens_follows_appended_output_and_priority_key_is_fixed():
    seq = Sequence(
        request_id="r",
        prompt_token_ids=[1, 2, 3],
        sampling=SamplingParams(),
        arrival_time=2.5,
        priority=-1,
        eos_token_ids=(),
        order=7,
        output_token_ids=[9],
    )
    assert (seq.num_tokens, seq.num_prompt_tokens, seq.priority_key) == (4, 3, (-1, math.inf, 2.5, 7))
    seq.append_output(5)
    seq.append_output(6, TokenLogprob(6, -0.5))
    assert seq.num_tokens == len(seq.prompt_token_ids) + len(seq.output_token_ids) == 6
    assert seq.output_token_ids == [9, 5, 6] and [lp.token_id for lp in seq.output_logprobs] == [6]
    assert seq.token_slice(2, 6) == [3, 9, 5, 6]


# ---- BlockManager -----------------------------------------------------------------------------
def test_allocate_with_room_changes_nothing():
    bm = BlockManager(num_blocks=6, block_size=4)
    a, b = make_seq(range(6), "a"), make_seq(range(100, 104), "b")
    assert bm.allocate(a, 6) and bm.allocate(b, 4)
    bm.free(b)
    books = (list(a.block_ids), list(bm.ref_counts), list(bm.free_queue))
    for n in (0, 1, 6, 8):  # within a's two blocks: nothing to do
        assert bm.allocate(a, n)
        assert (a.block_ids, bm.ref_counts, list(bm.free_queue)) == books
    assert bm.allocate(a, 9) and a.block_ids == [0, 1, 3]  # a third block, from the head of [3, 4, 5, 2]


def test_each_full_block_is_offered_to_the_cache_once_and_free_resets_the_count():
    bm = BlockManager(num_blocks=8, block_size=4)
    a = make_seq(range(14), "a")
    bm.allocate(a, 14)
    a.num_computed_tokens = 9
    bm.cache_full_blocks(a)
    assert a.num_offered_blocks == 2 and bm.block_hash[:3] == [a.block_hashes[0], a.block_hashes[1], None]
    a.num_computed_tokens = 14
    bm.cache_full_blocks(a)
    assert a.num_offered_blocks == 3 and bm.cached == {h: i for i, h in enumerate(a.block_hashes)}
    bm.free(a)
    assert (a.num_offered_blocks, a.private_blocks, a.block_ids) == (0, [], [])


def test_a_private_block_is_registered_once_its_twin_is_evicted():
    bm = BlockManager(num_blocks=3, block_size=4)
    a, b = make_seq(range(4), "a"), make_seq(range(4), "b")
    bm.allocate(a, 4)
    bm.allocate(b, 4)
    for seq in (a, b):
        seq.num_computed_tokens = 4
        bm.cache_full_blocks(seq)
    h = a.block_hashes[0]
    assert bm.cached == {h: 0} and b.private_blocks == [0]  # b's block 1 holds the same tokens
    bm.free(a)  # free queue [2, 0]: block 0 stays cached until it is reused
    c = make_seq(range(50, 58), "c")
    assert bm.allocate(c, 8) and c.block_ids == [2, 0]  # block 0 is evicted
    assert bm.cached == {}
    bm.cache_full_blocks(b)  # nothing newly computed, but the private block is retried
    assert bm.cached == {h: 1} and bm.block_hash[1] == h and b.private_blocks == []


# ---- randomized: scheduler totals and the shortcuts against the full bookkeeping ----------------
def recomputed_totals(s: LocalScheduler) -> tuple[int, int]:
    """(tokens_in_flight, queued_prompt_tokens) summed over the queues, as `Engine.stats` once did."""
    waiting = [item[1] for item in s.waiting]
    uncomputed = [q.num_tokens - q.num_computed_tokens for q in s.running]
    in_flight = sum(q.num_tokens for q in s.running) + sum(q.num_tokens for q in waiting)
    queued = sum(n for n in uncomputed if n > 1) + sum(q.num_tokens for q in waiting)
    return in_flight, queued


def check_totals(s: LocalScheduler) -> None:
    for seq in s.requests.values():
        assert seq.num_tokens == len(seq.prompt_token_ids) + len(seq.output_token_ids)
    assert (s.tokens_in_flight, s.queued_prompt_tokens) == recomputed_totals(s)
    assert s.waiting_tokens == sum(item[1].num_tokens for item in s.waiting)
    assert s.running_tokens == sum(q.num_tokens for q in s.running)


class FixedExecutor:
    """Samples `token` for every sequence that needs one (shared outputs make identical blocks)."""

    def __init__(self, token: int) -> None:
        self.token = token

    def execute(self, batch: ScheduledBatch) -> dict[str, SampledToken]:
        return {item.seq.request_id: SampledToken(self.token) for item in batch.seqs if item.needs_sample}


def engine_pair(rng: random.Random, prefix_caching: bool) -> tuple[Engine, Engine]:
    cfg = EngineConfig(
        block_size=rng.choice([2, 4]),
        num_blocks=rng.choice([24, 40, 80]),
        max_num_batched_tokens=rng.choice([8, 16, 48]),
        max_num_seqs=rng.choice([3, 6, 12]),
        max_model_len=48,
        enable_prefix_caching=prefix_caching,
    )
    fast = Engine(cfg, FixedExecutor(7), clock=lambda: 0.0)
    full = Engine(cfg, FixedExecutor(7), clock=lambda: 0.0)
    full.scheduler.blocks = FullScanBlockManager(cfg.num_blocks, cfg.block_size, cfg.enable_prefix_caching)
    return fast, full


def random_request(rng: random.Random, k: int) -> EngineRequest:
    """Prompts built from a few shared blocks and a small alphabet, so many blocks are identical."""
    shared = [[1, 2, 3, 4, 5, 6, 7, 8], [9, 9, 9, 9], [7] * 12]
    prompt = list(rng.choice(shared))[: rng.randrange(0, 13)] + [
        rng.randrange(1, 4) for _ in range(rng.randrange(1, 9))
    ]
    return EngineRequest(
        f"r{k}",
        prompt,
        SamplingParams(max_tokens=rng.randrange(1, 20), temperature=0, ignore_eos=True),
        arrival_time=float(rng.randrange(0, 5)),
        priority=rng.choice([0, 0, 0, -1, 1]),
    )


def batch_view(batch: ScheduledBatch) -> tuple:
    return (
        [
            (i.seq.request_id, i.start, i.num_new_tokens, i.needs_sample, tuple(i.seq.block_ids))
            for i in batch.seqs
        ],
        [q.request_id for q in batch.preempted],
    )


def block_books(bm: BlockManager) -> tuple:
    return list(bm.ref_counts), list(bm.block_hash), dict(bm.cached), list(bm.free_queue)


@pytest.mark.parametrize("prefix_caching", [True, False])
@pytest.mark.parametrize("seed", range(12))
def test_random_runs_match_full_bookkeeping_and_recomputed_totals(seed: int, prefix_caching: bool):
    rng = random.Random(seed)
    fast, full = engine_pair(rng, prefix_caching)
    live: list[str] = []
    for k in range(400):
        op = rng.random()
        if op < 0.25 and len(live) < 30:
            req = random_request(rng, k)
            fast.add_request(req)
            full.add_request(req)
            live.append(req.request_id)
        elif op < 0.3 and live:
            rid = live.pop(rng.randrange(len(live)))
            assert fast.abort(rid) == full.abort(rid)
        else:
            batches = fast.begin_step(), full.begin_step()
            assert batch_view(batches[0]) == batch_view(batches[1])
            check_totals(fast.scheduler)  # mid-step: admitted and preempted, not yet computed
            assert fast.stats() == full.stats()
            outs = [e.finish_step(b, e.executor.execute(b)) for e, b in zip((fast, full), batches)]
            assert outs[0] == outs[1]
            live = [rid for rid in live if rid in fast.scheduler.requests]
        check_totals(fast.scheduler)
        assert fast.stats() == full.stats()
        assert block_books(fast.scheduler.blocks) == block_books(full.scheduler.blocks)
    assert fast.stats().steps > 100


class CountingBlockManager(BlockManager):
    """Counts the blocks left private by one `cache_full_blocks` call and registered by a later one."""

    late_registrations = 0

    def cache_full_blocks(self, seq: Sequence) -> None:
        private = [seq.block_ids[i] for i in seq.private_blocks]
        super().cache_full_blocks(seq)
        self.late_registrations += sum(1 for b in private if self.block_hash[b] is not None)


def test_random_runs_reach_preemption_and_late_registration_of_private_blocks():
    """The randomized runs above do exercise the rare paths (counted over their seeds)."""
    preempted = late_registered = 0
    for seed in range(12):
        rng = random.Random(seed)
        fast, _ = engine_pair(rng, prefix_caching=True)
        cfg = fast.config
        bm = fast.scheduler.blocks = CountingBlockManager(cfg.num_blocks, cfg.block_size)
        for k in range(400):
            if rng.random() < 0.25 and len(fast.scheduler.requests) < 30:
                fast.add_request(random_request(rng, k))
            else:
                batch = fast.begin_step()
                preempted += len(batch.preempted)
                fast.finish_step(batch, fast.executor.execute(batch))
        late_registered += bm.late_registrations
    assert preempted > 0 and late_registered > 0
