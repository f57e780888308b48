"""The view of an instance in the middle of a decode run.

A simulated instance's view is what a gateway would hold: the engine's snapshot at its last step
boundary. During a decode run (`instances.engine.decode_run`) the engine is not stepped one step
at a time, so the view is computed when the scheduling framework reads it, for the step boundary
last passed on the simulation's `WorkClock`; only the two figures a decode step changes are
computed.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import fields

from controlplane.runtime.sim.host import WorkClock
from controlplane.scheduling.types import InstanceView
from instances.engine.decode_run import DecodeRun


class DecodeRunView(InstanceView):
    """An `InstanceView` equal to the step-by-step one at every instant of a decode run.

    `base` is the view when the run was planned (before its first step). With `ends[s-1]` the end
    of step s (work coordinates), at `clock.work` in [ends[j-1], ends[j]) the engine has finished j steps: every
    sequence has j more tokens (`tokens_in_flight`) and the blocks of steps 1 .. j are allocated
    (`free_blocks`); nothing else changes during a run.
    """

    _DYNAMIC = frozenset({"free_blocks", "tokens_in_flight"})

    def __init__(self, base: InstanceView, run: DecodeRun, ends: list[float], clock: WorkClock) -> None:
        for f in fields(InstanceView):
            if f.name not in self._DYNAMIC:
                object.__setattr__(self, f.name, getattr(base, f.name))
        object.__setattr__(self, "_base_tokens", base.tokens_in_flight)
        object.__setattr__(self, "_batch", len(run.seqs))
        object.__setattr__(self, "_free", run.free_blocks)
        object.__setattr__(self, "_ends", ends)
        object.__setattr__(self, "_clock", clock)

    @property  # type: ignore[override]
    def free_blocks(self) -> int:
        return self._free[bisect_right(self._ends, self._clock.work)]

    @property  # type: ignore[override]
    def tokens_in_flight(self) -> int:
        return self._base_tokens + self._batch * bisect_right(self._ends, self._clock.work)
