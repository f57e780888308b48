"""The transfer core: moving one request's KV pages from a source engine to a destination engine.

A pure state machine (events in, actions out: `protocol.py`). It never sleeps, reads a clock or
calls an instance; drivers do (`controlplane/transfer/driver.py` over real instances, in-process or
Ray actors; `controlplane/runtime/sim/migration.py` in virtual time). Live migration is its first
user; a prefill-to-decode handoff is the same transfer with `max_stages = 0` (everything moves in
the stop-and-copy), and a restore from a KV tier one whose source endpoint is the tier.

The protocol, for request `r` (`MigrationOrder`: source, destination):

    DESCRIBING  Describe -> Described(running?)        queued: straight to the stop-and-copy
    RESERVING   Reserve(tokens) -> Reserved            the destination holds blocks for r
    COPYING     CopyStage(first) -> StageCopied        pages copied while r keeps decoding; another
                                                       stage while more than `last_stage_blocks`
                                                       are left and fewer than `max_stages` ran
    WAITING     AwaitStep -> StepDone                  the source is between two steps
    STOPPING    StopAndCopy(first) -> Suspended,       r leaves the source's batch; its state and last
                Committed                              pages go to the destination, where it runs next
    RELEASING   Release -> Released                    the source frees r (False: r had been aborted
                                                       there meanwhile: abort it on the destination)
    DONE        outcome

Any failure before the commit leaves `r` where it was, with these undo actions:

| phase | `Refused` (destination) | source gone (`finished`, `preempted`) | `TimedOut`, `PeerLost`, `Abort` |
|---|---|---|---|
| DESCRIBING | - | - | - |
| RESERVING | - | - | Abandon (a late reservation) |
| COPYING, WAITING | Abandon | Abandon | Abandon |
| STOPPING | Abandon, Resume | Abandon (it was never suspended) | Abandon, Resume |

After the commit nothing is undone: a failed release leaves `r` running on the destination (the
source's copy is freed with its instance, or by the next release). Events after the end are ignored.
"""

from __future__ import annotations

import enum

from controlplane.scheduling.migration import MigrationOrder
from controlplane.transfer import protocol as tp
from controlplane.transfer.settings import TransferSettings


class Phase(enum.Enum):
    NEW = "new"
    DESCRIBING = "describing"
    RESERVING = "reserving"
    COPYING = "copying"
    WAITING = "waiting"
    STOPPING = "stopping"
    RELEASING = "releasing"
    DONE = "done"


