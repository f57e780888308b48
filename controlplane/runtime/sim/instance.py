"""A simulated instance: the real `Engine` (local scheduler and block manager) with a latency model
in place of the forward pass.

Work is split in two around virtual time: `start(now)` lets the engine choose what to run and
returns when that ends according to the latency model; `finish()` applies it at that time. Between
the two the instance is busy: requests added meanwhile wait for the next step, as they do in a real
instance's step loop.

The work is one step, or a *decode run*: when the next steps are pure decodes of the whole running
set (`Engine.plan_decode_run`), up to `max_run_steps` of them are priced at once and handled as one
event, ending at the first step that finishes a request. Every observable is as if each step were
its own event: tokens are recorded at their steps' end times, `view` (read by the dispatcher)
reflects the last step boundary passed (`DecodeRunView`), and a request added mid-run
(`interrupt` first) cuts the run at the step in progress, after which the instance steps as usual.

Every sampled token is `SIM_TOKEN_ID`; requests run with `ignore_eos` and finish at their
`max_tokens`, so a simulated request produces exactly the output length its trace gives (or
stops at the engine's context limit, as a real one would).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

from controlplane.runtime.sim.host import WorkClock
from controlplane.runtime.sim.noise import NoisePlayer
from controlplane.runtime.sim.recorder import Recorder
from controlplane.runtime.sim.views import DecodeRunView
from controlplane.scheduling.types import InstanceView
from instances.engine.config import EngineConfig
from instances.engine.decode_run import DecodeRun
from instances.engine.engine import Engine
from instances.engine.scheduler import SampledToken, ScheduledBatch
from instances.latency.base import LatencyModel
from instances.latency.shape import StepShape
from instances.types import EngineRequest, RequestDelta

SIM_TOKEN_ID = 0
_SAMPLE = SampledToken(SIM_TOKEN_ID)


class SimExecutor:
    """The simulated forward pass's sampling: `SIM_TOKEN_ID` for every sequence that needs a sample.
    Its duration is not taken here but from the instance's latency model."""

    def execute(self, batch: ScheduledBatch) -> dict[str, SampledToken]:
        return dict.fromkeys([item.seq.request_id for item in batch.seqs if item.needs_sample], _SAMPLE)


_FIRST_CHUNK = 8  # steps of a decode run priced when it starts; each extension doubles


@dataclass(slots=True)
class _Run:
    """A decode run in progress: the plan, and the duration and end time of its steps priced so far
    (`len(ends)` of `plan.steps`; a run is priced in growing chunks, since most are cut short)."""

    plan: DecodeRun
    start: float
    durations: list[float]
    ends: list[float]
    chunk: int


