"""The discrete-event loop: arrivals and engine steps in virtual time.

Two kinds of event, taken in time order:
- the end of instance k's work, one step or a decode run (from a heap keyed by (time, sequence
  number), so equal times keep the order they were scheduled in; an entry whose work was cut short
  is stale and skipped);
- the next arrival of the workload (already sorted, so it is read in order, never heaped).
A step end at the same instant as an arrival is handled first: the engine's state then includes
that step, as a real gateway's next snapshot would. Decode runs (`SimInstance`) change the number
of events, not the results: with `SimConfig.max_run_steps` = 1 every step is its own event, and
the results are identical.

An arrival is placed by the real scheduling framework over the instances' current views (built
from the real engine's `stats()`), then queued on that instance; an idle instance starts a step
at once (or, in a decode run, cuts it at the step in progress). With `SimConfig.dispatch_delay_s`
the placement happens that long after the arrival, or with `dispatch_delays_s` after a delay drawn
for each request, so placements may come in another order than arrivals (latencies still count
from the arrival). A step end applies the samples, records the tokens at
that instant and starts the next step. Nothing reads the wall clock; the randomness is the
pickers' `random.Random(seed)` and, when configured, dispatch delays and step noise drawn from
generators seeded from the same seed.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, replace

from controlplane.runtime.sim.config import SimConfig
from controlplane.runtime.sim.host import WorkClock
from controlplane.runtime.sim.instance import SimInstance
from controlplane.runtime.sim.migration import MigrationStats, Migrator
from controlplane.runtime.sim.recorder import Recorder
from controlplane.runtime.sim.workload import SimWorkload
from controlplane.scheduling.framework import SchedulingFramework
from controlplane.scheduling.registry import build_profile
from controlplane.scheduling.types import RequestView
from flotilla.errors import NoCapacity
from instances.engine.config import EngineConfig
from instances.types import EngineRequest, SamplingParams

Progress = Callable[[int, int, float], None]
"""Called as `progress(finished_requests, total_requests, virtual_now_s)` every few thousand events."""

_PROGRESS_EVERY = 4096


@dataclass(frozen=True)
class SimRun:
    """What a finished simulation hands to the report: the recorder and the run's counters."""

    recorder: Recorder
    instances: list[SimInstance]
    engine: EngineConfig  # as run: prefix caching is off for workloads that share no prefix
    duration_s: float
    events: int  # arrivals, ends of work (steps or decode runs), controller ticks, migration stages
    migrations: MigrationStats | None = None  # with a migration model

    @property
    def steps(self) -> int:
        """Engine steps simulated, over all instances."""
        return sum(inst.steps for inst in self.instances)