class Transfer:
    """One transfer of `order.request_id` from `order.source` to `order.destination`.

    `start(now)` gives the first actions; `on(event)` takes each event a driver reports and gives
    the next actions, undo actions first and at most one forward action, last. `outcome` is set
    once `phase` is DONE."""

    def __init__(self, order: MigrationOrder, settings: TransferSettings) -> None:
        self.order = order
        self.settings = settings
        self.phase = Phase.NEW
        self.queued = False  # the request was queued at the start: no reservation, no pages copied
        self.suspended_at: float | None = None
        self.copied = 0  # leading blocks the destination holds final copies of
        self.stages = 0
        self.blocks = 0
        self.nbytes = 0
        self.downtime_s = 0.0
        self.outcome: tp.TransferOutcome | None = None

    @property
    def done(self) -> bool:
        return self.phase is Phase.DONE

    def start(self, now: float) -> list[tp.Action]:
        if self.phase is not Phase.NEW:
            raise RuntimeError(f"transfer of {self.order.request_id} already started")
        self.phase = Phase.DESCRIBING
        return [tp.Describe()]

    def on(self, event: tp.Event) -> list[tp.Action]:
        phase = self.phase
        if phase is Phase.DONE:
            return []
        if phase is Phase.NEW:
            raise RuntimeError(f"transfer of {self.order.request_id}: {type(event).__name__} before start")
        if isinstance(event, (tp.Refused, tp.PeerLost, tp.TimedOut, tp.Abort)):
            return self._failure(event)
        if isinstance(event, tp.Described) and phase is Phase.DESCRIBING:
            if not event.running:
                self.queued = True
                return self._stop_and_copy()
            self.phase = Phase.RESERVING
            return [tp.Reserve(event.num_tokens)]
        if isinstance(event, tp.Reserved) and phase is Phase.RESERVING:
            return self._copy_or_stop()
        if isinstance(event, tp.StageCopied) and phase is Phase.COPYING:
            self.stages += 1
            self.copied = event.copied
            self.blocks += event.blocks
            self.nbytes += event.nbytes
            return self._copy_or_stop(event.source_blocks - event.copied)
        if isinstance(event, tp.StepDone) and phase is Phase.WAITING:
            return self._stop_and_copy()
        if isinstance(event, tp.Suspended) and phase is Phase.STOPPING:
            self.suspended_at = event.now
            return []
        if isinstance(event, tp.Committed) and phase is Phase.STOPPING:
            self.blocks += event.blocks
            self.nbytes += event.nbytes
            self.downtime_s = event.now - (self.suspended_at if self.suspended_at is not None else event.now)
            self.phase = Phase.RELEASING
            return [tp.Release()]
        if isinstance(event, tp.Released) and phase is Phase.RELEASING:
            if event.released:
                self._end("committed")
                return []
            self._end("finished", detail="aborted on the source during the migration")
            return [tp.AbortDestination()]
        raise RuntimeError(f"transfer of {self.order.request_id}: unexpected {type(event).__name__} "
                           f"while {phase.value}")

    # ---- transitions -----------------------------------------------------------------------------
    def _copy_or_stop(self, left: int | None = None) -> list[tp.Action]:
        """After the reservation (`left` None) or a stage: another stage, or wait for the source's
        step boundary and stop and copy."""
        s = self.settings
        if self.stages < s.max_stages and (left is None or left > s.last_stage_blocks):
            self.phase = Phase.COPYING
            return [tp.CopyStage(self.copied)]
        self.phase = Phase.WAITING
        return [tp.AwaitStep()]

    def _stop_and_copy(self) -> list[tp.Action]:
        self.phase = Phase.STOPPING
        return [tp.StopAndCopy(self.copied, self.queued)]

    def _failure(self, event: tp.Refused | tp.PeerLost | tp.TimedOut | tp.Abort) -> list[tp.Action]:
        phase = self.phase
        if phase is Phase.RELEASING:
            if isinstance(event, tp.Abort):
                return []  # committed: nothing to call off
            self._end("committed", detail=f"the release on the source failed: {_detail(event)}")
            return []
        if isinstance(event, tp.Refused):
            gone = event.reason in tp.SOURCE_GONE
            self._end(event.reason if gone else "refused", "" if gone else event.reason, event.detail)
        else:
            gone = False
            result = {tp.PeerLost: "failed", tp.TimedOut: "timeout", tp.Abort: "aborted"}[type(event)]
            self._end(result, detail=event.detail)
        if phase is Phase.DESCRIBING or (phase is Phase.RESERVING and isinstance(event, tp.Refused)):
            return []
        if phase is Phase.STOPPING and not gone:
            return [tp.Abandon(), tp.Resume()]
        return [tp.Abandon()]

    def _end(self, result: str, reason: str = "", detail: str = "") -> None:
        """Set the outcome; a committed stop-and-copy counts as the last stage."""
        committed = self.phase is Phase.RELEASING
        self.phase = Phase.DONE
        self.outcome = tp.TransferOutcome(self.order, result, reason, detail, self.stages + committed,
                                          self.blocks, self.nbytes, self.downtime_s, self.suspended_at)


def _detail(event: tp.Refused | tp.PeerLost | tp.TimedOut) -> str:
    return event.detail or (event.reason if isinstance(event, tp.Refused) else "")
