"""The one request record every workload source produces."""

from __future__ import annotations

from dataclasses import dataclass

from instances.types import Priority

MOONCAKE_BLOCK_TOKENS = 512
"""Tokens per Mooncake hash id: the trace publishes one id per 512-token prefix block."""


@dataclass(frozen=True)
class TraceRequest:
    """One request of a workload, before it is turned into an API call.

    `arrival_s` is the send time relative to the start of the run (the first request of a timed
    trace arrives at 0). `prompt_len` and `output_len` are token counts, both >= 1. `hash_ids`,
    when present, names the request's prompt blocks, exactly `ceil(prompt_len / block_tokens)` of
    them: block `i` covers prompt tokens `[i * block_tokens, (i + 1) * block_tokens)` (the last one
    truncated to `prompt_len`), and equal ids mean equal token blocks (see
    `controlplane.workload.tokens`). Without `hash_ids` the prompt is random tokens. `priority` is
    its class (`instances.types.Priority`: HIGH, NORMAL, LOW, OFFLINE).

    Raises ValueError from the constructor when a field is out of range.
    """

    arrival_s: float
    prompt_len: int
    output_len: int
    hash_ids: tuple[int, ...] | None = None
    block_tokens: int = MOONCAKE_BLOCK_TOKENS
    priority: int = Priority.NORMAL

    def __post_init__(self) -> None:
        if not self.arrival_s >= 0.0:  # also rejects NaN
            raise ValueError(f"arrival_s must be >= 0, got {self.arrival_s}")
        if self.prompt_len < 1:
            raise ValueError(f"prompt_len must be >= 1, got {self.prompt_len}")
        if self.output_len < 1:
            raise ValueError(f"output_len must be >= 1, got {self.output_len}")
        if self.priority not in Priority.__members__.values():
            raise ValueError(f"priority must be one of {[int(p) for p in Priority]}, got {self.priority}")
        if self.block_tokens < 1:
            raise ValueError(f"block_tokens must be >= 1, got {self.block_tokens}")
        if self.hash_ids is not None and len(self.hash_ids) != blocks_for(self.prompt_len, self.block_tokens):
            raise ValueError(
                f"a {self.prompt_len}-token prompt in {self.block_tokens}-token blocks needs "
                f"{blocks_for(self.prompt_len, self.block_tokens)} hash ids, got {len(self.hash_ids)}"
            )


def blocks_for(num_tokens: int, block_tokens: int) -> int:
    """Number of blocks of `block_tokens` that cover `num_tokens` (the last one may be partial)."""
    return -(-num_tokens // block_tokens)