class SimInstance:
    """One simulated engine replica. Single-threaded; driven by the simulation loop, whose
    `WorkClock` (`clock`) it reads and whose `recorder` gets the tokens of decode runs' steps."""

    def __init__(
        self,
        instance_id: str,
        config: EngineConfig,
        latency: LatencyModel,
        clock: WorkClock,
        recorder: Recorder,
        step_overhead_s: float = 0.0,
        max_run_steps: int = 1,
        step_overhead_per_seq_s: float = 0.0,
        noise: NoisePlayer | None = None,
    ) -> None:
        self.instance_id = instance_id
        self.executor = SimExecutor()
        # the engine's clock is virtual time: migration reservations read it (steps are timed here)
        self.engine = Engine(config, self.executor, instance_id=instance_id, clock=lambda: clock.now)
        self.latency = latency
        self.clock = clock
        self.recorder = recorder
        self.step_overhead_s = step_overhead_s  # added to every step (SimConfig.step_overhead_s)
        self.step_overhead_per_seq_s = step_overhead_per_seq_s  # and per scheduled sequence
        self.max_run_steps = max_run_steps  # 1: no decode runs, every step is an event
        self.noise = noise  # measured step-time noise replayed (every step an event then)
        self._batch: ScheduledBatch | None = None
        self._run: _Run | None = None
        self._step_time = 0.0
        self.busy_s = 0.0  # virtual seconds spent stepping
        self.view: InstanceView = self.engine.stats()

    @property
    def busy(self) -> bool:
        return self._batch is not None or self._run is not None

    def check(self, req: EngineRequest) -> None:
        """Raise ValueError if `req` can never run on this engine (the real engine's rule)."""
        self.engine.check(req)

    def interrupt(self) -> float | None:
        """Before anything but a step changes the engine (an arrival, a migration verb): a decode run
        in progress is cut at the step in progress on the clock, and the time that step ends (the
        instance's new end of work) is returned; None when no run was in progress. The engine is
        then exactly as stepping one step at a time would have left it, mid-step."""
        if self._run is None:
            return None
        return self._cut(bisect_right(self._run.ends, self.clock.work))

    def refresh(self) -> None:
        """Take a new snapshot for `view` after the engine changed outside a step (call
        `interrupt` before the change)."""
        self.view = self.engine.stats()

    def start(self, now: float) -> float | None:
        """Start the next work at `now` (the instance is idle); returns the time it ends, or None
        when there is no work. Times here are work coordinates (`host.WorkClock`), which are
        virtual times unless a host model shares CPUs among the instances."""
        if self.max_run_steps > 1:
            plan = self.engine.plan_decode_run(self.max_run_steps, SIM_TOKEN_ID)
            if plan is not None:
                return self._start_run(plan, now)
        batch = self.engine.begin_step()
        if not batch:
            if batch.preempted:  # nothing fits beside reservations: idle until a verb or arrival
                self.refresh()
            return None
        self._begin(batch)
        return now + self._step_time

    def extend_run(self) -> float | None:
        """At the end time of the running work: if it is a decode run with steps not priced yet,
        price the next chunk and return the new end time; None when the work is done (`finish`)."""
        run = self._run
        if run is None or len(run.ends) == run.plan.steps:
            return None
        return self._price(run)

    def finish(self) -> list[RequestDelta]:
        """End the running work at its end time; returns the deltas of its (last) step."""
        if self._run is not None:
            self._cut(self._run.plan.steps - 1)
        batch, self._batch = self._batch, None
        if batch is None:
            raise RuntimeError(f"{self.instance_id}: finish without running work")
        deltas = self.engine.finish_step(batch, self.executor.execute(batch), self._step_time).deltas
        self.view = self.engine.stats()
        return deltas

    @property
    def preemptions(self) -> int:
        return self.engine.stats().preemptions

    @property
    def steps(self) -> int:
        """Engine steps taken so far."""
        return self.engine.stats().steps

    def _begin(self, batch: ScheduledBatch) -> None:
        self._batch = batch
        model_s = self.latency.step_time(StepShape.of(batch))
        if self.noise is not None:
            stretch, gap = self.noise.next()
            model_s = model_s * stretch + gap
        self._step_time = model_s + self.step_overhead_s + self.step_overhead_per_seq_s * len(batch.seqs)
        self.busy_s += self._step_time

    def _start_run(self, plan: DecodeRun, now: float) -> float:
        self._run = run = _Run(plan, now, [], [], _FIRST_CHUNK)
        self.view = DecodeRunView(self.view, plan, run.ends, run.durations, self.clock)
        return self._price(run)

    def _price(self, run: _Run) -> float:
        """Price the run's next chunk of steps; returns the end of the last step priced."""
        plan = run.plan
        batch = len(plan.seqs)
        step_time = self.latency.step_time
        fixed, per_seq = self.step_overhead_s, self.step_overhead_per_seq_s * batch
        durations, ends = run.durations, run.ends
        now = ends[-1] if ends else run.start
        first = len(ends)
        last = min(plan.steps, first + run.chunk)
        run.chunk *= 2
        for context in range(plan.context + first * batch, plan.context + last * batch, batch):
            d = step_time(StepShape(0, 0, 0, batch, context)) + fixed + per_seq  # as `_begin` sums it
            now += d  # the same float sums as stepping one event at a time
            durations.append(d)
            ends.append(now)
        return now

    def _cut(self, steps: int) -> float:
        """Apply the run's first `steps` steps, start step `steps` + 1 as an ordinary step and end
        the run; returns that step's end time. The caller refreshes `view`."""
        run, self._run = self._run, None
        assert run is not None
        plan = run.plan
        for d in run.durations[:steps]:
            self.busy_s += d
        self.engine.advance_decode_run(plan, steps, run.durations[steps - 1] if steps else 0.0)
        if steps:
            self.recorder.run_tokens([seq.request_id for seq in plan.seqs], run.ends[:steps])
        self._begin(self.engine.begin_step())
        return run.ends[steps]
