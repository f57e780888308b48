"""`round_robin` picker: cycles over the candidates that passed the filters, ignoring scores.

The framework hands candidates over in instance-id order; the i-th call picks candidate `i mod n`
of that call's list. Its call counter is its only state (so it is deterministic for a given call
sequence), and the rng is not used.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from controlplane.scheduling.types import InstanceView


class RoundRobinPicker:
    """Picks candidates in turn; see the module docstring."""

    def __init__(self) -> None:
        self._counter = 0

    def pick(
        self, cands: Sequence[InstanceView], totals: Sequence[float], rng: random.Random
    ) -> InstanceView:
        if not cands:
            raise ValueError("round_robin picker needs at least one candidate")
        chosen = cands[self._counter % len(cands)]
        self._counter += 1
        return chosen
