"""The benchmark's requests: ShareGPT length pairs, drawn with a seeded RNG, scaled down for a CPU.

Lengths come from the `sharegpt` trace (`controlplane.workload`), drawn in a seeded random order, so
the first n requests are the same for every n and every concurrency point sees a prefix of one
sequence. Both lengths are multiplied by `LengthScaling.factor`, rounded, and clamped to
[min, max]. Prompts are random token ids (`controlplane.workload.random_token_ids`); there is no
shared prefix between requests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from controlplane.workload import load_trace, random_token_ids, scale_lengths
from controlplane.workload.tokens import DEFAULT_VOCAB


@dataclass(frozen=True)
class LengthScaling:
    """How trace lengths become CPU-sized ones: `round(len * factor)` clamped to [min, max].

    The defaults keep the trace's shape (ShareGPT x 1/8: prompts mean 29, p50 4, p99 256 tokens,
    2.7% clamped at 256; outputs mean 41, p50 36, p99 125, 0.7% clamped at 128) and a full run of
    the benchmark on 2 CPU cores within about 15 minutes.
    """

    factor: float = 0.125
    min_input: int = 4
    max_input: int = 256
    min_output: int = 4
    max_output: int = 128

    def __post_init__(self) -> None:
        if not 1 <= self.min_input <= self.max_input or not 1 <= self.min_output <= self.max_output:
            raise ValueError(f"length bounds must satisfy 1 <= min <= max, got {self}")

    @property
    def max_model_len(self) -> int:
        """The longest sequence (prompt plus output) a request can have."""
        return self.max_input + self.max_output


@dataclass(frozen=True)
class BenchRequest:
    """One request: its prompt token ids and the exact number of tokens to generate."""

    request_id: str
    prompt: list[int]
    output_len: int


def draw_requests(
    n: int,
    scaling: LengthScaling,
    seed: int,
    trace: str = "sharegpt",
    vocab: tuple[int, int] = DEFAULT_VOCAB,
) -> list[BenchRequest]:
    """The first `n` requests of the seeded order (see the module docstring).

    Raises ValueError if `n` is below 1 or above the trace's size, and what `load_trace` raises
    for a missing or malformed trace.
    """
    pool = load_trace(trace).requests
    if not 1 <= n <= len(pool):
        raise ValueError(f"can draw 1 to {len(pool)} requests from {trace!r}, not {n}")
    order = np.random.default_rng(seed).permutation(len(pool))[:n]
    scaled = scale_lengths([pool[i] for i in order], scaling.factor, scaling.max_input, scaling.max_output)
    return [
        BenchRequest(
            request_id=f"req-{i}",
            prompt=random_token_ids(max(r.prompt_len, scaling.min_input), i, seed, vocab),
            output_len=max(r.output_len, scaling.min_output),
        )
        for i, r in enumerate(scaled)
    ]
