"""`round_robin` picker: cycles over the candidates that passed the filters, ignoring scores.

Candidates are taken in instance-id order; the i-th call picks candidate `i mod n` of that call's
list. Its call counter is its only state (so it is deterministic for a given call sequence), and the
rng is not used.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from controlplane.scheduling.types import InstanceView, Scored


class RoundRobinPicker:
    """Picks candidates in turn; see the module docstring."""

    def __init__(self) -> None:
        self._counter = 0

    def pick(self, scored: Sequence[Scored], rng: random.Random) -> InstanceView:
        if not scored:
            raise ValueError("round_robin picker needs at least one candidate")
        ordered = sorted((s.instance for s in scored), key=lambda v: v.instance_id)
        chosen = ordered[self._counter % len(ordered)]
        self._counter += 1
        return chosen
