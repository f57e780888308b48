"""The Ray actor that serves one engine replica.

Verbs (all async). The actor's event loop runs the engine's steps inline (`StepLoop(inline=True)`):
it serves nothing else, and a step thread beside it would fight it for the GIL. A call that arrives
during a step is answered after it.
- `start()` -> InstanceStats: begin stepping; answers once the model is loaded.
- `add_requests(gateway_id, requests)` -> per-request error message or None. Requests are batched by
  the caller, so a burst of arrivals costs one Ray call per instance, not one per request.
- `abort(request_ids)`.
- `next_outputs(gateway_id, timeout_s)` -> (chunks, stats): a long poll. It returns as soon as the
  gateway has chunks waiting (everything accumulated since its last call, so at most one Ray object
  per engine step and gateway) or after `timeout_s` with none. The stats snapshot rides along, so the
  gateway's view of this instance is pushed with the tokens instead of being polled.

A step loop that fails (an exception out of an engine step) ends the actor's process at once
(exit code `LOOP_FAILED_EXIT`, the error logged first): Ray then reports the actor lost to every
caller and restarts it (`max_restarts`), the same path as a killed process, so a dead loop is never
left behind a live actor that answers calls.

Transfer verbs (driven by the controller's migrator through `controlplane/transfer/driver.py`;
each runs between two steps): `migration_candidates`, `describe`, `export_stage` / `suspend` /
`resume` / `release_migrated` on the source, `reserve` / `import_stage` / `hold` / `commit` /
`abandon` on the destination, `set_draining`.
Pages and payloads are return values, so Ray's object store carries them from source to
destination without passing through the controller. `suspend` copies the request's chunks not yet
polled by its gateway into the payload and leaves them in the outbox too: the gateway's next poll
of the source usually brings them at once, and the destination hands the copy out first in case
the source is gone by then; the gateway's router drops whichever copy comes second.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import defaultdict

import ray

from instances.kv_transfer import KVPages
from instances.replica import MigrationPayload, Replica, ReplicaSpec, StageAck
from instances.step_loop import StepLoop
from instances.types import EngineRequest, GenerationChunk, InstanceStats, MigrationCandidate

log = logging.getLogger(__name__)

LOOP_FAILED_EXIT = 70
"""The exit code of an actor process whose step loop failed (EX_SOFTWARE)."""


class InstanceActor:
    """One engine replica behind Ray. Create with `ray.remote(InstanceActor).options(...)`."""

    def __init__(self, spec: ReplicaSpec) -> None:
        self.spec = spec
        self.replica = Replica.build(spec)
        self._owner: dict[str, str] = {}
        self._outbox: dict[str, list[GenerationChunk]] = defaultdict(list)
        self._ready: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self._loop: StepLoop | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> InstanceStats:
        if self._loop is None:
            self._loop = StepLoop(self.replica, self._route, inline=True)
            self._task = asyncio.get_running_loop().create_task(self._loop.run())
            self._task.add_done_callback(self._on_loop_end)
        return self._loop.stats()

    def _on_loop_end(self, task: asyncio.Task) -> None:
        """The loop only ends by cancellation (the actor is shutting down) or by failing."""
        if task.cancelled():
            return
        log.critical("the step loop of %s failed; exiting so that Ray restarts this instance",
                     self.spec.instance_id, exc_info=task.exception())
        logging.shutdown()
        os._exit(LOOP_FAILED_EXIT)

    def _route(self, chunks: list[GenerationChunk]) -> None:
        for chunk in chunks:
            gw = self._owner.get(chunk.request_id)
            if gw is None:
                continue  # aborted by its gateway meanwhile
            if chunk.finish_reason is not None:
                del self._owner[chunk.request_id]
            self._outbox[gw].append(chunk)
            self._ready[gw].set()

    def _step_loop(self) -> StepLoop:
        if self._loop is None:
            raise RuntimeError("InstanceActor.start() must be called first")
        return self._loop

    async def add_requests(self, gateway_id: str, requests: list[EngineRequest]) -> list[str | None]:
        loop = self._step_loop()
        errors: list[str | None] = []
        for req in requests:
            try:
                loop.submit(req)
            except ValueError as e:
                errors.append(str(e))
                continue
            self._owner[req.request_id] = gateway_id
            errors.append(None)
        return errors

    async def abort(self, request_ids: list[str]) -> None:
        loop = self._step_loop()
        for rid in request_ids:
            self._owner.pop(rid, None)
            loop.abort(rid)

    async def next_outputs(self, gateway_id: str, timeout_s: float) -> tuple[list[GenerationChunk], InstanceStats]:
        loop = self._step_loop()
        ready = self._ready[gateway_id]
        if not self._outbox[gateway_id]:
            try:
                await asyncio.wait_for(ready.wait(), timeout_s)
            except TimeoutError:
                pass  # an empty answer still carries fresh stats
        ready.clear()
        chunks, self._outbox[gateway_id] = self._outbox[gateway_id], []
        return chunks, loop.stats()

    # ---- migration verbs ------------------------------------------------------------------------
    async def migration_candidates(self) -> list[MigrationCandidate]:
        return await self._step_loop().call(lambda r: r.engine.migration_candidates())

    async def describe(self, request_id: str) -> MigrationCandidate:
        """The request as a migration candidate (TransferRefused `finished` if not here)."""
        return await self._step_loop().call(lambda r: r.describe(request_id))

    async def export_stage(self, request_id: str, first_block: int, max_blocks: int | None = None) -> KVPages:
        return await self._step_loop().call(lambda r: r.export_stage(request_id, first_block, max_blocks))

    async def suspend(self, request_id: str, first_block: int) -> MigrationPayload:
        payload = await self._step_loop().call(lambda r: r.suspend(request_id, first_block))
        payload.owner = self._owner.get(request_id, "")
        if payload.owner:
            payload.chunks = [c for c in self._outbox[payload.owner] if c.request_id == request_id]
        return payload

    async def resume(self, request_id: str) -> bool:
        return await self._step_loop().call(lambda r: r.resume(request_id))

    async def release_migrated(self, request_id: str) -> bool:
        """The request now runs elsewhere; False if it had been aborted here meanwhile."""
        self._owner.pop(request_id, None)
        return await self._step_loop().call(lambda r: r.release_migrated(request_id))

    async def reserve(self, request_id: str, model: str, num_tokens: int) -> list[int]:
        return await self._step_loop().call(lambda r: r.reserve(request_id, model, num_tokens))

    async def import_stage(self, pages: KVPages) -> StageAck:
        return await self._step_loop().call(lambda r: r.import_stage(pages))

    async def hold(self, request_id: str, seconds: float) -> None:
        """Start no step until `request_id` is committed or abandoned here, or `seconds` pass."""
        await self._step_loop().hold(request_id, seconds)

    async def commit(self, payload: MigrationPayload) -> StageAck | None:
        rid = payload.state.request.request_id
        loop = self._step_loop()
        try:
            ack = await loop.call(lambda r: r.commit(payload))
        finally:
            loop.unhold(rid)
        if payload.owner:
            self._owner[rid] = payload.owner
            self._route(payload.chunks)
        return ack

    async def abandon(self, request_id: str) -> None:
        """Undo this destination's part of a failed migration: free the reservation, or drop the
        request silently if a commit went through after all (the source resumes it)."""
        self._owner.pop(request_id, None)
        loop = self._step_loop()
        loop.unhold(request_id)
        await loop.call(lambda r: r.cancel_reservation(request_id) or r.abort(request_id))

    async def set_draining(self, draining: bool) -> InstanceStats:
        await self._step_loop().call(lambda r: r.engine.set_draining(draining))
        return self._step_loop().stats()


RemoteInstanceActor = ray.remote(max_restarts=-1)(InstanceActor)
"""Restarted by Ray whenever its process dies (the gateway starts it again and it serves empty)."""
