"""Carrying out one live migration between two instance actors (the mechanism; policies decide).

The protocol, for a request `r` from `S` to `D` (`MigrationOrder`):
1. `S.describe(r)`: its size and whether it runs or waits; a queued request skips to step 3.
2. `D.reserve(r, model, tokens)`: blocks on D, or a refusal (draining, no room, full, wrong model).
   Then stages: `D.import_stage(S.export_stage(r, first, chunk))`, each sending the blocks written
   since the previous stage (the first sends them all) while S keeps decoding `r`, in calls of at
   most `stage_chunk_blocks` blocks so that S's steps run between them (one call for a whole long
   sequence stalled S's other requests for seconds); the pages go through Ray's object store
   straight from S to D. Stages end when the last one sent at most
   `last_stage_blocks` pages, or after `max_stages`.
3. Stop and copy: `D.commit(S.suspend(r, first))`: S takes `r` out of its batch at a step boundary
   and hands over its state and last pages; D checks them and `r` joins its running batch with
   the same sampling state. The downtime is the time from the suspend call to the commit's answer.
4. `on_commit(order)` (the gateway's streams now expect `r` from D), then `S.release_migrated(r)`;
   if `r` had been aborted on S meanwhile, it is aborted on D too.
Any failure or timeout (`transfer_timeout_s` per call) before the commit answers leaves `r` on S:
D abandons its part (frees the reservation, or drops `r` if a commit went through late) and S
resumes `r` if it was suspended. D's watchdog frees a reservation whose calls stop coming.

At most `max_in_flight` migrations touch an instance at once (as source or destination), and a
request is in at most one migration; further orders are refused with `MigrationBusy`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from ray.exceptions import RayError

from controlplane.scheduling.migration import MigrationOrder
from flotilla.errors import MigrationBusy
from instances.engine.migration import MigrationRefused

T = TypeVar("T")
log = logging.getLogger(__name__)


class MigrationObserver(Protocol):
    """Told of every migration's start and outcome (metrics, tests)."""

    def migration_started(self, order: MigrationOrder) -> None: ...

    def migration_finished(self, outcome: MigrationOutcome) -> None: ...


@dataclass(frozen=True)
class MigrationSettings:
    """How stages end and how much runs at once (the `migration` config section)."""

    last_stage_blocks: int = 2
    max_stages: int = 4
    max_in_flight: int = 2
    transfer_timeout_s: float = 10.0
    stage_chunk_blocks: int = 32  # blocks per copy call within a stage


@dataclass(frozen=True)
class MigrationOutcome:
    """What became of one order. `result` is `committed`, or why it was aborted: `refused`
    (the destination said no, `detail` says why), `finished` (the request ended first),
    `timeout`, `failed` (an instance died or a call failed; `detail` has the error)."""

    order: MigrationOrder
    result: str
    detail: str = ""
    stages: int = 0
    blocks: int = 0
    bytes: int = 0
    downtime_s: float = 0.0

    @property
    def committed(self) -> bool:
        return self.result == "committed"


class _Aborted(Exception):
    def __init__(self, result: str, detail: str) -> None:
        super().__init__(detail)
        self.result = result
        self.detail = detail


