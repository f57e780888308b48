"""`max_score` picker: the candidate with the highest total score.

Ties rotate: when several candidates share the highest total, the picker takes the next of them
in turn (its one piece of state, a counter of tied decisions), so a burst that meets equal
instances (idle ones, before any snapshot counts the burst) spreads over them instead of piling
onto the lowest instance id. Deterministic given the sequence of decisions; the rng is not used.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from controlplane.scheduling.types import InstanceView


class MaxScorePicker:
    """Greedy choice; see the module docstring."""

    def __init__(self) -> None:
        self._ties = 0

    def pick(
        self, cands: Sequence[InstanceView], totals: Sequence[float], rng: random.Random
    ) -> InstanceView:
        if not cands:
            raise ValueError("max_score picker needs at least one candidate")
        best = max(totals)
        tied = [i for i, t in enumerate(totals) if t == best]
        if len(tied) == 1:
            return cands[tied[0]]
        self._ties += 1
        return cands[tied[(self._ties - 1) % len(tied)]]
