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

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class AttentionMetadata:
    """Where the tokens of a flat batch live in the paged KV cache.

    query_lens[i]: new tokens of sequence i in this step (1 for a decode, a chunk for a prefill).
    context_lens[i]: tokens of sequence i in the cache once this step's tokens are written
        (so the new tokens sit at positions context_lens[i] - query_lens[i] ... context_lens[i] - 1).
    block_tables: int32 [num_seqs, max_blocks], padded with 0 past each sequence's blocks.
    slot_mapping: int64 [num_tokens], block_id * block_size + offset for every new token.
    """

    query_lens: list[int]
    context_lens: list[int]
    block_tables: torch.Tensor
    slot_mapping: torch.Tensor
    block_size: int

    @property
    def num_seqs(self) -> int:
        return len(self.query_lens)


def write_kv(kv_cache: torch.Tensor, k: torch.Tensor, v: torch.Tensor, slot_mapping: torch.Tensor) -> None:
    """Store keys and values [num_tokens, num_kv_heads, head_dim] at `slot_mapping` (int64 [num_tokens]).

    Mutates `kv_cache` in place; other slots are untouched.
    """
    _, num_blocks, block_size, num_kv_heads, head_dim = kv_cache.shape
    flat = kv_cache.view(2, num_blocks * block_size, num_kv_heads, head_dim)
    flat[0].index_copy_(0, slot_mapping, k.to(kv_cache.dtype))
    flat[1].index_copy_(0, slot_mapping, v.to(kv_cache.dtype))


@dataclass(frozen=True)
class _DecodePlan:
    """Index tensors of the decodes of a step (see `_decode_attention`)."""

    rows: torch.Tensor  # [n] rows of q holding decode queries
    ids: torch.Tensor  # [NB] the blocks of every decode, by sequence
    seg: torch.Tensor  # [NB] the decode (0..n-1) each block belongs to
    valid: torch.Tensor  # [NB, block_size] slots inside the sequence's context
    n: int


@dataclass(frozen=True)
class _ChunkPlan:
    """One prefill chunk: its rows of q, its context's blocks and its causal mask (None: plain causal)."""

    start: int
    end: int
    ids: torch.Tensor
    ctx: int
    mask: torch.Tensor | None


@dataclass(frozen=True)
class AttentionPlan:
    """Everything about a step's batch layout that every layer's attention needs, computed once per
    step by `plan_attention` (the layers only differ in their K/V cache and queries)."""

    decode: _DecodePlan | None
    chunks: tuple[_ChunkPlan, ...]
    pure_decode: bool  # every sequence is a decode, in order: q's rows are the decode rows


