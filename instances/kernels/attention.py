"""Torch reference paged attention (runs anywhere; the CPU engine's kernel).

KV cache layout, per layer: [2, num_blocks, block_size, num_kv_heads, head_dim], index 0 keys and
1 values. A token's slot is `block_id * block_size + offset`.

Batches follow `AttentionMetadata`: the new tokens of every sequence concatenated in batch order.
Sequences with one new token (decodes) are attended together in a single SDPA call over their
gathered, padded, length-masked context; each sequence with more (a prefill chunk, possibly after
a cached prefix or earlier chunks) gets its own call with a causal mask offset by its start.
Grouped-query attention uses SDPA's `enable_gqa`.
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
    """One SDPA call for all single-token queries q [n, heads, dim] of sequences `seqs`."""
    lens = torch.tensor([meta.context_lens[i] for i in seqs], dtype=torch.long)
    k, v = _gather(kv_cache, meta.block_tables[seqs], int(lens.max()))
    mask = torch.arange(k.shape[-2])[None, :] < lens[:, None]  # [n, padded_len]
    o = F.scaled_dot_product_attention(
        q.unsqueeze(2), k, v, attn_mask=mask[:, None, None, :], scale=scale, enable_gqa=True
    )
    return o.squeeze(2)


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
