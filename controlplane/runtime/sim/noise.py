"""Step-time noise measured on a served cluster, replayed by simulated instances.

A latency model gives one time per batch shape. A served instance on a shared host is not that
regular: in `benchmarks/sim_fidelity.py`'s runs on a 2-core machine, steps of the same shape take
1.1x to 3x the profiled time, and slow steps come in stretches of a few hundred milliseconds (the
host's other threads take the CPU). Those stretches are what widen the spread of per-request TPOT
and TTFT. `StepNoise` keeps, for each real instance, the sequence of its consecutive steps'
deviations from a `step trace` (instances/step_trace.py): a `stretch` (measured step time over the
model's time for that shape) and a `gap` (from the previous step's end to this step's start while
the instance had work: the step loop's own time). A simulated instance prices step i as
`model(shape) * stretch_i + gap_i`, replaying one real instance's sequence in order from an offset
drawn with the simulation's seed, wrapping around at its end; so slow stretches stay together as
they were measured, and the run is still reproducible.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from instances.latency.base import LatencyModel
from instances.step_trace import StepRecord

IDLE_GAP_S = 0.02
"""A longer pause between two steps means the instance had no work (its gap is not a step loop's
time); such a step gets the median gap of its sequence instead."""


@dataclass(frozen=True)
class StepNoise:
    """`sequences[j]`: the (stretch, gap) of real instance j's consecutive steps, in order."""

    sequences: tuple[tuple[tuple[float, float], ...], ...]

    def __post_init__(self) -> None:
        if not self.sequences or not all(self.sequences):
            raise ValueError("step noise needs at least one non-empty sequence of steps")
        for seq in self.sequences:
            for stretch, gap in seq:
                if not (math.isfinite(stretch) and stretch > 0 and math.isfinite(gap) and gap >= 0):
                    raise ValueError(f"step noise needs stretch > 0 and gap >= 0, got ({stretch}, {gap})")

    @classmethod
    def measure(cls, traces: Sequence[Sequence[StepRecord]], model: LatencyModel) -> StepNoise:
        """The noise of each trace's steps (one trace per real instance, in step order) against
        `model`; traces with fewer than two steps are left out (ValueError if none is left)."""
        sequences = []
        for records in traces:
            if len(records) < 2:
                continue
            raw = [b.end_s - b.seconds - a.end_s for a, b in pairwise(records)]
            busy = [g for g in raw if 0 <= g < IDLE_GAP_S]
            typical = float(np.median(busy)) if busy else 0.0
            gaps = [typical] + [g if 0 <= g < IDLE_GAP_S else typical for g in raw]
            pairs = [(r.seconds / model.step_time(r.shape), g) for r, g in zip(records, gaps, strict=True)]
            sequences.append(tuple(pairs))
        return cls(tuple(sequences))

    def mean_stretch(self) -> float:
        """Mean stretch over every step (the factor by which the model is off on average)."""
        return float(np.mean([s for seq in self.sequences for s, _ in seq]))

    def mean_gap(self) -> float:
        return float(np.mean([g for seq in self.sequences for _, g in seq]))

    def players(self, instances: int, seed: int) -> list[NoisePlayer]:
        """One player per simulated instance: instance k replays sequence k mod len(sequences)
        from an offset drawn with a `random.Random` seeded from `seed`."""
        rng = random.Random(f"step-noise:{seed}")
        return [NoisePlayer(seq, rng.randrange(len(seq)))
                for seq in (self.sequences[k % len(self.sequences)] for k in range(instances))]

    def describe(self) -> dict[str, float | int]:
        return {"sequences": len(self.sequences), "steps": sum(len(s) for s in self.sequences),
                "mean_stretch": self.mean_stretch(), "mean_gap_s": self.mean_gap()}


class NoisePlayer:
    """Hands out one sequence's (stretch, gap) pairs in order from `offset`, wrapping around."""

    def __init__(self, sequence: tuple[tuple[float, float], ...], offset: int) -> None:
        self.sequence = sequence
        self.index = offset

    def next(self) -> tuple[float, float]:
        pair = self.sequence[self.index]
        self.index = (self.index + 1) % len(self.sequence)
        return pair
