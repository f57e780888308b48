"""Explicit workload transforms: head, rate scaling and length scaling.

Each returns a new list and leaves its input alone. Reports must state the factors used: the
public traces come from much larger models and clusters than a CPU run can serve.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from controlplane.workload.request import TraceRequest, blocks_for


def head(requests: Sequence[TraceRequest], limit: int) -> list[TraceRequest]:
    """The first `limit` requests (all of them if there are fewer). Raises ValueError if `limit < 1`."""
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    return list(requests[:limit])


def cycle(requests: Sequence[TraceRequest], count: int) -> list[TraceRequest]:
    """Exactly `count` requests: `requests` repeated in order as often as needed (cut at `count`).

    Each repetition starts one mean inter-arrival gap after the previous one's last arrival, so a
    timed trace keeps its rate and burst pattern; untimed requests (all at 0) stay at 0. Repeated
    requests keep their `hash_ids`, so a repetition shares its prompts' prefixes with the first.
    Raises ValueError when `requests` is empty or `count < 1`.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if not requests:
        raise ValueError("cannot cycle an empty workload")
    n = len(requests)
    last = requests[-1].arrival_s
    period = last + (last / (n - 1) if n > 1 else 0.0)
    return [
        replace(requests[i % n], arrival_s=requests[i % n].arrival_s + (i // n) * period) if i >= n else requests[i]
        for i in range(count)
    ]


def check_factor(name: str, factor: float) -> None:
    """Raise ValueError unless `factor` is a positive finite number."""
    if not (factor > 0 and math.isfinite(factor)):
        raise ValueError(f"{name} must be a positive number, got {factor}")


def check_cap(name: str, cap: int | None) -> None:
    """Raise ValueError unless `cap` is None or >= 1."""
    if cap is not None and cap < 1:
        raise ValueError(f"{name} must be >= 1, got {cap}")


def scale_rate(requests: Sequence[TraceRequest], factor: float) -> list[TraceRequest]:
    """Arrival times divided by `factor` (> 0, finite): `factor = 2` replays twice as fast."""
    check_factor("rate scale", factor)
    return [replace(r, arrival_s=r.arrival_s / factor) for r in requests]


def scale_lengths(
    requests: Sequence[TraceRequest],
    factor: float,
    max_prompt_len: int | None = None,
    max_output_len: int | None = None,
) -> list[TraceRequest]:
    """Prompt and output lengths multiplied by `factor` and rounded, then clamped to [1, max].

    Requests with `hash_ids` keep their prefix structure: their block size is scaled too
    (`max(1, round(block_tokens * factor))`), the scaled prompt is capped at what their blocks
    cover, and a prompt cut by `max_prompt_len` keeps only the hash ids it still covers. So two
    requests that shared k blocks still share their first k (scaled) blocks.
    Raises ValueError when `factor` is not a positive number or a max is below 1.
    """
    check_factor("length scale", factor)
    check_cap("max_prompt_len", max_prompt_len)
    check_cap("max_output_len", max_output_len)
    return [_scale_one(r, factor, max_prompt_len, max_output_len) for r in requests]


def _scale_one(
    r: TraceRequest, factor: float, max_prompt_len: int | None, max_output_len: int | None
) -> TraceRequest:
    prompt_len = _clamp(round(r.prompt_len * factor), max_prompt_len)
    output_len = _clamp(round(r.output_len * factor), max_output_len)
    if r.hash_ids is None:
        return replace(r, prompt_len=prompt_len, output_len=output_len)
    block_tokens = max(1, round(r.block_tokens * factor))
    prompt_len = min(prompt_len, len(r.hash_ids) * block_tokens)
    hash_ids = r.hash_ids[: blocks_for(prompt_len, block_tokens)]
    return replace(
        r, prompt_len=prompt_len, output_len=output_len, hash_ids=hash_ids, block_tokens=block_tokens
    )


def _clamp(value: int, cap: int | None) -> int:
    return max(1, value if cap is None else min(value, cap))
