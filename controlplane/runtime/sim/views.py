"""The view of an instance in the middle of a decode run.

A simulated instance's view is what a gateway would hold: the engine's snapshot at its last step
boundary. During a decode run (`instances.engine.decode_run`) the engine is not stepped one step
at a time, so the view is computed when the scheduling framework reads it, for the step boundary
last passed on the simulation's `WorkClock`; only the figures a decode step changes are computed.
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
    of step s (work coordinates) and `durations[s-1]` its length, at `clock.work` in [ends[j-1],
    ends[j]) the engine has finished j steps: every sequence has j more tokens (`tokens_in_flight`),
    the blocks of steps 1 .. j are allocated (`free_blocks`), `steps` grew by j and the last took
    `durations[j-1]`; nothing else changes during a run.
    """

    _DYNAMIC = frozenset({"free_blocks", "tokens_in_flight", "steps", "last_step_time_s"})

    def __init__(self, base: InstanceView, run: DecodeRun, ends: list[float], durations: list[float],
                 clock: WorkClock) -> None:
        for f in fields(InstanceView):
            if f.name not in self._DYNAMIC:
                object.__setattr__(self, f.name, getattr(base, f.name))
        object.__setattr__(self, "_base_tokens", base.tokens_in_flight)
        object.__setattr__(self, "_batch", len(run.seqs))
        object.__setattr__(self, "_free", run.free_blocks)
        object.__setattr__(self, "_ends", ends)
        object.__setattr__(self, "_durations", durations)
        object.__setattr__(self, "_base_steps", base.steps)
        object.__setattr__(self, "_base_step_time", base.last_step_time_s)
        object.__setattr__(self, "_clock", clock)

    @property  # type: ignore[override]
    def free_blocks(self) -> int:
        return self._free[bisect_right(self._ends, self._clock.work)]

    @property  # type: ignore[override]
    def tokens_in_flight(self) -> int:
        return self._base_tokens + self._batch * bisect_right(self._ends, self._clock.work)

    @property  # type: ignore[override]
    def steps(self) -> int:
        return self._base_steps + bisect_right(self._ends, self._clock.work)

    @property  # type: ignore[override]
    def last_step_time_s(self) -> float:
        done = bisect_right(self._ends, self._clock.work)
        return self._durations[done - 1] if done else self._base_step_time
