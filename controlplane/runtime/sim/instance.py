"""A simulated instance: the real `Engine` (local scheduler and block manager) with a latency model
in place of the forward pass.

A step is split in two around virtual time: `start_step()` lets the engine choose its batch
(allocating blocks, preempting) and returns when the step ends according to the latency model;
`finish_step()` applies the samples at that time. Between the two the instance is busy: requests
added meanwhile wait for the next step, as they do in a real instance's step loop.

Every sampled token is `SIM_TOKEN_ID`; requests run with `ignore_eos` and finish at their
`max_tokens`, so a simulated request produces exactly the output length its trace gives (or
stops at the engine's context limit, as a real one would).
"""

from __future__ import annotations

from controlplane.runtime.local import view_of
from controlplane.scheduling.types import InstanceView
from instances.engine.config import EngineConfig
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
        return {item.seq.request_id: _SAMPLE for item in batch.seqs if item.needs_sample}


class SimInstance:
    """One simulated engine replica. Single-threaded; driven by the simulation loop."""

    def __init__(
        self, instance_id: str, config: EngineConfig, latency: LatencyModel, step_overhead_s: float = 0.0
    ) -> None:
        self.instance_id = instance_id
        self.executor = SimExecutor()
        self.engine = Engine(config, self.executor, instance_id=instance_id, clock=_no_clock)
        self.latency = latency
        self.step_overhead_s = step_overhead_s  # added to every step (SimConfig.step_overhead_s)
        self._batch: ScheduledBatch | None = None
        self._step_time = 0.0
        self.busy_s = 0.0  # virtual seconds spent stepping
        self.view: InstanceView = view_of(self.engine.stats())

    @property
    def busy(self) -> bool:
        return self._batch is not None

    def check(self, req: EngineRequest) -> None:
        """Raise ValueError if `req` can never run on this engine (the real engine's rule)."""
        self.engine.check(req)

    def add(self, req: EngineRequest) -> None:
        """Queue a request (already `check`ed); it joins the next step."""
        self.engine.add_request(req)
        self.view = view_of(self.engine.stats())

    def start_step(self) -> float | None:
        """Choose the next batch; returns its duration in seconds, or None when there is no work."""
        batch = self.engine.begin_step()
        if not batch:
            if batch.preempted:  # pragma: no cover - a preempting step always schedules someone
                raise AssertionError("engine preempted without scheduling")
            return None
        self._batch = batch
        self._step_time = self.latency.step_time(StepShape.of(batch)) + self.step_overhead_s
        self.busy_s += self._step_time
        return self._step_time

    def finish_step(self) -> list[RequestDelta]:
        """Apply the running step's samples; returns the deltas (one token per progressed request)."""
        batch, self._batch = self._batch, None
        if batch is None:
            raise RuntimeError(f"{self.instance_id}: finish_step without a running step")
        deltas = self.engine.finish_step(batch, self.executor.execute(batch), self._step_time).deltas
        self.view = view_of(self.engine.stats())
        return deltas

    @property
    def preemptions(self) -> int:
        return self.engine.scheduler.num_preemptions


def _no_clock() -> float:
    raise RuntimeError("a simulated engine has no wall clock; step it with start_step/finish_step")
