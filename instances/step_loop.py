"""Drive a `Replica` from asyncio.

Calls from outside (submit, abort) only queue work; the loop applies it between steps. A step runs
either in a worker thread, so the owner's event loop keeps answering while torch computes (the
in-process runtime, where the gateway shares the loop), or inline on the loop (`inline=True`, an
instance actor whose loop only serves the gateway's calls). Inline is faster where the step is
mostly Python: a worker thread and the loop fight over the GIL, and on this repository's 2-core
test machine that doubled the time per output token at load (docs/benchmarks.md, "Simulator
fidelity"). Inline, calls that arrive during a step wait for its end, which is when they would take
effect anyway. The replica is touched by one thread at a time: `apply` and `step` never overlap.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from instances.replica import Replica
from instances.types import EngineRequest, GenerationChunk, InstanceStats

_YIELD_ROUNDS = 4


async def _let_the_loop_run() -> None:
    """Between two inline steps, give the event loop a few rounds: a poll that the step's chunks
    woke needs several (its task resumes and returns, then the caller's completion callback runs),
    and its reply should leave before the next step blocks the loop."""
    for _ in range(_YIELD_ROUNDS):
        await asyncio.sleep(0)


class StepLoop:
    """Steps one replica while it has work; sleeps otherwise."""

    def __init__(
        self, replica: Replica, on_chunks: Callable[[list[GenerationChunk]], None], *, inline: bool = False
    ) -> None:
        self.replica = replica
        self.on_chunks = on_chunks
        self._adds: dict[str, EngineRequest] = {}
        self._aborts: list[str] = []
        self._wake = asyncio.Event()
        self._pool = None if inline else ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine-step")
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
                    if self._pool is None:
                        chunks = self._step()
                    else:
                        chunks = await loop.run_in_executor(self._pool, self._step)
                    if chunks:
                        self.on_chunks(chunks)
                    if self._pool is None:
                        await _let_the_loop_run()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
