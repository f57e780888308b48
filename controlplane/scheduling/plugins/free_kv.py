"""`free_kv` scorer: the fraction of an instance's KV blocks that are free.

Blocks the gateway's not-yet-counted dispatches will need (`pending_tokens` rounded up to whole
blocks) are taken off the free count first, never below zero. An instance with no blocks scores 0.
"""

from __future__ import annotations

from collections.abc import Sequence

from controlplane.scheduling.types import InstanceView, RequestView


def free_fraction(view: InstanceView) -> float:
    """Free blocks net of pending dispatches, as a fraction of all blocks, in [0, 1]."""
    if view.total_blocks <= 0:
        return 0.0
    pending_blocks = -(-view.pending_tokens // view.block_size)
    free = max(0, view.free_blocks - pending_blocks)
    return min(1.0, free / view.total_blocks)


class FreeKVScorer:
    """Scores each candidate by `free_fraction`."""

    def score(self, req: RequestView, cands: Sequence[InstanceView]) -> list[float]:
        # free_fraction inlined (this runs once per decision over every candidate)
        return [
            0.0
            if (total := c.total_blocks) <= 0
            or (free := c.free_blocks - -(-c.pending_tokens // c.block_size)) <= 0
            else (fraction if (fraction := free / total) < 1.0 else 1.0)
            for c in cands
        ]
