"""Driving the transfer core over real engines, whatever runs them (asyncio).

`run_transfer` carries a `Transfer`'s actions out on two `TransferEndpoint`s (`endpoint.py`: Ray
actors, in-process step loops, test fakes) and feeds the answers back.

Two things keep the stop-and-copy short. Pages and payloads pass from the source's verb to the
destination's as handles (on Ray, object refs: the driver never holds them). And before the
source suspends the request, the destination is asked to `hold` its next step (for at most
`hold_s`): the request's state then finds it between two steps and joins its very next one, so
the request misses at most the source's step in progress rather than that plus the destination's.
The price is the destination's: its other requests wait, once per transfer, for the rest of the
source's step in progress (`docs/benchmarks.md`, "Migration downtime").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from controlplane.transfer import protocol as tp
from controlplane.transfer.core import Transfer
from controlplane.transfer.endpoint import TransferEndpoint
from flotilla.errors import InstanceUnavailable, TransferRefused

T = TypeVar("T")
log = logging.getLogger(__name__)


async def run_transfer(
    transfer: Transfer, src: TransferEndpoint, dst: TransferEndpoint, *, model: str, hold_s: float,
    clock: Callable[[], float], on_commit: Callable[[], None] = lambda: None,
) -> tp.TransferOutcome:
    """Carry `transfer` out from `src` to `dst` (engines serving `model`) and return its outcome;
    never raises for a failed transfer. `on_commit` runs once the request runs on `dst`, before
    the source releases it. Each call may take `transfer.settings.transfer_timeout_s`."""
    driver = _Driver(transfer, src, dst, model, hold_s, clock)
    actions = transfer.start(clock())
    while True:
        forward: tp.Action | None = None
        for action in actions:
            if isinstance(action, tp.UNDO):
                await driver.undo(action)
            else:
                forward = action
        if forward is None:
            break
        event = await driver.forward(forward)
        if isinstance(event, tp.Committed):
            on_commit()
        actions = transfer.on(event)
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

    async def forward(self, action: tp.Action) -> tp.Event:
        """Carry out a forward action; the event that answers it (a failure event on failure)."""
        try:
            return await self._forward(action)
        except TransferRefused as e:
            return tp.Refused(self.clock(), e.reason, e.message)
        except TimeoutError:
            return tp.TimedOut(self.clock(), f"a call took over {self.t.settings.transfer_timeout_s} s")
        except InstanceUnavailable as e:
            return tp.PeerLost(self.clock(), e.message)
        except asyncio.CancelledError:
            await self.cancelled()
            raise

    async def _forward(self, action: tp.Action) -> tp.Event:
        rid, src, dst = self.rid, self.src, self.dst
        if isinstance(action, tp.Describe):
            cand = await self._call(src.describe(rid))
            return tp.Described(self.clock(), cand.running, cand.num_tokens)
        if isinstance(action, tp.Reserve):
            await self._call(dst.reserve(rid, self.model, action.num_tokens))
            return tp.Reserved(self.clock())
        if isinstance(action, tp.CopyStage):
            first, blocks, nbytes = action.first, 0, 0
            chunk = self.t.settings.stage_chunk_blocks
            while True:  # in calls of at most `chunk` blocks: the source steps between them
                ack = await self._call(dst.import_stage(src.export_stage(rid, first, chunk)))
                blocks, nbytes = blocks + ack.num_pages, nbytes + ack.nbytes
                if ack.remaining <= 0:
                    return tp.StageCopied(self.clock(), ack.full_blocks, ack.source_blocks, blocks, nbytes)
                first = ack.first_block + ack.num_pages
        if isinstance(action, tp.AwaitStep):
            return tp.StepDone(self.clock())  # an engine's verbs always run between its steps
        if isinstance(action, tp.StopAndCopy):
            await self._call(dst.hold(rid, self.hold_s))
            self.t.on(tp.Suspended(self.clock()))
            ack = await self._call(dst.commit(src.suspend(rid, action.first)))
            pages, nbytes = (0, 0) if ack is None else (ack.num_pages, ack.nbytes)
            return tp.Committed(self.clock(), pages, nbytes)
        if isinstance(action, tp.Release):
            return tp.Released(self.clock(), await self._call(src.release(rid)))
        raise TypeError(f"not a forward action: {action!r}")

    async def undo(self, action: tp.Action) -> None:
        """Carry out an undo action, best effort: a failure is logged (a destination's watchdog
        frees a reservation nobody abandons; a dead source takes its request with it)."""
        endpoint, verb = {tp.Abandon: (self.dst, "abandon"), tp.Resume: (self.src, "resume"),
                          tp.AbortDestination: (self.dst, "abort")}[type(action)]
        try:
            await self._call(getattr(endpoint, verb)(self.rid))
        except (TransferRefused, TimeoutError, InstanceUnavailable) as e:
            why = getattr(e, "message", None) or type(e).__name__
            log.warning("%s of %s failed: %s", verb, self.rid, why)

    async def cancelled(self) -> None:
        """The driving task was cancelled mid-call: call the transfer off (shielded, best effort)."""
        for action in self.t.on(tp.Abort(self.clock(), "the migrating task was cancelled")):
            await asyncio.shield(self.undo(action))
