"""Driving the transfer core over real engines, whatever runs them (asyncio).

`TransferEndpoint` is one engine's side of a transfer as a driver calls it; `RayEndpoint` (an
instance actor, `controlplane/runtime/ray_endpoint.py`) and `LoopEndpoint` (an in-process step
loop, `controlplane/runtime/local.py`) implement it, and so do the tests' fakes. `run_transfer`
carries a `Transfer`'s actions out on two endpoints and feeds the answers back.

Two things keep the stop-and-copy short. Pages and payloads are opaque handles that the source's
verb returns and the destination's verb takes: Ray passes object refs, so pages travel from source
to destination without passing through the driver. And before the source suspends the request,
the destination is asked to `hold` its next step (for at most `hold_s`): the request's state then
finds it between two steps and joins its very next one, so the request misses at most the
source's step in progress rather than that plus the destination's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from controlplane.transfer.core import Transfer
from controlplane.transfer.protocol import (
    UNDO,
    Abandon,
    Abort,
    AbortDestination,
    Action,
    AwaitStep,
    Committed,
    CopyStage,
    Describe,
    Described,
    Event,
    PeerLost,
    Refused,
    Release,
    Released,
    Reserve,
    Reserved,
    Resume,
    StageCopied,
    StepDone,
    StopAndCopy,
    Suspended,
    TimedOut,
    TransferOutcome,
)
from flotilla.errors import InstanceUnavailable, TransferRefused

if TYPE_CHECKING:
    from instances.replica import StageAck
    from instances.types import MigrationCandidate

T = TypeVar("T")
log = logging.getLogger(__name__)


class TransferEndpoint(Protocol):
    """One engine's transfer verbs (`instances/replica.py` has their meaning), called by a driver.
    Each runs between two of that engine's steps. Refusals raise `TransferRefused`; an engine that
    is gone or broken raises `InstanceUnavailable`."""

    async def describe(self, request_id: str) -> MigrationCandidate: ...

    async def reserve(self, request_id: str, model: str, num_tokens: int) -> None: ...

    def export_stage(self, request_id: str, first_block: int, max_blocks: int) -> Any:
        """The pages' handle, for the destination's `import_stage` (its errors surface there)."""
        ...

    async def import_stage(self, pages: Any) -> StageAck: ...

    async def hold(self, request_id: str, seconds: float) -> None:
        """Start no new step, from the next step boundary, until `request_id` is committed or
        abandoned here or `seconds` pass (the call returns once the hold is in place)."""
        ...

    def suspend(self, request_id: str, first_block: int) -> Any:
        """The payload's handle, for the destination's `commit` (its errors surface there)."""
        ...

    async def commit(self, payload: Any) -> StageAck | None: ...

    async def release(self, request_id: str) -> bool: ...

    async def resume(self, request_id: str) -> bool: ...

    async def abandon(self, request_id: str) -> None: ...

    async def abort(self, request_id: str) -> None: ...


async def run_transfer(
    transfer: Transfer, src: TransferEndpoint, dst: TransferEndpoint, *, model: str, hold_s: float,
    clock: Callable[[], float], on_commit: Callable[[], None] = lambda: None,
) -> TransferOutcome:
    """Carry `transfer` out from `src` to `dst` (engines serving `model`) and return its outcome;
    never raises for a failed transfer. `on_commit` runs once the request runs on `dst`, before
    the source releases it. Each call may take `transfer.settings.transfer_timeout_s`."""
    driver = _Driver(transfer, src, dst, model, hold_s, clock)
    actions = transfer.start(clock())
    while True:
        forward: Action | None = None
        for action in actions:
            if isinstance(action, UNDO):
                await driver.undo(action)
            else:
                forward = action
        if forward is None:
            break
        if isinstance(forward, Release):
            on_commit()
        actions = transfer.on(await driver.forward(forward))
    assert transfer.outcome is not None
    return transfer.outcome


class _Driver:
    def __init__(self, transfer: Transfer, src: TransferEndpoint, dst: TransferEndpoint, model: str,
                 hold_s: float, clock: Callable[[], float]) -> None:
        self.t = transfer
        self.rid = transfer.order.request_id
        self.src, self.dst, self.model, self.hold_s, self.clock = src, dst, model, hold_s, clock

    async def _call(self, awaitable: Awaitable[T]) -> T:
        return await asyncio.wait_for(awaitable, self.t.settings.transfer_timeout_s)

    async def forward(self, action: Action) -> Event:
        """Carry out a forward action; the event that answers it (a failure event on failure)."""
        try:
            return await self._forward(action)
        except TransferRefused as e:
            return Refused(self.clock(), e.reason, e.message)
        except TimeoutError:
            return TimedOut(self.clock(), f"a call took over {self.t.settings.transfer_timeout_s} s")
        except InstanceUnavailable as e:
            return PeerLost(self.clock(), e.message)
        except asyncio.CancelledError:
            await self.cancelled()
            raise

    async def _forward(self, action: Action) -> Event:
        rid, src, dst = self.rid, self.src, self.dst
        if isinstance(action, Describe):
            cand = await self._call(src.describe(rid))
            return Described(self.clock(), cand.running, cand.num_tokens)
        if isinstance(action, Reserve):
            await self._call(dst.reserve(rid, self.model, action.num_tokens))
            return Reserved(self.clock())
        if isinstance(action, CopyStage):
            first, blocks, nbytes = action.first, 0, 0
            chunk = self.t.settings.stage_chunk_blocks
            while True:  # in calls of at most `chunk` blocks: the source steps between them
                ack = await self._call(dst.import_stage(src.export_stage(rid, first, chunk)))
                blocks, nbytes = blocks + ack.num_pages, nbytes + ack.nbytes
                if ack.remaining <= 0:
                    return StageCopied(self.clock(), ack.full_blocks, ack.source_blocks, blocks, nbytes)
                first = ack.first_block + ack.num_pages
        if isinstance(action, AwaitStep):
            return StepDone(self.clock())  # an engine's verbs always run between its steps
        if isinstance(action, StopAndCopy):
            await self._call(dst.hold(rid, self.hold_s))
            self.t.on(Suspended(self.clock()))
            ack = await self._call(dst.commit(src.suspend(rid, action.first)))
            return Committed(self.clock(), 0 if ack is None else ack.num_pages, 0 if ack is None else ack.nbytes)
        if isinstance(action, Release):
            return Released(self.clock(), await self._call(src.release(rid)))
        raise TypeError(f"not a forward action: {action!r}")

    async def undo(self, action: Action) -> None:
        """Carry out an undo action, best effort: a failure is logged (a destination's watchdog
        frees a reservation nobody abandons; a dead source takes its request with it)."""
        endpoint, verb = {Abandon: (self.dst, "abandon"), Resume: (self.src, "resume"),
                          AbortDestination: (self.dst, "abort")}[type(action)]
        try:
            await self._call(getattr(endpoint, verb)(self.rid))
        except (TransferRefused, TimeoutError, InstanceUnavailable) as e:
            log.warning("%s of %s failed: %s", verb, self.rid, getattr(e, "message", None) or type(e).__name__)

    async def cancelled(self) -> None:
        """The driving task was cancelled mid-call: call the transfer off (shielded, best effort)."""
        for action in self.t.on(Abort(self.clock(), "the migrating task was cancelled")):
            await asyncio.shield(self.undo(action))
