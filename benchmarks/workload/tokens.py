"""Deterministic prompt token ids.

A request with `hash_ids` gets, for each id, a fixed block of `block_tokens` ids drawn from a
generator seeded by `(seed, hash id)`, so equal hash ids give equal token blocks in every request,
process and run, and shared prefixes are really shared token sequences. Other requests get random
ids seeded by `(seed, request index)`. Ids are drawn uniformly from `vocab = (lo, hi)`, `lo`
inclusive, `hi` exclusive; keep it inside the served model's vocabulary and clear of special tokens.
"""

from __future__ import annotations

import numpy as np

from benchmarks.workload.request import TraceRequest

DEFAULT_VOCAB: tuple[int, int] = (10, 200)

_BLOCK_STREAM = 0  # separates the block generators' seeds from the random prompts' seeds
_PROMPT_STREAM = 1


def check_vocab(vocab: tuple[int, int]) -> None:
    """Raise ValueError unless `0 <= lo < hi`."""
    lo, hi = vocab
    if not 0 <= lo < hi:
        raise ValueError(f"vocab range must satisfy 0 <= lo < hi, got [{lo}, {hi})")


def hash_block_token_ids(
    hash_id: int, block_tokens: int, seed: int, vocab: tuple[int, int] = DEFAULT_VOCAB
) -> list[int]:
    """The `block_tokens` token ids of prefix block `hash_id` (a pure function of its arguments)."""
    check_vocab(vocab)
    rng = np.random.default_rng([seed, _BLOCK_STREAM, hash_id])
    return rng.integers(vocab[0], vocab[1], size=block_tokens).tolist()


def prefix_token_ids(
    hash_ids: tuple[int, ...],
    num_tokens: int,
    block_tokens: int,
    seed: int,
    vocab: tuple[int, int] = DEFAULT_VOCAB,
) -> list[int]:
    """The blocks of `hash_ids` concatenated and truncated to `num_tokens`.

    Raises ValueError unless the blocks cover `num_tokens` and the last one is needed, i.e.
    `len(hash_ids) == ceil(num_tokens / block_tokens)`.
    """
    if len(hash_ids) * block_tokens < num_tokens or (len(hash_ids) - 1) * block_tokens >= num_tokens:
        raise ValueError(
            f"{len(hash_ids)} blocks of {block_tokens} tokens do not fit a {num_tokens}-token prompt"
        )
    ids: list[int] = []
    for hash_id in hash_ids:
        ids.extend(hash_block_token_ids(hash_id, block_tokens, seed, vocab))
    return ids[:num_tokens]


def random_token_ids(
    num_tokens: int, index: int, seed: int, vocab: tuple[int, int] = DEFAULT_VOCAB
) -> list[int]:
    """`num_tokens` random ids for the request at position `index` of a workload."""
    check_vocab(vocab)
    rng = np.random.default_rng([seed, _PROMPT_STREAM, index])
    return rng.integers(vocab[0], vocab[1], size=num_tokens).tolist()


def prompt_token_ids(
    request: TraceRequest, index: int, seed: int, vocab: tuple[int, int] = DEFAULT_VOCAB
) -> list[int]:
    """The prompt of `request` (at position `index`): prefix blocks if it has `hash_ids`, else random."""
    if request.hash_ids is not None:
        return prefix_token_ids(request.hash_ids, request.prompt_len, request.block_tokens, seed, vocab)
    return random_token_ids(request.prompt_len, index, seed, vocab)
