"""The Ray runtime: engine replicas as Ray actors, seen from one gateway.

Implements `controlplane.runtime.base.Cluster`.
- Submissions are coalesced per instance: every request dispatched in one event-loop tick goes out
  in one `add_requests` call.
- One long-poll task per instance (`next_outputs`) brings back token chunks and the instance's stats
  snapshot together; that pushed snapshot is the instance's view (the gateway's dispatcher adds
  what it placed since, `controlplane.scheduling.pending`).
- A lost actor (its process killed, its step loop failed, its node gone, or unreachable) fails
  the streams it served with `InstanceUnavailable` (the gateway resumes them elsewhere) and is
  marked unhealthy and `restarting` until it answers `start()` again: Ray restarts its process
  (`max_restarts`); an actor Ray gave up on is created anew from its spec. It then serves, empty.
  Errors from Ray reach the log, never a client: their text holds tracebacks, paths and ids.
- Live migration (`migrator`, `controlplane/controller/migrator.py`, over `RayEndpoint`s) moves a
  request between actors; once committed, its stream expects the rest of its chunks from the
  destination. The migration verbs are `controller.controller.MigratingCluster`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, replace

import ray
from ray.exceptions import ActorDiedError, RayActorError, RayError

from controlplane.controller.migrator import MigrationObserver, Migrator
from controlplane.controller.settings import ControllerSettings
from controlplane.runtime.ray_endpoint import RayEndpoint
from controlplane.runtime.streams import StreamRouter
from controlplane.runtime.tasks import cancel_and_wait
from controlplane.scheduling.migration import MigrationOrder
from controlplane.scheduling.types import InstanceView
from controlplane.transfer.protocol import TransferOutcome
from controlplane.transfer.settings import TransferSettings
from flotilla.errors import InstanceUnavailable, InvalidRequest
from instances.actor import RemoteInstanceActor
from instances.replica import ReplicaSpec
from instances.types import EngineRequest, GenerationChunk, InstanceStats, MigrationCandidate

log = logging.getLogger(__name__)

POLL_TIMEOUT_S = 1.0
RESTART_BACKOFF_S = (0.1, 5.0)
"""Between two tries to start a lost actor again: the first wait, doubling up to the second."""


def quiet_token_warning() -> None:
    """Ray 2.60 turns token authentication on for a new local cluster and logs a warning saying so
    on the console; authentication stays on, the warning goes. (The rest of a private Ray's set-up
    is its environment, `private_ray.prepare_private_ray`, before Ray is imported.)"""
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)


@dataclass
class _Instance:
    spec: ReplicaSpec
    num_cpus: float
    handle: ray.actor.ActorHandle
    stats: InstanceStats

    @staticmethod
    def actor(spec: ReplicaSpec, num_cpus: float) -> ray.actor.ActorHandle:
        """A new actor for `spec` (not started yet)."""
        return RemoteInstanceActor.options(
            name=f"flotilla-{spec.instance_id}-{uuid.uuid4().hex[:6]}", num_cpus=num_cpus
        ).remote(spec)


class RayCluster:
    """Instance actors of one model, driven from this process's event loop."""

    def __init__(
        self, instances: dict[str, _Instance], gateway_id: str, owns_ray: bool, model: str,
        transfer: TransferSettings | None = None, max_in_flight: int = ControllerSettings.max_in_flight,
    ) -> None:
        self.instances = instances
        self.gateway_id = gateway_id
        self.owns_ray = owns_ray
        self.router = StreamRouter()
        self.observers: list[MigrationObserver] = []  # of every migration (metrics, tests)
        self.endpoints = {iid: RayEndpoint(iid, inst.handle) for iid, inst in instances.items()}
        self.migrator = Migrator(
            self.endpoints, model,
            transfer or TransferSettings(), max_in_flight,
            on_commit=lambda order: self.router.moved(order.request_id, order.destination),
            step_time=lambda iid: self.instances[iid].stats.last_step_time_s,
            observers=self.observers,
        )
        self._outq: dict[str, list[tuple[EngineRequest, asyncio.Future]]] = {}
        loop = asyncio.get_running_loop()
        self._pumps = [loop.create_task(self._pump(iid), name=f"pump-{iid}") for iid in instances]

    @classmethod
    async def start(
        cls, specs: list[ReplicaSpec], *, num_cpus_per_instance: float = 1.0, address: str | None = None,
        transfer: TransferSettings | None = None, max_in_flight: int = ControllerSettings.max_in_flight,
        on_ready: Callable[[str], None] | None = None, dashboard: bool = False,
    ) -> RayCluster:
        """Start Ray (a local one unless `address`, with its dashboard on 127.0.0.1 only if
        `dashboard`), create and start one actor per spec; `on_ready(instance_id)` is called as
        each one has started."""
        owns_ray = not ray.is_initialized()
        if owns_ray:
            local_cpus = max(os.cpu_count() or 1, math.ceil(num_cpus_per_instance * len(specs)))
            if address is None:
                quiet_token_warning()
            ray.init(
                address=address,
                num_cpus=None if address else local_cpus,
                include_dashboard=dashboard and address is None,
                dashboard_host="127.0.0.1",
                logging_level="WARNING",
                configure_logging=True,
            )
        handles = [_Instance.actor(s, num_cpus_per_instance) for s in specs]

        async def started(spec: ReplicaSpec, handle: ray.actor.ActorHandle) -> InstanceStats:
            got = await handle.start.remote()
            if on_ready is not None:
                on_ready(spec.instance_id)
            return got

        stats = await asyncio.gather(*(started(s, h) for s, h in zip(specs, handles)))
        instances = {s.instance_id: _Instance(s, num_cpus_per_instance, h, st)
                     for s, h, st in zip(specs, handles, stats)}
        return cls(instances, gateway_id=f"gw-{uuid.uuid4().hex[:8]}", owns_ray=owns_ray,
                   model=specs[0].model, transfer=transfer, max_in_flight=max_in_flight)

    # ---- Cluster protocol ---------------------------------------------------------------------
    def views(self) -> list[InstanceView]:
        return [inst.stats for inst in self.instances.values()]

    async def generate(self, instance_id: str, request: EngineRequest) -> AsyncIterator[GenerationChunk]:
        inst = self._instance(instance_id)
        rid = request.request_id
        self.router.open(rid, instance_id, request.first_index)  # before sending: chunks may arrive before add returns
        try:
            error = await self._enqueue(instance_id, request)
        except BaseException:
            self.router.discard(rid)
            inst.handle.abort.remote([rid])
            raise
        if error is not None:
            self.router.discard(rid)
            if inst.stats.draining:  # placed before the drain began: another instance may take it
                raise InstanceUnavailable(error)
            raise InvalidRequest(error)
        # the abort goes to wherever the request runs by then (it may have migrated)
        stream = self.router.stream(rid, lambda: self.abort(self.router.instance_of(rid) or instance_id, rid))
        async with contextlib.aclosing(stream):  # closing us closes it at once: the abort is immediate
            async for chunk in stream:
                yield chunk

    async def abort(self, instance_id: str, request_id: str) -> None:
        inst = self.instances.get(instance_id)
        if inst is not None and inst.stats.healthy:
            try:
                await inst.handle.abort.remote([request_id])
            except RayActorError as e:  # lost meanwhile: it holds nothing any more; its pump restarts it
                log.info("abort of %s on %s: the instance is lost (%s)", request_id, instance_id, type(e).__name__)

    # ---- migration and drain (the controller's verbs) -------------------------------------------

    def locate(self, request_id: str) -> str:
        """The instance serving a request this gateway streams; NotFound otherwise."""
        return self.router.locate(request_id)

    async def migration_candidates(self, instance_ids: list[str]) -> dict[str, list[MigrationCandidate]]:
        """What each healthy instance of `instance_ids` could give away now."""
        ids = [iid for iid in instance_ids if iid in self.instances and self.instances[iid].stats.healthy]
        lists = await asyncio.gather(*(self.instances[iid].handle.migration_candidates.remote() for iid in ids),
                                     return_exceptions=True)
        for got in lists:
            if isinstance(got, BaseException) and not isinstance(got, RayError):
                raise got
        # an instance that died meanwhile gives nothing away; its pump marks it unhealthy
        return {iid: got for iid, got in zip(ids, lists) if not isinstance(got, RayError)}

    def migrations_in_flight(self) -> Mapping[str, int]:
        return self.migrator.in_flight

    async def migrate(self, order: MigrationOrder) -> TransferOutcome:
        """Carry out one migration (see `Migrator.migrate`)."""
        return await self.migrator.migrate(order)

    async def set_draining(self, instance_id: str, draining: bool) -> None:
        """Make an instance refuse (or accept again) new requests and incoming migrations."""
        inst = self._instance(instance_id)
        inst.stats = await inst.handle.set_draining.remote(draining)

    async def close(self) -> None:
        await cancel_and_wait(self._pumps)
        for inst in self.instances.values():
            ray.kill(inst.handle)
        if self.owns_ray:
            ray.shutdown()

    # ---- internals ----------------------------------------------------------------------------
    def _instance(self, instance_id: str) -> _Instance:
        inst = self.instances.get(instance_id)
        if inst is None or not inst.stats.healthy:
            raise InstanceUnavailable(f"instance {instance_id!r} is not available; retry the request")
        return inst

    def _enqueue(self, instance_id: str, request: EngineRequest) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        queue = self._outq.setdefault(instance_id, [])
        if not queue:
            loop.call_soon(self._flush, instance_id)
        queue.append((request, fut))
        return fut

    def _flush(self, instance_id: str) -> None:
        batch = self._outq.pop(instance_id, [])
        if batch:
            asyncio.get_running_loop().create_task(self._send(instance_id, batch))

    async def _send(self, instance_id: str, batch: list[tuple[EngineRequest, asyncio.Future]]) -> None:
        inst = self.instances[instance_id]
        try:
            errors = await inst.handle.add_requests.remote(self.gateway_id, [r for r, _ in batch])
        except RayError as e:
            log.warning("submitting %d request(s) to %s failed: %s", len(batch), instance_id, e)
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(InstanceUnavailable(f"instance {instance_id} is not available; retry"))
            return
        for (_, fut), err in zip(batch, errors):
            if not fut.done():
                fut.set_result(err)

    async def _pump(self, instance_id: str) -> None:
        inst = self.instances[instance_id]
        while True:
            try:
                chunks, stats = await inst.handle.next_outputs.remote(self.gateway_id, POLL_TIMEOUT_S)
            except RayActorError as e:
                await self._recover(inst, e)
                continue
            inst.stats = stats
            self.router.deliver(chunks)

    async def _recover(self, inst: _Instance, error: RayActorError) -> None:
        """`inst` was lost: end its streams, mark it restarting, and return once it serves again."""
        iid = inst.spec.instance_id
        log.warning("instance %s was lost (%s); restarting it", iid, error)
        draining = inst.stats.draining
        inst.stats = replace(inst.stats, healthy=False, restarting=True, running=0, waiting=0,
                             free_blocks=0, tokens_in_flight=0, queued_prompt_tokens=0)
        lost = self.router.fail_instance(iid, InstanceUnavailable(f"instance {iid} was lost; retry the request"))
        wait = RESTART_BACKOFF_S[0]
        while True:
            try:
                stats = await inst.handle.start.remote()
                if lost:  # an actor that was only unreachable may still run them
                    await inst.handle.abort.remote(lost)
                if draining:  # an operator's drain outlives the restart
                    stats = await inst.handle.set_draining.remote(True)
                break
            except ActorDiedError as e:  # Ray will not restart it
                log.warning("instance %s is gone for good (%s); creating it anew", iid, e)
                inst.handle = _Instance.actor(inst.spec, inst.num_cpus)
                self.endpoints[iid] = RayEndpoint(iid, inst.handle)
            except RayActorError as e:
                log.info("instance %s does not answer yet (%s); next try in %.1f s", iid, type(e).__name__, wait)
                await asyncio.sleep(wait)
                wait = min(2 * wait, RESTART_BACKOFF_S[1])
        inst.stats = stats
        log.warning("instance %s serves again", iid)
