"""Prompt token ids: prefix sharing for hash ids, determinism, range."""

from __future__ import annotations

import pytest

from controlplane.workload import (
    TraceRequest,
    hash_block_token_ids,
    prefix_token_ids,
    prompt_token_ids,
    random_token_ids,
)


def test_shared_hash_ids_share_exactly_the_leading_tokens() -> None:
    a = TraceRequest(0.0, 1030, 1, (0, 1, 2), 512)
    b = TraceRequest(0.0, 1500, 1, (0, 1, 7), 512)
    ids_a, ids_b = prompt_token_ids(a, 0, seed=3), prompt_token_ids(b, 1, seed=3)
    assert (len(ids_a), len(ids_b)) == (1030, 1500)
    assert ids_a[:1024] == ids_b[:1024]
    assert ids_a[1024:] == hash_block_token_ids(2, 512, seed=3)[:6]
    assert ids_b[1024:] == hash_block_token_ids(7, 512, seed=3)[:476]
    # different third blocks: the sequences part at the block boundary
    assert ids_a[1024:1030] != ids_b[1024:1030]


def test_blocks_depend_on_seed_and_id_only() -> None:
    block = hash_block_token_ids(42, 16, seed=1, vocab=(10, 20))
    assert block == hash_block_token_ids(42, 16, seed=1, vocab=(10, 20))
    assert block != hash_block_token_ids(42, 16, seed=2, vocab=(10, 20))
    assert block != hash_block_token_ids(43, 16, seed=1, vocab=(10, 20))
    assert len(block) == 16 and all(10 <= t < 20 for t in block)
    assert hash_block_token_ids(42, 4, seed=1, vocab=(10, 20)) == block[:4]
    with pytest.raises(ValueError, match="seeds and hash ids must be non-negative"):
        hash_block_token_ids(-1, 4, seed=1)


def test_prefix_needs_exactly_the_covering_blocks() -> None:
    assert len(prefix_token_ids((1, 2), 9, 8, seed=0)) == 9
    with pytest.raises(ValueError, match="2 blocks of 8 tokens do not fit a 17-token prompt"):
        prefix_token_ids((1, 2), 17, 8, seed=0)
    with pytest.raises(ValueError, match="2 blocks of 8 tokens do not fit a 8-token prompt"):
        prefix_token_ids((1, 2), 8, 8, seed=0)


def test_random_prompts_are_seeded_per_index() -> None:
    r = TraceRequest(0.0, 50, 1)
    assert prompt_token_ids(r, 4, seed=9) == random_token_ids(50, 4, seed=9)
    assert prompt_token_ids(r, 4, seed=9) != prompt_token_ids(r, 5, seed=9)
    ids = random_token_ids(1000, 0, seed=0, vocab=(100, 103))
    assert set(ids) == {100, 101, 102}
    with pytest.raises(ValueError, match="0 <= lo < hi"):
        random_token_ids(3, 0, seed=0, vocab=(3, 1))
