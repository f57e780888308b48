"""The simulator's transfer driver: a `Transfer`'s actions carried out in virtual time.

How the actions run (`controlplane/runtime/sim/migration.py` has the cost model and the ticks):
- `Describe`, `Reserve`, `Release` and the undo actions run at once (between the steps'
  bookkeeping: a decode run in progress is cut first, `SimInstance.interrupt`, as an arrival does).
- `CopyStage(first)` copies the blocks the request holds now from `first` on; it ends
  `blocks x kv_bytes_per_block / bandwidth_bytes_s` later, when the pages arrive: the destination's
  reservation grows to the request's tokens then (a refusal aborts), and the stage reports the
  blocks the request holds at that moment.
- `AwaitStep` waits for the end of the source's step in progress (verbs run between steps).
- `StopAndCopy` suspends the request there and then; the blocks not copied yet move in the
  downtime, `copy time + overhead_s`, after which the destination commits it. A queued request
  holds no KV: it is suspended at the decision and committed `overhead_s` later.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from controlplane.runtime.sim.instance import SimInstance
from controlplane.transfer import protocol as tp
from controlplane.transfer.core import Transfer
from flotilla.errors import TransferRefused
from instances.engine.migration import SequenceState


class CopyCost(Protocol):
    """How long copies take (`migration.MigrationModel` is one)."""

    overhead_s: float

    def copy_s(self, blocks: int) -> float:
        """Seconds to copy `blocks` KV blocks from one instance to another."""
        ...


Later = Callable[[float, Callable[[float], None]], None]
"""`later(at, fn)`: run `fn(at)` at virtual time `at`."""


@dataclass
class Move:
    """One transfer in flight and where it stands in virtual time."""

    transfer: Transfer
    src: int
    dst: int
    stage_end: int = 0  # blocks the stage in progress copies up to
    state: SequenceState | None = None  # once suspended
    ended: bool = False


class SimTransfers:
    """Carries out the actions of `Move`s on `instances`. `later(at, fn)` runs `fn(at)` at virtual
    time `at`; `touch(k)` / `settle(k)` surround a change to instance k outside its steps (see the
    simulation loop); `on_end(move)` hears of each transfer's end, once."""

    def __init__(self, model: CopyCost, instances: list[SimInstance], later: Later,
                 touch: Callable[[int], None], settle: Callable[[int], None], on_end: Callable[[Move], None]) -> None:
        self.model = model
        self.instances = instances
        self.later = later
        self.touch = touch
        self.settle = settle
        self.on_end = on_end
        self.waiting: dict[int, list[Move]] = {}  # source -> moves waiting for its step boundary

    def start(self, move: Move, now: float) -> None:
        self._act(move, move.transfer.start(now), now)

    def at_step_boundary(self, k: int, now: float) -> None:
        """Stop and copy the requests whose last stage waited for instance k's step to end."""
        for move in self.waiting.pop(k, []):
            self._post(move, tp.StepDone(now), now, boundary=True)

    def _post(self, move: Move, event: tp.Event, now: float, boundary: bool = False) -> None:
        self._act(move, move.transfer.on(event), now, boundary)

    def _act(self, move: Move, actions: list[tp.Action], now: float, boundary: bool = False) -> None:
        """Carry out `actions` in order, feeding the answers that come at once back to the core.
        `boundary`: the source is at a step boundary (the loop starts its next step afterwards)."""
        queue = deque(actions)
        while queue:
            event = self._execute(move, queue.popleft(), now, boundary)
            if event is not None:
                queue.extend(move.transfer.on(event))
        if move.transfer.done and not move.ended:
            move.ended = True
            self.on_end(move)

    def _execute(self, move: Move, action: tp.Action, now: float, boundary: bool) -> tp.Event | None:
        """Run one action; its answer if it comes now, else None (it is posted later)."""
        rid = move.transfer.order.request_id
        src = self.instances[move.src]
        try:
            if isinstance(action, tp.Describe):
                self.touch(move.src)
                info = src.engine.request_blocks(rid)
                if info is None:
                    return tp.Refused(now, "finished")
                return tp.Described(now, info.running, info.num_tokens)
            if isinstance(action, tp.Reserve):
                self._verb(move.dst, lambda e: e.reserve(rid, action.num_tokens))
                return tp.Reserved(now)
            if isinstance(action, tp.CopyStage):
                info = src.engine.request_blocks(rid)
                assert info is not None  # just described or checked, at this same instant
                move.stage_end = info.num_blocks
                copy_s = self.model.copy_s(info.num_blocks - action.first)
                self.later(now + copy_s, lambda t: self._stage_end(move, t))
                return None
            if isinstance(action, tp.AwaitStep):
                if src.busy:
                    self.waiting.setdefault(move.src, []).append(move)
                else:  # an idle source (it cannot hold a running request, but keep the books right)
                    self._post(move, tp.StepDone(now), now, boundary=True)
                    self.settle(move.src)
                return None
            if isinstance(action, tp.StopAndCopy):
                return self._stop_and_copy(move, action, now)
            if isinstance(action, tp.Release):
                return tp.Released(now, self._verb(move.src, lambda e: e.release_migrated(rid)))
            if isinstance(action, tp.Abandon):
                self._verb(move.dst, lambda e: e.cancel_reservation(rid))
            elif isinstance(action, tp.Resume):
                if boundary:  # the loop starts the source's next step after this
                    src.engine.resume(rid)
                    src.refresh()
                else:
                    self._verb(move.src, lambda e: e.resume(rid))
            elif isinstance(action, tp.AbortDestination):
                self._verb(move.dst, lambda e: e.abort(rid))
            return None
        except TransferRefused as e:
            return tp.Refused(now, e.reason, e.message)

    def _stage_end(self, move: Move, now: float) -> None:
        """A stage's pages arrive: the reservation grows to the request's tokens."""
        rid = move.transfer.order.request_id
        self.touch(move.src)
        info = self.instances[move.src].engine.request_blocks(rid)
        if info is None or not info.running:
            self._post(move, tp.Refused(now, "finished" if info is None else "preempted"), now)
        elif (refused := self._refused(now, move.dst, lambda e: e.extend_reservation(rid, info.num_tokens))):
            self._post(move, refused, now)
        else:
            self._post(move, tp.StageCopied(now, move.stage_end, info.num_blocks), now)

    def _stop_and_copy(self, move: Move, action: tp.StopAndCopy, now: float) -> tp.Event | None:
        rid = move.transfer.order.request_id
        src = self.instances[move.src]
        if action.queued:  # no KV to copy: suspended at the decision
            move.state = src.engine.suspend(rid)
            self._post(move, tp.Suspended(now), now)
            self.settle(move.src)
            self.later(now + self.model.overhead_s, lambda t: self._commit(move, t))
            return None
        info = src.engine.request_blocks(rid)
        if info is None or not info.running:
            return tp.Refused(now, "finished" if info is None else "preempted")
        move.state = state = src.engine.suspend(rid)
        src.refresh()
        self._post(move, tp.Suspended(now), now)
        if (refused := self._refused(now, move.dst, lambda e: e.extend_reservation(rid, state.num_tokens))):
            return refused
        downtime = self.model.copy_s(max(0, state.num_kv_blocks - action.first)) + self.model.overhead_s
        self.later(now + downtime, lambda t: self._commit(move, t))
        return None

    def _commit(self, move: Move, now: float) -> None:
        state = move.state
        assert state is not None
        self._post(move, self._refused(now, move.dst, lambda e: e.commit(state)) or tp.Committed(now), now)

    def _refused(self, now: float, k: int, verb: Callable[[Any], Any]) -> tp.Refused | None:
        """Run `verb` on instance k (as `_verb`); its refusal as an event, None when it went through."""
        try:
            self._verb(k, verb)
        except TransferRefused as e:
            return tp.Refused(now, e.reason, e.message)
        return None

    def _verb(self, k: int, verb: Callable[[Any], Any]) -> Any:
        """Run an engine verb on instance k between its steps' bookkeeping: cut its decode run
        first, then refresh its view and start it if idle (also when the verb raises)."""
        self.touch(k)
        try:
            return verb(self.instances[k].engine)
        finally:
            self.settle(k)
