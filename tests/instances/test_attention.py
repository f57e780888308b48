"""Reference paged attention: slot writes and attention against an explicit per-sequence softmax."""

from __future__ import annotations

import math

import pytest
import torch

from instances.kernels.attention import AttentionMetadata, paged_attention, plan_attention, write_kv

BLOCK, NUM_BLOCKS, HEADS, KV_HEADS, DIM = 4, 24, 6, 2, 8


def _reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, start: int) -> torch.Tensor:
    """Softmax attention of q [n, HEADS, DIM] at positions start.. over k/v [ctx, KV_HEADS, DIM]."""
    group = HEADS // KV_HEADS
    out = torch.empty_like(q)
    for j in range(q.shape[0]):
        for h in range(HEADS):
            keys, vals = k[: start + j + 1, h // group], v[: start + j + 1, h // group]
            w = torch.softmax(keys @ q[j, h] / math.sqrt(DIM), dim=0)
            out[j, h] = w @ vals
    return out


def _slots(blocks: list[int], start: int, end: int) -> list[int]:
    return [blocks[p // BLOCK] * BLOCK + p % BLOCK for p in range(start, end)]


def test_write_kv_places_tokens_at_slots_only() -> None:
    cache = torch.zeros(2, NUM_BLOCKS, BLOCK, KV_HEADS, DIM)
    k, v = torch.randn(3, KV_HEADS, DIM), torch.randn(3, KV_HEADS, DIM)
    write_kv(cache, k, v, torch.tensor([5 * BLOCK + 3, 2 * BLOCK + 0, 17 * BLOCK + 1]))
    assert torch.equal(cache[0, 5, 3], k[0]) and torch.equal(cache[1, 5, 3], v[0])
    assert torch.equal(cache[0, 2, 0], k[1]) and torch.equal(cache[1, 17, 1], v[2])
    assert int((cache != 0).any(dim=(-1, -2)).sum()) == 6  # 3 slots x (K, V), nothing else


# Sequences as (block ids, context length after this step, new tokens this step).
MIXED = [([9, 3, 20], 11, 1), ([4], 2, 1), ([0, 14, 7, 1], 13, 6), ([18, 2], 5, 5), ([11, 6], 8, 1)]
DECODES = [([9, 3, 20], 11, 1), ([4], 1, 1), ([0, 14, 7, 1], 16, 1)]


@pytest.mark.parametrize("seqs", [MIXED, DECODES], ids=["mixed", "decodes"])
def test_batch_matches_reference(seqs: list[tuple[list[int], int, int]]) -> None:
    """Decodes with different lengths, a first chunk and a mid-sequence chunk, in one batch;
    and a batch of decodes only (its own fast path).

    The cache starts as random garbage, so reading anything past a context or outside a
    sequence's blocks (including the 0-padding of the block table) would change the output.
    """
    g = torch.Generator().manual_seed(0)
    cache = torch.randn(2, NUM_BLOCKS, BLOCK, KV_HEADS, DIM, generator=g)
    kv = [(torch.randn(ctx, KV_HEADS, DIM, generator=g), torch.randn(ctx, KV_HEADS, DIM, generator=g))
          for _, ctx, _ in seqs]
    # Earlier steps' tokens are already cached; this step's are written by write_kv below.
    for (blocks, ctx, n), (k, v) in zip(seqs, kv, strict=True):
        old = torch.tensor(_slots(blocks, 0, ctx - n), dtype=torch.long)
        write_kv(cache, k[: ctx - n], v[: ctx - n], old)
    new_slots = torch.tensor([s for b, ctx, n in seqs for s in _slots(b, ctx - n, ctx)], dtype=torch.long)
    write_kv(cache, torch.cat([k[ctx - n :] for (k, _), (_, ctx, n) in zip(kv, seqs, strict=True)]),
             torch.cat([v[ctx - n :] for (_, v), (_, ctx, n) in zip(kv, seqs, strict=True)]), new_slots)
    tables = torch.zeros(len(seqs), 4, dtype=torch.int32)
    for i, (blocks, _, _) in enumerate(seqs):
        tables[i, : len(blocks)] = torch.tensor(blocks)
    meta = AttentionMetadata(
        query_lens=[n for _, _, n in seqs], context_lens=[c for _, c, _ in seqs],
        block_tables=tables, slot_mapping=new_slots, block_size=BLOCK,
    )
    q = torch.randn(sum(meta.query_lens), HEADS, DIM, generator=g)
    out = paged_attention(q, cache, plan_attention(meta), 1 / math.sqrt(DIM))
    row = 0
    for (_, ctx, n), (k, v) in zip(seqs, kv, strict=True):
        ref = _reference(q[row : row + n], k, v, ctx - n)
        assert (out[row : row + n] - ref).abs().max().item() < 1e-5
        row += n
