"""How a transfer copies: the one declaration of the `migration` config keys."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

from annotated_types import Ge, Gt


@dataclass(frozen=True)
class TransferSettings:
    """The transfer protocol's knobs (`controlplane/transfer/core.py`).

    last_stage_blocks: after a pre-copy stage, stop and copy once at most this many blocks are left
    to copy. max_stages: or after this many stages while the request keeps decoding (0: no pre-copy,
    everything moves in the stop-and-copy, as a one-stage handoff does). stage_chunk_blocks: a
    driver copies a stage in calls of at most this many blocks, so the source steps between them.
    transfer_timeout_s: each call of the protocol; a timeout aborts (the request stays put).
    """

    last_stage_blocks: Annotated[int, Ge(0)] = 2
    max_stages: Annotated[int, Ge(0)] = 4
    stage_chunk_blocks: Annotated[int, Gt(0)] = 32
    transfer_timeout_s: Annotated[float, Gt(0)] = 10.0

    def __post_init__(self) -> None:
        if self.last_stage_blocks < 0 or self.max_stages < 0 or self.stage_chunk_blocks < 1:
            raise ValueError("migration.last_stage_blocks and max_stages must be >= 0, "
                             "stage_chunk_blocks >= 1")
        if not (math.isfinite(self.transfer_timeout_s) and self.transfer_timeout_s > 0):
            raise ValueError(f"migration.transfer_timeout_s must be a finite number > 0, "
                             f"got {self.transfer_timeout_s}")
