"""Torch reference paged attention (runs anywhere; the CPU engine's kernel).

KV cache layout, per layer: [2, num_blocks, block_size, num_kv_heads, head_dim], index 0 keys and
1 values. A token's slot is `block_id * block_size + offset`.

Batches follow `AttentionMetadata`: the new tokens of every sequence concatenated in batch order.
Sequences with one new token (decodes) are attended together without padding: the blocks of all
of them are gathered into one flat list and a per-sequence softmax is taken over each one's own
blocks (padding every context to the longest one cost 4x the keys on mixed ShareGPT lengths). Each
sequence with more (a prefill chunk, possibly after a cached prefix or earlier chunks) gets its own
SDPA call with a causal mask offset by its start, using SDPA's `enable_gqa` for grouped-query attention.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from instances.models.base import AttentionMetadata


def write_kv(kv_cache: torch.Tensor, k: torch.Tensor, v: torch.Tensor, slot_mapping: torch.Tensor) -> None:
    """Store keys and values [num_tokens, num_kv_heads, head_dim] at `slot_mapping` (int64 [num_tokens]).

    Mutates `kv_cache` in place; other slots are untouched.
    """
    _, num_blocks, block_size, num_kv_heads, head_dim = kv_cache.shape
    flat = kv_cache.view(2, num_blocks * block_size, num_kv_heads, head_dim)
    flat[0].index_copy_(0, slot_mapping, k.to(kv_cache.dtype))
    flat[1].index_copy_(0, slot_mapping, v.to(kv_cache.dtype))


def paged_attention(
    q: torch.Tensor, kv_cache: torch.Tensor, meta: AttentionMetadata, scale: float
) -> torch.Tensor:
    """Attention output [num_tokens, num_heads, head_dim] for queries q of the same shape.

    Every sequence's keys and values must already be in `kv_cache` (call `write_kv` first for this
    step's tokens). Token j of sequence i's chunk sits at position
    `context_lens[i] - query_lens[i] + j` and attends to cache positions 0 ... that position.
    Slots outside a sequence's context are read but masked, so they must hold finite values
    (a zero-initialised cache and stale K/V of freed blocks both do).
    """
    decodes = [i for i, n in enumerate(meta.query_lens) if n == 1]
    if len(decodes) == meta.num_seqs:  # a pure decode batch: one row per sequence, in order
        return _decode_attention(q, kv_cache, meta, decodes, scale)
    out = torch.empty_like(q)
    starts = [0]
    for n in meta.query_lens:
        starts.append(starts[-1] + n)
    if decodes:
        rows = torch.tensor([starts[i] for i in decodes], dtype=torch.long)
        out.index_copy_(0, rows, _decode_attention(q[rows], kv_cache, meta, decodes, scale))
    for i, n in enumerate(meta.query_lens):
        if n > 1:
            out[starts[i] : starts[i + 1]] = _chunk_attention(
                q[starts[i] : starts[i + 1]], kv_cache, meta, i, scale
            )
    return out


def _gather(kv_cache: torch.Tensor, block_table: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys and values [..., num_kv_heads, padded_len, head_dim] of the blocks in `block_table`.

    `block_table` is [..., max_blocks]; only the blocks covering `length` tokens are read, and the
    result is padded to a whole number of blocks (callers mask the tail).
    """
    block_size = kv_cache.shape[2]
    n_blocks = -(-length // block_size)
    ids = block_table[..., :n_blocks].long()
    k = kv_cache[0][ids]  # [..., n_blocks, block_size, kv_heads, head_dim]
    v = kv_cache[1][ids]
    k = k.flatten(-4, -3).transpose(-3, -2)
    v = v.flatten(-4, -3).transpose(-3, -2)
    return k, v


def _decode_attention(
    q: torch.Tensor, kv_cache: torch.Tensor, meta: AttentionMetadata, seqs: list[int], scale: float
) -> torch.Tensor:
    """Attention of the single-token queries q [n, heads, dim] of sequences `seqs`, in one pass.

    Reads only the blocks covering each sequence's context (no padding to the longest one): block b
    of the flat list belongs to sequence seg[b]; scores, masked past each context, are normalised
    with that sequence's max and sum, accumulated over its blocks with `index_add_`.
    """
    n, num_heads, head_dim = q.shape
    block_size, num_kv_heads = kv_cache.shape[2], kv_cache.shape[3]
    group = num_heads // num_kv_heads
    lens = torch.tensor([meta.context_lens[i] for i in seqs], dtype=torch.long)
    n_blocks = (lens + block_size - 1) // block_size
    tables = meta.block_tables[seqs]
    ids = tables[torch.arange(tables.shape[1])[None, :] < n_blocks[:, None]].long()  # [NB], by sequence
    seg = torch.repeat_interleave(torch.arange(n), n_blocks)  # [NB]: the sequence of each block
    block_pos = torch.arange(ids.shape[0]) - (torch.cumsum(n_blocks, 0) - n_blocks)[seg]
    valid = block_pos[:, None] * block_size + torch.arange(block_size)[None, :] < lens[seg][:, None]
    kv = kv_cache[:, ids]  # [2, NB, block_size, kv_heads, dim]
    qb = q.view(n, num_kv_heads, group, head_dim)[seg]  # [NB, kv_heads, group, dim]
    s = torch.matmul(qb, kv[0].permute(0, 2, 3, 1)).float() * scale  # [NB, kv_heads, group, block_size]
    s.masked_fill_(~valid[:, None, None, :], float("-inf"))
    block_max = s.amax(-1)  # [NB, kv_heads, group]; every block holds at least one valid slot
    seq_max = torch.full((n, num_kv_heads, group), float("-inf"), dtype=s.dtype).scatter_reduce_(
        0, seg[:, None, None].expand_as(block_max), block_max, "amax"
    )
    e = torch.exp(s - seq_max[seg][..., None])
    denom = torch.zeros(n, num_kv_heads, group, dtype=s.dtype).index_add_(0, seg, e.sum(-1))
    o = torch.zeros(n, num_kv_heads, group, head_dim, dtype=s.dtype).index_add_(
        0, seg, torch.matmul(e, kv[1].permute(0, 2, 1, 3).to(s.dtype))
    )
    return (o / denom[..., None]).to(q.dtype).view(n, num_heads, head_dim)


def _chunk_attention(
    q: torch.Tensor, kv_cache: torch.Tensor, meta: AttentionMetadata, seq: int, scale: float
) -> torch.Tensor:
    """Causal attention for the chunk q [n, heads, dim] of sequence `seq`, offset by its start."""
    n, ctx = q.shape[0], meta.context_lens[seq]
    k, v = _gather(kv_cache, meta.block_tables[seq], ctx)
    k, v = k[:, :ctx], v[:, :ctx]
    qh = q.transpose(0, 1)  # [heads, n, dim]
    if ctx == n:
        o = F.scaled_dot_product_attention(qh, k, v, is_causal=True, scale=scale, enable_gqa=True)
    else:
        query_pos = torch.arange(ctx - n, ctx)
        mask = torch.arange(ctx)[None, :] <= query_pos[:, None]  # [n, ctx]
        o = F.scaled_dot_product_attention(qh, k, v, attn_mask=mask, scale=scale, enable_gqa=True)
    return o.transpose(0, 1)
