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
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

import ray

from instances.replica import Replica, ReplicaSpec
from instances.step_loop import StepLoop
from instances.types import EngineRequest, GenerationChunk, InstanceStats


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
        return self._loop.stats()

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
        if self._task is not None and self._task.done():
            raise RuntimeError(f"step loop of {self.spec.instance_id} stopped: {self._task.exception()!r}")
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


RemoteInstanceActor = ray.remote(InstanceActor)
