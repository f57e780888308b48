"""`max_score` picker: the candidate with the highest total score.

Ties go to the first of the tied candidates in the framework's order, i.e. the lowest instance id.
Deterministic and stateless: the rng is not used.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from controlplane.scheduling.types import InstanceView


class MaxScorePicker:
    """Greedy choice; see the module docstring."""

    def pick(
        self, cands: Sequence[InstanceView], totals: Sequence[float], rng: random.Random
    ) -> InstanceView:
        if not cands:
            raise ValueError("max_score picker needs at least one candidate")
        # max() keeps the first of equal maxima and index() finds the first equal: lowest id wins ties
        return cands[totals.index(max(totals))]
