"""Engine-level settings, fixed for an engine's lifetime (built from the validated config tree)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EngineConfig:
    """Sizes and switches of one engine.

    max_num_batched_tokens: token budget of one step (decodes count 1, prefill chunks their length).
    max_num_seqs: bound on the running set.
    max_model_len: longest sequence (prompt + output) the engine accepts.
    reservation_timeout_s: a migration's reservation on this engine is freed when no call for it
    comes for this long (the destination's watchdog, `instances/engine/migration.py`).
    """

    block_size: int = 16
    num_blocks: int = 1024
    max_num_batched_tokens: int = 512
    max_num_seqs: int = 64
    max_model_len: int = 2048
    enable_prefix_caching: bool = True
    seed: int = 0
    reservation_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        for name in ("block_size", "num_blocks", "max_num_batched_tokens", "max_num_seqs", "max_model_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"engine.{name} must be >= 1, got {getattr(self, name)}")
        if not self.reservation_timeout_s > 0:
            raise ValueError(f"engine.reservation_timeout_s must be > 0, got {self.reservation_timeout_s}")
        if self.max_model_len > self.num_blocks * self.block_size:
            raise ValueError(
                f"engine.max_model_len ({self.max_model_len}) exceeds the KV pool "
                f"({self.num_blocks} blocks x {self.block_size} tokens); raise num_blocks or lower it"
            )
