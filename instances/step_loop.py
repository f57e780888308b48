"""Drive a `Replica` from asyncio without blocking the event loop.

Calls from outside (submit, abort) only queue work; the loop applies it between steps, and each
step runs in a worker thread, so the owner's event loop keeps answering while torch computes. The
replica is touched by one thread at a time: `apply` and `step` never overlap.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from instances.replica import Replica
from instances.types import EngineRequest, GenerationChunk, InstanceStats


class StepLoop:
    """Steps one replica while it has work; sleeps otherwise."""

    def __init__(self, replica: Replica, on_chunks: Callable[[list[GenerationChunk]], None]) -> None:
        self.replica = replica
        self.on_chunks = on_chunks
        self._adds: dict[str, EngineRequest] = {}
        self._aborts: list[str] = []
        self._wake = asyncio.Event()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine-step")
        self._stats = replica.stats()

    def submit(self, req: EngineRequest) -> None:
        """Queue `req`; raises ValueError (user-facing) at once if it can never run here."""
        if req.request_id in self._adds:
            raise ValueError(f"request id {req.request_id!r} is already in this engine")
        self.replica.engine.check(req)
        self._adds[req.request_id] = req
        self._wake.set()

    def abort(self, request_id: str) -> None:
        self._aborts.append(request_id)
        self._wake.set()

    def stats(self) -> InstanceStats:
        """The snapshot taken after the latest step (or at start)."""
        return self._stats

    def _apply(self) -> None:
        adds, self._adds = self._adds, {}
        aborts, self._aborts = self._aborts, []
        for req in adds.values():
            self.replica.add(req)
        for rid in aborts:
            self.replica.abort(rid)

    def _step(self) -> list[GenerationChunk]:
        chunks = self.replica.step()
        self._stats = self.replica.stats()
        return chunks

    async def run(self) -> None:
        """Run until cancelled."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not (self._adds or self._aborts or self.replica.has_work()):
                    self._wake.clear()
                    await self._wake.wait()
                self._apply()
                if self.replica.has_work():
                    chunks = await loop.run_in_executor(self._pool, self._step)
                    if chunks:
                        self.on_chunks(chunks)
        finally:
            self._pool.shutdown(wait=False, cancel_futures=True)
