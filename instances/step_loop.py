"""Drive a `Replica` from asyncio.

Calls from outside (submit, abort) only queue work; the loop applies it between steps. A step runs
either in a worker thread, so the owner's event loop keeps answering while torch computes (the
in-process runtime, where the gateway shares the loop), or inline on the loop (`inline=True`, an
instance actor whose loop only serves the gateway's calls). Inline is faster where the step is
mostly Python: a worker thread and the loop fight over the GIL, and on this repository's 2-core
test machine that doubled the time per output token at load (docs/benchmarks.md, "Simulator
fidelity"). Inline, calls that arrive during a step wait for its end, which is when they would take
effect anyway. The replica is touched by one thread at a time: `apply` and `step` never overlap.

A step that schedules nothing (every block is held by reservations or suspended requests) leaves
the loop waiting for a change (an add, an abort, a call, the watchdog) instead of stepping again.

`call(fn)` runs `fn(replica)` between two steps (at once when no step is running) and returns its
result: the migration verbs go through it. While a destination holds reservations, the loop wakes
at least every `engine.reservation_timeout_s` to run the reservation watchdog. `hold(key, s)` keeps
the loop from starting a step, from the next step boundary, until `unhold(key)` or `s` seconds
pass (a transfer's destination waiting for the request it is about to commit); calls still run
meanwhile, at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from instances.replica import Replica
from instances.types import EngineRequest, GenerationChunk, InstanceStats

_YIELD_ROUNDS = 4
T = TypeVar("T")


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
        self._stepping = False
        self._calls: list[tuple[Callable[[Replica], object], asyncio.Future]] = []
        self._holds: dict[str, float] = {}  # key -> the loop time the hold ends
        self._unheld = asyncio.Event()
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

    async def call(self, fn: Callable[[Replica], T]) -> T:
        """Run `fn(replica)` between two steps and return its result (its exception propagates).
        The snapshot is refreshed after it and the loop woken (it may have added work)."""
        if not self._stepping:
            return self._run_call(fn)
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._calls.append((fn, fut))
        return await fut

    async def hold(self, key: str, seconds: float) -> None:
        """From the next step boundary, start no step until `unhold(key)` or `seconds` pass;
        returns once the hold is in place."""
        loop = asyncio.get_running_loop()
        await self.call(lambda _: self._holds.__setitem__(key, loop.time() + seconds))

    def unhold(self, key: str) -> None:
        """End the hold `key` (no-op without one)."""
        if self._holds.pop(key, None) is not None:
            self._unheld.set()

    async def _wait_for_holds(self) -> None:
        """Return once no hold is in place (each ends by `unhold` or at its deadline)."""
        loop = asyncio.get_running_loop()
        while self._holds:
            now = loop.time()
            for key in [k for k, end in self._holds.items() if end <= now]:
                del self._holds[key]
            if not self._holds:
                return
            self._unheld.clear()
            with contextlib.suppress(TimeoutError):  # a deadline passed: the loop above drops it
                await asyncio.wait_for(self._unheld.wait(), min(self._holds.values()) - now)

    def _run_call(self, fn: Callable[[Replica], T]) -> T:
        try:
            return fn(self.replica)
        finally:
            self._stats = self.replica.stats()
            self._wake.set()

    def _run_calls(self) -> None:
        calls, self._calls = self._calls, []
        for fn, fut in calls:
            if fut.cancelled():
                continue
            try:
                fut.set_result(self._run_call(fn))
            except Exception as e:  # noqa: BLE001 - handed to the caller, who awaits the future
                fut.set_exception(e)

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
        engine = self.replica.engine
        stalled = False  # the last step scheduled nothing: wait for a change rather than spin
        try:
            while True:
                if stalled or not (self._adds or self._aborts or self.replica.has_work()):
                    if not stalled:
                        self._wake.clear()
                    if engine.has_reservations:  # wake for the watchdog
                        with contextlib.suppress(TimeoutError):  # a timeout is the point here
                            await asyncio.wait_for(self._wake.wait(), engine.config.reservation_timeout_s)
                    else:
                        await self._wake.wait()
                    stalled = False
                if self._holds:
                    await self._wait_for_holds()
                if engine.has_reservations:
                    engine.expire_reservations()
                self._apply()
                if self.replica.has_work():
                    steps = self._stats.steps
                    self._wake.clear()  # what happens from here on wakes a stalled loop
                    if self._pool is None:
                        chunks = self._step()
                    else:
                        self._stepping = True
                        try:
                            chunks = await loop.run_in_executor(self._pool, self._step)
                        finally:
                            self._stepping = False
                    if chunks:
                        self.on_chunks(chunks)
                    # nothing fit (blocks held by reservations or suspended requests): only a call,
                    # an add, an abort or the watchdog can change that
                    stalled = not chunks and self._stats.steps == steps
                    self._run_calls()  # calls that came during the step, after its chunks are out
                    if self._pool is None:
                        await _let_the_loop_run()
        finally:
            for _, fut in self._calls:
                if not fut.done():
                    fut.set_exception(RuntimeError(f"the step loop of {engine.instance_id} stopped"))
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
