"""Deterministic prompt token ids.

A request with `hash_ids` gets, for each id, a fixed block of `block_tokens` ids drawn from a
SplitMix64 generator seeded by `(seed, hash id)`, so equal hash ids give equal token blocks in
every request, process and run, and shared prefixes are really shared token sequences. Other
requests get ids from a generator seeded by `(seed, request index)`. Ids are uniform over
`vocab = (lo, hi)`, `lo` inclusive, `hi` exclusive; keep it inside the served model's vocabulary
and clear of special tokens. SplitMix64 is counter-based, so all blocks of a prompt are drawn in
one vectorised step (a 190k-token Mooncake prompt takes milliseconds).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from controlplane.workload.request import TraceRequest, blocks_for

DEFAULT_VOCAB: tuple[int, int] = (10, 200)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # SplitMix64's increment
_BLOCK_STREAM = 1  # separates the block generators' seeds from the random prompts' seeds
_PROMPT_STREAM = 2


def check_vocab(vocab: tuple[int, int]) -> None:
    """Raise ValueError unless `0 <= lo < hi`."""
    lo, hi = vocab
    if not 0 <= lo < hi:
        raise ValueError(f"vocab range must satisfy 0 <= lo < hi, got [{lo}, {hi})")


def hash_block_token_ids(
    hash_id: int, block_tokens: int, seed: int, vocab: tuple[int, int] = DEFAULT_VOCAB
) -> list[int]:
    """The `block_tokens` token ids of prefix block `hash_id` (a pure function of its arguments)."""
    return _as_list(_draw(seed, _BLOCK_STREAM, [hash_id], block_tokens, vocab)[0])


def prefix_token_ids(
    hash_ids: tuple[int, ...],
    num_tokens: int,
    block_tokens: int,
    seed: int,
    vocab: tuple[int, int] = DEFAULT_VOCAB,
) -> list[int]:
    """The blocks of `hash_ids` concatenated and truncated to `num_tokens`.

    Raises ValueError unless `len(hash_ids) == ceil(num_tokens / block_tokens)`.
    """
    if len(hash_ids) != blocks_for(num_tokens, block_tokens):
        raise ValueError(
            f"{len(hash_ids)} blocks of {block_tokens} tokens do not fit a {num_tokens}-token prompt"
        )
    return _as_list(_draw(seed, _BLOCK_STREAM, hash_ids, block_tokens, vocab).ravel()[:num_tokens])


def random_token_ids(
    num_tokens: int, index: int, seed: int, vocab: tuple[int, int] = DEFAULT_VOCAB
) -> list[int]:
    """`num_tokens` random ids for the request at position `index` of a workload."""
    return _as_list(_draw(seed, _PROMPT_STREAM, [index], num_tokens, vocab)[0])


def prompt_token_ids(
    request: TraceRequest, index: int, seed: int, vocab: tuple[int, int] = DEFAULT_VOCAB
) -> list[int]:
    """The prompt of `request` (at position `index`): prefix blocks if it has `hash_ids`, else random."""
    if request.hash_ids is not None:
        return prefix_token_ids(request.hash_ids, request.prompt_len, request.block_tokens, seed, vocab)
    return random_token_ids(request.prompt_len, index, seed, vocab)


def _draw(seed: int, stream: int, keys: Sequence[int], length: int, vocab: tuple[int, int]) -> np.ndarray:
    """Row `i`: the first `length` outputs of SplitMix64 seeded by `(seed, stream, keys[i])`,
    mapped to `vocab`. Raises ValueError for a negative seed or key, or a bad vocab."""
    check_vocab(vocab)
    key_array = np.asarray(keys, dtype=np.int64).reshape(-1)
    if seed < 0 or (key_array < 0).any():
        raise ValueError("seeds and hash ids must be non-negative")
    base = _mix64(np.array([seed], dtype=np.uint64) * _GOLDEN + np.uint64(stream))
    states = _mix64(base ^ (key_array.astype(np.uint64) * _GOLDEN))
    counters = np.arange(1, length + 1, dtype=np.uint64) * _GOLDEN
    outputs = _mix64(states[:, None] + counters[None, :])
    lo, hi = vocab
    ids: np.ndarray = (outputs % np.uint64(hi - lo)).astype(np.int64) + lo
    return ids


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's output function on uint64 arrays (wrapping arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    mixed: np.ndarray = x ^ (x >> np.uint64(31))
    return mixed


def _as_list(ids: np.ndarray) -> list[int]:
    out: list[int] = ids.tolist()
    return out