def plan_attention(meta: AttentionMetadata) -> AttentionPlan:
    """The plan of `meta`'s batch."""
    bs = meta.block_size
    starts = [0]
    for n in meta.query_lens:
        starts.append(starts[-1] + n)
    decodes = [i for i, n in enumerate(meta.query_lens) if n == 1]
    decode = None
    if decodes:
        lens = torch.tensor([meta.context_lens[i] for i in decodes], dtype=torch.long)
        n_blocks = (lens + bs - 1) // bs
        tables = meta.block_tables[decodes]
        ids = tables[torch.arange(tables.shape[1])[None, :] < n_blocks[:, None]].long()
        seg = torch.repeat_interleave(torch.arange(len(decodes)), n_blocks)
        block_pos = torch.arange(ids.shape[0]) - (torch.cumsum(n_blocks, 0) - n_blocks)[seg]
        valid = block_pos[:, None] * bs + torch.arange(bs)[None, :] < lens[seg][:, None]
        rows = torch.tensor([starts[i] for i in decodes], dtype=torch.long)
        decode = _DecodePlan(rows, ids, seg, valid, len(decodes))
    chunks = []
    for i, n in enumerate(meta.query_lens):
        if n > 1:
            ctx = meta.context_lens[i]
            ids = meta.block_tables[i, : -(-ctx // bs)].long()
            mask = None if ctx == n else torch.arange(ctx)[None, :] <= torch.arange(ctx - n, ctx)[:, None]
            chunks.append(_ChunkPlan(starts[i], starts[i + 1], ids, ctx, mask))
    return AttentionPlan(decode, tuple(chunks), pure_decode=len(decodes) == meta.num_seqs)


def paged_attention(q: torch.Tensor, kv_cache: torch.Tensor, plan: AttentionPlan, scale: float) -> torch.Tensor:
    """Attention output [num_tokens, num_heads, head_dim] for queries q of the same shape.

    Every sequence's keys and values must already be in `kv_cache` (call `write_kv` first for this
    step's tokens). Token j of sequence i's chunk sits at position
    `context_lens[i] - query_lens[i] + j` and attends to cache positions 0 ... that position.
    Slots outside a sequence's context are read but masked, so they must hold finite values
    (a zero-initialised cache and stale K/V of freed blocks both do).
    """
    if plan.pure_decode:
        assert plan.decode is not None
        return _decode_attention(q, kv_cache, plan.decode, scale)
    out = torch.empty_like(q)
    if plan.decode is not None:
        d = plan.decode
        out.index_copy_(0, d.rows, _decode_attention(q[d.rows], kv_cache, d, scale))
    for c in plan.chunks:
        out[c.start : c.end] = _chunk_attention(q[c.start : c.end], kv_cache, c, scale)
    return out


def _decode_attention(q: torch.Tensor, kv_cache: torch.Tensor, d: _DecodePlan, scale: float) -> torch.Tensor:
    """Attention of the single-token queries q [n, heads, dim] of the plan's decodes, in one pass.

    Reads only the blocks covering each sequence's context (no padding to the longest one): block b
    of the flat list belongs to sequence seg[b]; scores, masked past each context, are normalised
    with that sequence's max and sum, accumulated over its blocks with `index_add_`.
    """
    n, num_heads, head_dim = q.shape
    num_kv_heads = kv_cache.shape[3]
    group = num_heads // num_kv_heads
    kv = kv_cache[:, d.ids]  # [2, NB, block_size, kv_heads, dim]
    qb = q.view(n, num_kv_heads, group, head_dim)[d.seg]  # [NB, kv_heads, group, dim]
    s = torch.matmul(qb, kv[0].permute(0, 2, 3, 1)).float() * scale  # [NB, kv_heads, group, block_size]
    s.masked_fill_(~d.valid[:, None, None, :], float("-inf"))
    block_max = s.amax(-1)  # [NB, kv_heads, group]; every block holds at least one valid slot
    seq_max = torch.full((n, num_kv_heads, group), float("-inf"), dtype=s.dtype).scatter_reduce_(
        0, d.seg[:, None, None].expand_as(block_max), block_max, "amax"
    )
    e = torch.exp(s - seq_max[d.seg][..., None])
    denom = torch.zeros(n, num_kv_heads, group, dtype=s.dtype).index_add_(0, d.seg, e.sum(-1))
    o = torch.zeros(n, num_kv_heads, group, head_dim, dtype=s.dtype).index_add_(
        0, d.seg, torch.matmul(e, kv[1].permute(0, 2, 1, 3).to(s.dtype))
    )
    return (o / denom[..., None]).to(q.dtype).view(n, num_heads, head_dim)


def _chunk_attention(q: torch.Tensor, kv_cache: torch.Tensor, c: _ChunkPlan, scale: float) -> torch.Tensor:
    """Causal attention for the chunk q [n, heads, dim], offset by its start in the sequence."""
    k = kv_cache[0][c.ids].flatten(0, 1)[: c.ctx].transpose(0, 1)  # [kv_heads, ctx, dim]
    v = kv_cache[1][c.ids].flatten(0, 1)[: c.ctx].transpose(0, 1)
    # with a batch dimension (4-d inputs) torch's CPU SDPA takes its flash kernel; 3-d inputs fall
    # back to the math path, about 8x slower for a 512-token prompt
    qh, k, v = q.transpose(0, 1)[None], k[None], v[None]  # [1, heads, n, dim], [1, kv_heads, ctx, dim]
    if c.mask is None:
        o = F.scaled_dot_product_attention(qh, k, v, is_causal=True, scale=scale, enable_gqa=True)
    else:
        o = F.scaled_dot_product_attention(qh, k, v, attn_mask=c.mask, scale=scale, enable_gqa=True)
    return o[0].transpose(0, 1)