class Migrator:
    """Runs migrations between the instance actors in `handles` (instance id -> actor handle)."""

    def __init__(
        self,
        handles: Mapping[str, Any],
        model: str,
        settings: MigrationSettings,
        on_commit: Callable[[MigrationOrder], None],
        observers: Sequence[MigrationObserver] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.handles = handles
        self.model = model
        self.settings = settings
        self.on_commit = on_commit
        self.observers = observers  # read at each event: the owner may add observers later
        self.clock = clock
        self.in_flight: Counter[str] = Counter()
        self._requests: set[str] = set()

    def admit(self, order: MigrationOrder) -> None:
        """Raise MigrationBusy (or KeyError for an unknown instance) if `order` cannot start now."""
        for iid in (order.source, order.destination):
            if iid not in self.handles:
                raise KeyError(iid)
        if order.source == order.destination:
            raise MigrationBusy(f"request {order.request_id} is already on {order.source}")
        if order.request_id in self._requests:
            raise MigrationBusy(f"request {order.request_id} is already being migrated")
        for iid in (order.source, order.destination):
            if self.in_flight[iid] >= self.settings.max_in_flight:
                raise MigrationBusy(f"instance {iid} already has {self.settings.max_in_flight} "
                                    "migrations in flight; retry later")

    async def migrate(self, order: MigrationOrder) -> MigrationOutcome:
        """Carry out `order` (after `admit`, which it calls); never raises for a failed migration,
        whose outcome says what happened."""
        self.admit(order)
        for observer in self.observers:
            observer.migration_started(order)
        self._requests.add(order.request_id)
        self.in_flight[order.source] += 1
        self.in_flight[order.destination] += 1
        try:
            outcome = await self._run(order)
        finally:
            self._requests.discard(order.request_id)
            self.in_flight[order.source] -= 1
            self.in_flight[order.destination] -= 1
        for observer in self.observers:
            observer.migration_finished(outcome)
        return outcome

    async def _call(self, awaitable: Awaitable[T]) -> T:
        try:
            return await asyncio.wait_for(awaitable, self.settings.transfer_timeout_s)
        except MigrationRefused as e:
            raise _Aborted("finished" if e.reason == "unknown" else "refused", e.message) from e
        except TimeoutError as e:
            raise _Aborted("timeout", f"a call took over {self.settings.transfer_timeout_s} s") from e
        except RayError as e:
            raise _Aborted("failed", f"{type(e).__name__}: {str(e).splitlines()[0][:200]}") from e

    async def _run(self, order: MigrationOrder) -> MigrationOutcome:
        src, dst = self.handles[order.source], self.handles[order.destination]
        rid = order.request_id
        stages = blocks = nbytes = 0
        reserved = suspended = False
        try:
            cand = await self._call(src.describe.remote(rid))
            first = 0
            if cand.running:
                await self._call(dst.reserve.remote(rid, self.model, cand.num_tokens))
                reserved = True
                chunk = self.settings.stage_chunk_blocks
                while stages < self.settings.max_stages:
                    sent = 0
                    while True:  # one stage, in chunks: the source steps between them
                        ack = await self._call(dst.import_stage.remote(src.export_stage.remote(rid, first, chunk)))
                        sent += ack.num_pages
                        blocks += ack.num_pages
                        nbytes += ack.nbytes
                        if ack.remaining <= 0:
                            break
                        first = ack.first_block + ack.num_pages
                    stages += 1
                    first = ack.full_blocks
                    if sent <= self.settings.last_stage_blocks:
                        break
            t0 = self.clock()
            suspended = True
            payload = src.suspend.remote(rid, first)
            ack = await self._call(dst.commit.remote(payload))
            downtime = self.clock() - t0
        except _Aborted as e:
            await self._undo(src, dst, rid, reserved, suspended)
            return MigrationOutcome(order, e.result, e.detail, stages, blocks, nbytes)
        self.on_commit(order)
        if ack is not None:
            blocks += ack.num_pages
            nbytes += ack.nbytes
        if not await self._release(src, dst, rid):
            return MigrationOutcome(order, "finished", "aborted on the source during the migration",
                                    stages, blocks, nbytes, downtime)
        return MigrationOutcome(order, "committed", "", stages + 1, blocks, nbytes, downtime)

    async def _release(self, src: Any, dst: Any, rid: str) -> bool:
        """Release on the source; if the request was aborted there meanwhile, abort it on D."""
        try:
            released = await self._call(src.release_migrated.remote(rid))
        except _Aborted as e:
            log.warning("release of %s on its source failed (%s); it runs on the destination", rid, e.detail)
            return True
        if not released:
            await dst.abort.remote([rid])
        return released

    async def _undo(self, src: Any, dst: Any, rid: str, reserved: bool, suspended: bool) -> None:
        """Leave the request running on the source after a failure before the commit."""
        if reserved or suspended:
            try:
                await self._call(dst.abandon.remote(rid))
            except _Aborted as e:  # the destination is gone, or slow: its watchdog frees the reservation
                log.warning("abandoning %s on the destination failed: %s", rid, e.detail)
        if suspended:
            try:
                await self._call(src.resume.remote(rid))
            except _Aborted as e:  # the source is gone: its streams fail with it
                log.warning("resuming %s on the source failed: %s", rid, e.detail)