class Simulation:
    """One run of `workload` through `config`'s cluster. Call `run()` once."""

    def __init__(self, config: SimConfig, workload: SimWorkload) -> None:
        self.config = config
        self.workload = workload
        engine = config.engine
        if not workload.shares_prefixes and engine.enable_prefix_caching:
            engine = replace(engine, enable_prefix_caching=False)
        self.engine = engine
        self.work = WorkClock(config.host)
        self.recorder = Recorder()
        # on a shared host a run's step ends depend on the other instances, and replayed noise
        # differs from step to step: every step is an event
        stepwise = config.host is not None or config.noise is not None
        max_run_steps = 1 if stepwise else config.max_run_steps
        players = ([None] * config.instances if config.noise is None
                   else config.noise.players(config.instances, config.seed))
        self.instances = [
            SimInstance(f"sim-{k:04d}", engine, config.latency, self.work, self.recorder,
                        config.step_overhead_s, max_run_steps, config.step_overhead_per_seq_s, players[k])
            for k in range(config.instances)
        ]
        profile = build_profile(config.policy, config.profile, config.plugins)
        self.framework = SchedulingFramework({config.policy: profile})
        self.rng = random.Random(config.seed)
        self._index = {inst.instance_id: k for k, inst in enumerate(self.instances)}
        self._ends: list[tuple[float, int, int]] = []  # (end in work coordinates, sequence, instance index)
        self._current = [0] * config.instances  # sequence of each instance's live heap entry
        self._seq = 0
        self._ran = False
        self.migrator = None if config.migration is None else Migrator(
            config.migration, self.instances, self._touch, self._settle)

    def run(self, progress: Progress | None = None) -> SimRun:
        """Replay every request to completion. Raises RuntimeError if called twice."""
        if self._ran:
            raise RuntimeError("a Simulation runs once; build a new one")
        self._ran = True
        requests = self.workload.requests
        total = len(requests)
        ends = self._ends
        current = self._current
        instances = self.instances
        work = self.work
        placements = self._placements()
        migrator = self.migrator
        now = 0.0
        events = 0
        next_arrival = 0
        while next_arrival < total or ends or (migrator is not None and migrator.busy):
            if migrator is not None:
                due = migrator.next_time()
                if ((not ends or due < work.time_of(ends[0][0]))
                        and (next_arrival >= total or due < placements[next_arrival][0])):
                    now = due
                    work.advance(now)
                    migrator.fire(now)
                    events += 1
                    continue
            if ends and (next_arrival >= total or work.time_of(ends[0][0]) <= placements[next_arrival][0]):
                end, seq, k = heapq.heappop(ends)
                if seq != current[k]:
                    continue  # that work was cut short and rescheduled
                now = work.arrive_at_work(end)
                inst = instances[k]
                end = inst.extend_run()
                if end is not None:
                    self._schedule(k, end)  # a decode run priced further: nothing happened yet
                else:
                    self.recorder.tokens(inst.finish(), now)
                    if migrator is not None:
                        migrator.at_step_boundary(k, now)
                    self._start(k)
                    if not inst.busy:
                        work.set_stepping(work.stepping - 1)
            else:
                now, index = placements[next_arrival]
                work.advance(now)
                self._arrive(index, now)
                next_arrival += 1
            events += 1
            if progress is not None and events % _PROGRESS_EVERY == 0:
                progress(self.recorder.finished, total, now)
        if progress is not None:
            progress(self.recorder.finished, total, now)
        return SimRun(self.recorder, instances, self.engine, now, events,
                      None if migrator is None else migrator.stats)

    def _placements(self) -> list[tuple[float, int]]:
        """(placement time, request index) of every request in placement order: its arrival plus
        the fixed `dispatch_delay_s`, or plus a delay drawn from `dispatch_delays_s` (uniformly,
        with a `random.Random` of its own seeded from the config's seed)."""
        requests = self.workload.requests
        samples = self.config.dispatch_delays_s
        if not samples:
            delay = self.config.dispatch_delay_s
            return [(r.arrival_s + delay, i) for i, r in enumerate(requests)]
        rng = random.Random(f"dispatch-delay:{self.config.seed}")
        return sorted((r.arrival_s + rng.choice(samples), i) for i, r in enumerate(requests))

    def _start(self, k: int) -> None:
        end = self.instances[k].start(self.work.work)
        if end is not None:
            self._schedule(k, end)

    def _schedule(self, k: int, end: float) -> None:
        """Instance k's work now ends at work coordinate `end` (any earlier heap entry of it is
        stale). Without a host model work coordinates are virtual times."""
        self._seq += 1
        self._current[k] = self._seq
        heapq.heappush(self._ends, (end, self._seq, k))

    def _touch(self, k: int) -> None:
        """Before a change to instance k's engine outside its steps: cut its decode run, if any."""
        end = self.instances[k].interrupt()
        if end is not None:
            self._schedule(k, end)

    def _settle(self, k: int) -> None:
        """After such a change: refresh instance k's view and start it if it is idle."""
        inst = self.instances[k]
        inst.refresh()
        if not inst.busy:
            self._start(k)
            if inst.busy:
                self.work.set_stepping(self.work.stepping + 1)

    def _arrive(self, index: int, now: float) -> None:
        trace = self.workload.requests[index]
        request_id = f"req-{index}"
        self.recorder.sent(request_id, trace.prompt_len, trace.arrival_s, trace.priority)
        view = RequestView(request_id, trace.prompt_len, trace.output_len, trace.priority)
        try:
            chosen = self.framework.schedule(
                self.config.policy, view, [inst.view for inst in self.instances], self.rng
            )
        except NoCapacity as e:
            self.recorder.rejected(request_id, e.message)
            return
        k = self._index[chosen.instance_id]
        inst = self.instances[k]
        req = EngineRequest(
            request_id=request_id,
            prompt_token_ids=self.workload.prompt(index),
            sampling=SamplingParams(max_tokens=trace.output_len, temperature=0.0, ignore_eos=True),
            arrival_time=now,
            priority=trace.priority,
        )
        try:
            inst.check(req)
        except ValueError as e:
            self.recorder.rejected(request_id, str(e))
            return
        self._touch(k)  # it joins the next step: a decode run in progress is cut at the step in progress
        inst.engine.add_request(req)
        self._settle(k)
