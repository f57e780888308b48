"""Engine-level settings, fixed for an engine's lifetime: the one declaration of the `engine` keys.

The config tree's `engine` section is built from this dataclass's fields (types, bounds and
defaults; `controlplane/config.py`), so a setting and its default are written once, here. Bounds
are `annotated_types` metadata, which pydantic reads at the edge, and `__post_init__` checks them
again for engines built in code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from annotated_types import Gt

DEFAULT_HIGH_PRIORITY_PREFILL_TOKENS = 128
"""About what a Llama-2-7B decode step on an A10 computes for free beside its weight reads (the
roofline's compute and memory times meet there); measured in `benchmarks/llumnix_policy.py`."""

Positive = Annotated[int, Gt(0)]


@dataclass(frozen=True)
class EngineConfig:
    """Sizes and switches of one engine.

    block_size: tokens per KV block. num_blocks: the KV pool, in blocks.
    max_num_batched_tokens: token budget of one step (decodes count 1, prefill chunks their length).
    max_num_seqs: bound on the running set.
    max_model_len: longest sequence (prompt + output) the engine accepts; set by whoever builds the
    engine from the model's positions and the config's `model.max_model_len` (not an `engine` key).
    enable_prefix_caching: reuse KV blocks of identical prompt prefixes.
    seed: the sampling RNG's seed for requests without their own.
    reservation_timeout_s: a migration's reservation on this engine is freed when no call for it
    comes for this long (the destination's watchdog, `instances/engine/migration.py`).
    high_priority_prefill_tokens: while a HIGH-priority request runs, a step computes at most this
    many prompt tokens (decodes are not counted), so its decode steps stay short: a prefill chunk
    in the step is what makes a memory-bound decode step long. None: the step budget alone.
    """

    block_size: Positive = 16
    num_blocks: Positive = 2048
    max_num_batched_tokens: Positive = 512
    max_num_seqs: Positive = 64
    max_model_len: Positive = 2048
    enable_prefix_caching: bool = True
    seed: int = 0
    reservation_timeout_s: Annotated[float, Gt(0)] = 30.0
    high_priority_prefill_tokens: Positive | None = DEFAULT_HIGH_PRIORITY_PREFILL_TOKENS

    def __post_init__(self) -> None:
        for name in ("block_size", "num_blocks", "max_num_batched_tokens", "max_num_seqs", "max_model_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"engine.{name} must be >= 1, got {getattr(self, name)}")
        if self.high_priority_prefill_tokens is not None and self.high_priority_prefill_tokens < 1:
            raise ValueError(
                f"engine.high_priority_prefill_tokens must be >= 1 or null, got {self.high_priority_prefill_tokens}")
        if not self.reservation_timeout_s > 0:
            raise ValueError(f"engine.reservation_timeout_s must be > 0, got {self.reservation_timeout_s}")
        if self.max_model_len > self.num_blocks * self.block_size:
            raise ValueError(
                f"engine.max_model_len ({self.max_model_len}) exceeds the KV pool "
                f"({self.num_blocks} blocks x {self.block_size} tokens); raise num_blocks or lower it"
            )
