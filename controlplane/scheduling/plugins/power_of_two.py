"""`power_of_two` picker: samples two distinct candidates with the rng and keeps the better-scored.

With one candidate it is returned without drawing from the rng. On equal scores the first sampled
wins. Stateless: the result depends only on the candidates, their order and the rng state.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from controlplane.scheduling.types import InstanceView, Scored


class PowerOfTwoPicker:
    """Power-of-two-choices; see the module docstring."""

    def pick(self, scored: Sequence[Scored], rng: random.Random) -> InstanceView:
        if not scored:
            raise ValueError("power_of_two picker needs at least one candidate")
        if len(scored) == 1:
            return scored[0].instance
        first, second = rng.sample(range(len(scored)), 2)
        a, b = scored[first], scored[second]
        return b.instance if b.score > a.score else a.instance
