"""The in-process runtime: engine replicas stepped on the gateway's own event loop.

Implements `controlplane.runtime.base.Cluster` with no Ray: each replica's forward pass runs in a
worker thread of this process. It serves fast tests and single-process embedding; `flotilla serve`
uses the Ray runtime. Replicas share one loaded model (weights are read-only); each has its own KV
cache. Live migration works as on Ray (`controller.controller.MigratingCluster`): the same
migrator drives the transfer core over `LoopEndpoint`s, and pages pass in memory.
A step loop that fails (an exception out of an engine step) is logged, its streams end with
`InstanceUnavailable` (the gateway resumes them elsewhere), and the instance is rebuilt at once
from its spec, empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TypeVar

import torch

from controlplane.controller.migrator import MigrationObserver, Migrator
from controlplane.controller.settings import ControllerSettings
from controlplane.runtime.streams import StreamRouter
from controlplane.runtime.tasks import cancel_and_wait
from controlplane.scheduling.migration import MigrationOrder
from controlplane.scheduling.types import InstanceView
from controlplane.transfer.protocol import TransferOutcome
from controlplane.transfer.settings import TransferSettings
from flotilla.errors import InstanceUnavailable, InvalidRequest, TransferRefused
from instances.engine.config import EngineConfig
from instances.kv_transfer import KVPages
from instances.models.loader import LoadedModel, load_model
from instances.replica import MigrationPayload, Replica, ReplicaSpec, StageAck
from instances.step_loop import StepLoop
from instances.step_trace import trace_path
from instances.types import EngineRequest, GenerationChunk, MigrationCandidate

T = TypeVar("T")

log = logging.getLogger(__name__)


class LoopEndpoint:
    """An in-process replica's transfer verbs (a `controlplane.transfer.endpoint.TransferEndpoint`):
    each runs between two of its steps through `StepLoop.call`. Page and payload handles are the
    source's pending calls, which the destination's verb awaits. A failure other than a refusal
    becomes `InstanceUnavailable`."""

    def __init__(self, instance_id: str, loop: StepLoop) -> None:
        self.instance_id = instance_id
        self.loop = loop

    async def _call(self, fn: Callable[[Replica], T]) -> T:
        return await self._answer(self.loop.call(fn))

    async def _answer(self, pending: Awaitable[T]) -> T:
        try:
            return await pending
        except TransferRefused:
            raise
        except Exception as e:  # the verb or the loop broke: the transfer fails, the request stays put
            log.warning("a transfer call to %s failed", self.instance_id, exc_info=e)
            raise InstanceUnavailable(f"instance {self.instance_id} failed ({type(e).__name__}); "
                                      "see the gateway log") from e

    async def describe(self, request_id: str) -> MigrationCandidate:
        return await self._call(lambda r: r.describe(request_id))

    async def reserve(self, request_id: str, model: str, num_tokens: int) -> None:
        await self._call(lambda r: r.reserve(request_id, model, num_tokens))

    def export_stage(self, request_id: str, first_block: int, max_blocks: int) -> Awaitable[KVPages]:
        return self._call(lambda r: r.export_stage(request_id, first_block, max_blocks))

    async def import_stage(self, pages: Awaitable[KVPages]) -> StageAck:
        got = await pages
        return await self._call(lambda r: r.import_stage(got))

    async def hold(self, request_id: str, seconds: float) -> None:
        await self._answer(self.loop.hold(request_id, seconds))

    def suspend(self, request_id: str, first_block: int) -> Awaitable[MigrationPayload]:
        return self._call(lambda r: r.suspend(request_id, first_block))

    async def commit(self, payload: Awaitable[MigrationPayload]) -> StageAck | None:
        got = await payload  # a suspend that failed leaves the hold to `abandon` or its deadline
        try:
            return await self._call(lambda r: r.commit(got))
        finally:
            self.loop.unhold(got.state.request.request_id)

    async def release(self, request_id: str) -> bool:
        return await self._call(lambda r: r.release_migrated(request_id))

    async def resume(self, request_id: str) -> bool:
        return await self._call(lambda r: r.resume(request_id))

    async def abandon(self, request_id: str) -> None:
        self.loop.unhold(request_id)
        await self._call(lambda r: r.cancel_reservation(request_id) or r.abort(request_id))

    async def abort(self, request_id: str) -> None:
        self.loop.abort(request_id)


class LocalCluster:
    """`num_instances` replicas of one model in this process."""

    def __init__(self, loaded: LoadedModel, specs: list[ReplicaSpec], model: str = "",
                 transfer: TransferSettings | None = None, max_in_flight: int = ControllerSettings.max_in_flight) -> None:
        self.loaded = loaded
        self.specs = {s.instance_id: s for s in specs}
        self.loops: dict[str, StepLoop] = {}
        self.router = StreamRouter()
        self.observers: list[MigrationObserver] = []  # of every migration (metrics, tests)
        self.endpoints: dict[str, LoopEndpoint] = {}
        self.migrator = Migrator(
            self.endpoints, model, transfer or TransferSettings(),
            max_in_flight, on_commit=lambda order: self.router.moved(order.request_id, order.destination),
            step_time=lambda iid: self.loops[iid].stats().last_step_time_s, observers=self.observers,
        )
        self._tasks: dict[str, asyncio.Task] = {}
        for iid in self.specs:
            self._start(iid)

    def _start(self, instance_id: str) -> None:
        """Build the replica of `instance_id` from its spec and step it."""
        lp = StepLoop(Replica.build(self.specs[instance_id], self.loaded), self.router.deliver)
        self.loops[instance_id] = lp
        self.endpoints[instance_id] = LoopEndpoint(instance_id, lp)
        task = asyncio.get_running_loop().create_task(lp.run(), name=f"step-loop-{instance_id}")
        task.add_done_callback(lambda t: self._on_loop_exit(instance_id, t))
        self._tasks[instance_id] = task

    def _on_loop_exit(self, instance_id: str, task: asyncio.Task) -> None:
        """A step loop only ends by cancellation (closing) or by failing: then its streams end
        and the instance is rebuilt, empty."""
        if task.cancelled():
            return
        log.error("the step loop of %s failed; rebuilding the instance", instance_id, exc_info=task.exception())
        self.router.fail_instance(instance_id, InstanceUnavailable(f"instance {instance_id} was lost; retry"))
        self._start(instance_id)

    @classmethod
    async def create(
        cls, model: str, num_instances: int, engine: EngineConfig, *, dtype: str = "float32",
        loaded: LoadedModel | None = None, step_trace_dir: str | None = None,
        transfer: TransferSettings | None = None, max_in_flight: int = ControllerSettings.max_in_flight,
    ) -> LocalCluster:
        """Load `model` once in `dtype` (unless `loaded` is given) and start `num_instances` replicas
        (each writing a step trace into `step_trace_dir` if given); migrations run with `transfer`
        and at most `max_in_flight` per instance."""
        loaded = loaded or await asyncio.to_thread(load_model, model, getattr(torch, dtype))
        specs = [ReplicaSpec(instance_id=f"instance-{i}", model=model, engine=engine,
                             step_trace=trace_path(step_trace_dir, f"instance-{i}"))
                 for i in range(num_instances)]
        return cls(loaded, specs, model, transfer, max_in_flight)

    def views(self) -> list[InstanceView]:
        return [lp.stats() for lp in self.loops.values()]

    def _loop(self, instance_id: str) -> StepLoop:
        lp = self.loops.get(instance_id)
        if lp is None:
            raise InstanceUnavailable(f"instance {instance_id!r} does not exist; list instances and retry")
        return lp

    async def generate(self, instance_id: str, request: EngineRequest) -> AsyncIterator[GenerationChunk]:
        lp = self._loop(instance_id)
        try:
            lp.submit(request)
        except ValueError as e:
            if lp.stats().draining:  # placed before the drain began: another instance may take it
                raise InstanceUnavailable(str(e)) from e
            raise InvalidRequest(str(e)) from e
        # no await between submit and open: the replica cannot push a chunk before the stream exists
        rid = request.request_id
        self.router.open(rid, instance_id, request.first_index)
        # the abort goes to wherever the request runs by then (it may have migrated)
        stream = self.router.stream(rid, lambda: self.abort(self.router.instance_of(rid) or instance_id, rid))
        async with contextlib.aclosing(stream):  # closing us closes it at once: the abort is immediate
            async for chunk in stream:
                yield chunk

    async def abort(self, instance_id: str, request_id: str) -> None:
        self._loop(instance_id).abort(request_id)

    # ---- migration and drain (the controller's verbs) -------------------------------------------
    def locate(self, request_id: str) -> str:
        """The instance serving a request this gateway streams; NotFound otherwise."""
        return self.router.locate(request_id)

    async def migration_candidates(self, instance_ids: list[str]) -> dict[str, list[MigrationCandidate]]:
        """What each running instance of `instance_ids` could give away now."""
        ids = [iid for iid in instance_ids if iid in self.loops]
        lists = await asyncio.gather(*(self.loops[iid].call(lambda r: r.engine.migration_candidates())
                                       for iid in ids))
        return dict(zip(ids, lists))

    def migrations_in_flight(self) -> Mapping[str, int]:
        return self.migrator.in_flight

    async def migrate(self, order: MigrationOrder) -> TransferOutcome:
        """Carry out one migration (see `Migrator.migrate`)."""
        return await self.migrator.migrate(order)

    async def set_draining(self, instance_id: str, draining: bool) -> None:
        """Make an instance refuse (or accept again) new requests and incoming migrations."""
        await self._loop(instance_id).call(lambda r: r.engine.set_draining(draining))

    async def close(self) -> None:
        await cancel_and_wait(self._tasks.values())

