"""`power_of_two` picker: samples two distinct candidates with the rng and keeps the better-scored.

With one candidate it is returned without drawing from the rng. On equal totals the first sampled
wins. Stateless: the result depends only on the candidates, their totals, their order and the rng.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from controlplane.scheduling.types import InstanceView


class PowerOfTwoPicker:
    """Power-of-two-choices; see the module docstring."""

    def pick(
        self, cands: Sequence[InstanceView], totals: Sequence[float], rng: random.Random
    ) -> InstanceView:
        if not cands:
            raise ValueError("power_of_two picker needs at least one candidate")
        if len(cands) == 1:
            return cands[0]
        first, second = rng.sample(range(len(cands)), 2)
        return cands[second] if totals[second] > totals[first] else cands[first]
