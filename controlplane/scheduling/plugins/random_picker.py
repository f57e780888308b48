"""`random` picker: a candidate drawn uniformly at random, ignoring scores.

Each call draws exactly once from the rng, `rng.randrange(len(cands))` (also for a single
candidate, so a run consumes one draw per decision whatever the candidates), and picks that index
of the framework's instance-id-ordered list. Stateless; the rng is its only source of chance.
(The file is not called `random.py` so that it never shadows the standard library's module.)
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from controlplane.scheduling.types import InstanceView


class RandomPicker:
    """Uniform choice; see the module docstring."""

    def pick(
        self, cands: Sequence[InstanceView], totals: Sequence[float], rng: random.Random
    ) -> InstanceView:
        if not cands:
            raise ValueError("random picker needs at least one candidate")
        return cands[rng.randrange(len(cands))]
