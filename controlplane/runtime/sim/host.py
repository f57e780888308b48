"""Where the simulated instances run: each on its own accelerator, or all on one host's CPUs.

The latency model gives a step's *work*: its duration on a device of its own. With dedicated
devices (the default) work and time are the same. A `HostModel` puts every instance on the CPUs of
one machine, as the real cluster runs on a CPU-only test machine: by processor sharing, while `n`
instances are stepping, each progresses at `min(1, cores / (n + background_cores))` work-seconds per
second, where `background_cores` is the CPU the serving path around the engines (gateway, load
generator, actors' event loops) keeps busy on average.

The simulation loop keeps step ends in work coordinates: all stepping instances progress at the
same rate, so the order of their ends is fixed when they start, and a change of rate only changes
when the next one falls. `WorkClock` maps between the two axes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class HostModel:
    """`cores` CPUs shared by every instance's step thread and `background_cores` of other work."""

    cores: float
    background_cores: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.cores) and self.cores > 0):
            raise ValueError(f"host cores must be a finite number > 0, got {self.cores}")
        if not (math.isfinite(self.background_cores) and self.background_cores >= 0):
            raise ValueError(f"host background_cores must be a finite number >= 0, got {self.background_cores}")

    def rate(self, stepping: int) -> float:
        """Work-seconds per second of each of `stepping` instances that step at once."""
        return min(1.0, self.cores / (stepping + self.background_cores)) if stepping else 1.0


class WorkClock:
    """The work axis against virtual time. Without a host model it is the identity (exactly: no
    floating-point drift), so a dedicated-device simulation computes what it did before hosts.

    `work` is the work coordinate at time `now`; `advance(t)` moves both to `t` at the current
    rate; `set_stepping(n)` changes the rate from now on; `time_of(w)` is when the work coordinate
    reaches `w` at the current rate.
    """

    def __init__(self, host: HostModel | None) -> None:
        self.host = host
        self.now = 0.0
        self.work = 0.0
        self.rate = 1.0
        self.stepping = 0

    def advance(self, t: float) -> None:
        if self.host is None:
            self.now = self.work = t
            return
        self.work += self.rate * (t - self.now)
        self.now = t

    def arrive_at_work(self, w: float) -> float:
        """Advance to the moment the work coordinate reaches `w` (a step end); returns that time."""
        t = self.time_of(w)
        self.now, self.work = t, w
        return t

    def set_stepping(self, n: int) -> None:
        self.stepping = n
        if self.host is not None:
            self.rate = self.host.rate(n)

    def time_of(self, w: float) -> float:
        if self.host is None:
            return w
        return self.now + (w - self.work) / self.rate
