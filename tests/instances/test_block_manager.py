"""Block manager books: exact block ids, reference counts, prefix reuse and eviction order."""

import pytest

from instances.engine.block_manager import BlockManager
from instances.engine.sequence import Sequence
from instances.types import SamplingParams


def make_seq(tokens, rid="r"):
    return Sequence(request_id=rid, prompt_token_ids=list(tokens), sampling=SamplingParams(),
                    arrival_time=0.0, priority=0, eos_token_ids=(), order=0)


def compute_all(bm, seq):
    seq.num_computed_tokens = seq.num_tokens
    bm.cache_full_blocks(seq)


def test_allocation_takes_lowest_free_ids_in_order():
    bm = BlockManager(num_blocks=8, block_size=4)
    a = make_seq(range(10), "a")
    assert bm.allocate(a, 10)
    assert a.block_ids == [0, 1, 2]
    b = make_seq(range(100, 105), "b")
    assert bm.allocate(b, 5)
    assert b.block_ids == [3, 4]
    assert bm.num_free_blocks == 3
    assert bm.ref_counts[:6] == [1, 1, 1, 1, 1, 0]


def test_allocation_fails_without_side_effects():
    bm = BlockManager(num_blocks=3, block_size=4)
    a = make_seq(range(20), "a")
    assert not bm.allocate(a, 20)
    assert a.block_ids == [] and bm.num_free_blocks == 3 and bm.ref_counts == [0, 0, 0]


def test_growing_allocation_adds_only_missing_blocks():
    bm = BlockManager(num_blocks=8, block_size=4)
    a = make_seq(range(4), "a")
    assert bm.allocate(a, 4) and a.block_ids == [0]
    assert bm.allocate(a, 4) and a.block_ids == [0]
    assert bm.allocate(a, 5) and a.block_ids == [0, 1]


def test_prefix_reuse_shares_blocks_and_counts_references():
    bm = BlockManager(num_blocks=8, block_size=4)
    a = make_seq(range(10), "a")
    bm.allocate(a, 10)
    compute_all(bm, a)
    b = make_seq(list(range(8)) + [50, 51, 52], "b")
    hits = bm.find_cached_prefix(b)
    assert hits == [0, 1]  # the two full blocks of 0..7; block 2 is partial, never cached
    assert bm.allocate(b, 11, hits)
    assert b.block_ids == [0, 1, 3]
    assert bm.ref_counts[:4] == [2, 2, 1, 1]


def test_fully_cached_prompt_keeps_last_block_to_compute():
    bm = BlockManager(num_blocks=8, block_size=4)
    a = make_seq(range(8), "a")
    bm.allocate(a, 8)
    compute_all(bm, a)
    b = make_seq(range(8), "b")
    assert bm.find_cached_prefix(b) == [0]


def test_free_keeps_cache_and_evicts_lru_tail_first():
    bm = BlockManager(num_blocks=6, block_size=4)
    a = make_seq(range(12), "a")
    bm.allocate(a, 12)
    compute_all(bm, a)
    assert a.block_ids == [0, 1, 2]
    bm.free(a)
    assert bm.ref_counts == [0] * 6
    # free queue: never-used 3,4,5 first, then a's blocks last-first: 2,1,0
    assert list(bm.free_queue) == [3, 4, 5, 2, 1, 0]
    b = make_seq(range(12), "b")
    assert bm.find_cached_prefix(b) == [0, 1]  # still cached after free
    c = make_seq(range(200, 216), "c")
    assert bm.allocate(c, 16)
    assert c.block_ids == [3, 4, 5, 2]  # block 2 (a's tail) is evicted first
    assert bm.find_cached_prefix(b) == [0, 1]
    d = make_seq(range(300, 304), "d")
    assert bm.allocate(d, 4) and d.block_ids == [1]
    assert bm.find_cached_prefix(b) == [0]  # block 1 was evicted, the chain breaks after block 0


def test_cache_hit_on_free_block_takes_it_out_of_the_free_queue():
    bm = BlockManager(num_blocks=4, block_size=4)
    a = make_seq(range(9), "a")
    bm.allocate(a, 9)
    compute_all(bm, a)
    bm.free(a)
    b = make_seq(range(9), "b")
    hits = bm.find_cached_prefix(b)
    assert hits == [0, 1]
    assert bm.allocate(b, 9, hits)
    assert b.block_ids == [0, 1, 3]  # 3 is the head of the free queue [3, 2]
    assert list(bm.free_queue) == [2]
    assert bm.ref_counts == [1, 1, 0, 1]


def test_identical_block_computed_twice_stays_private():
    bm = BlockManager(num_blocks=4, block_size=4)
    a, b = make_seq(range(4), "a"), make_seq(range(4), "b")
    bm.allocate(a, 4)
    bm.allocate(b, 4)
    compute_all(bm, a)
    compute_all(bm, b)
    assert bm.cached == {a.block_hashes[0]: 0}
    assert bm.block_hash[1] is None


def test_prefix_caching_disabled():
    bm = BlockManager(num_blocks=4, block_size=4, enable_prefix_caching=False)
    a = make_seq(range(8), "a")
    bm.allocate(a, 8)
    compute_all(bm, a)
    assert bm.cached == {} and bm.find_cached_prefix(make_seq(range(8))) == []


def test_double_free_is_an_error():
    bm = BlockManager(num_blocks=2, block_size=4)
    a = make_seq(range(4), "a")
    bm.allocate(a, 4)
    ids = list(a.block_ids)
    bm.free(a)
    a.block_ids = ids
    with pytest.raises(AssertionError):
        bm.free(a)
