"""Live migration in the simulator: a periodic controller tick runs a `MigrationPolicy`, and each
order is a `Transfer` (`controlplane/transfer/core.py`, the same core the real runtimes drive)
carried out with the real engine verbs on a transfer-time model.

How this driver carries out the core's actions, in virtual time:
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
The tick reads candidates only of the instances the policy asks about (`_Candidates`).
"""

from __future__ import annotations

import heapq
import math
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from controlplane.runtime.sim.instance import SimInstance
from controlplane.scheduling.migration import MigrationOrder, MigrationPolicy
from controlplane.transfer.book import InFlight
from controlplane.transfer.core import Transfer
from controlplane.transfer.protocol import (
    Abandon,
    AbortDestination,
    Action,
    AwaitStep,
    Committed,
    CopyStage,
    Describe,
    Described,
    Event,
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
)
from controlplane.transfer.settings import TransferSettings
from flotilla.errors import TransferRefused
from instances.engine.migration import SequenceState
from instances.types import MigrationCandidate


@dataclass(frozen=True)
class MigrationModel:
    """The migration policy and how its orders execute. `kv_bytes_per_block`: KV bytes of one block
    (`block_size x ModelSpec.kv_bytes_per_token`); `bandwidth_bytes_s` the instance-to-instance copy
    rate (default 10 GB/s, an assumption: a PCIe 4.0 x16 or 100 Gb/s RDMA path); `interval_s` the
    controller's tick; `transfer` the protocol's settings (a simulated stage is one copy: its
    `stage_chunk_blocks` and `transfer_timeout_s` do not apply)."""

    policy: MigrationPolicy
    kv_bytes_per_block: float
    interval_s: float = 0.05
    bandwidth_bytes_s: float = 10e9
    overhead_s: float = 0.005
    transfer: TransferSettings = field(default_factory=TransferSettings)

    def __post_init__(self) -> None:
        for name in ("kv_bytes_per_block", "interval_s", "bandwidth_bytes_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"migration {name} must be a finite number > 0, got {value}")
        if not (math.isfinite(self.overhead_s) and self.overhead_s >= 0):
            raise ValueError(f"migration overhead_s must be a finite number >= 0, got {self.overhead_s}")

    def copy_s(self, blocks: int) -> float:
        return blocks * self.kv_bytes_per_block / self.bandwidth_bytes_s


@dataclass
class _Move:
    transfer: Transfer
    src: int
    dst: int
    stage_end: int = 0  # blocks the stage in progress copies up to
    state: SequenceState | None = None  # once suspended
    ended: bool = False


@dataclass
class MigrationStats:
    """Counters of a run's migrations (`results.json`'s `migrations`)."""

    started: Counter[str] = field(default_factory=Counter)  # by the order's reason
    committed: int = 0
    aborted: Counter[str] = field(default_factory=Counter)  # by the outcome's cause
    downtimes_s: list[float] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        d = sorted(self.downtimes_s)

        def pct(q: float) -> float:
            return d[min(len(d) - 1, int(q * len(d)))] if d else 0.0

        return {"started": sum(self.started.values()), "by_reason": dict(sorted(self.started.items())),
                "committed": self.committed, "aborted": sum(self.aborted.values()),
                "aborted_by": dict(sorted(self.aborted.items())),
                "downtime_s": {"p50": pct(0.5), "p99": pct(0.99), "mean": sum(d) / len(d) if d else 0.0}}


class _Candidates(Mapping[str, list[MigrationCandidate]]):
    """Instance id -> its migration candidates, computed (after cutting its decode run) on access;
    requests already moving are left out."""

    def __init__(self, migrator: Migrator) -> None:
        self._m = migrator
        self._cache: dict[str, list[MigrationCandidate]] = {}

    def __getitem__(self, instance_id: str) -> list[MigrationCandidate]:
        if instance_id not in self._cache:
            k = self._m.index[instance_id]
            self._m.touch(k)
            moving = self._m.book.requests
            self._cache[instance_id] = [c for c in self._m.instances[k].engine.migration_candidates()
                                        if c.request_id not in moving]
        return self._cache[instance_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._m.index)

    def __len__(self) -> int:
        return len(self._m.index)


class Migrator:
    """Ticks and in-flight migrations of one simulation. The loop owns time: it calls `fire(now)`
    at `next_time()` and `at_step_boundary(k)` after instance k's step ends, before its next one.
    `touch(k)` must cut instance k's decode run (scheduling its new end), `settle(k)` refresh its view
    and start it if idle."""

    def __init__(self, model: MigrationModel, instances: list[SimInstance],
                 touch: Callable[[int], None], settle: Callable[[int], None]) -> None:
        self.model = model
        self.instances = instances
        self.index = {inst.instance_id: k for k, inst in enumerate(instances)}
        self.touch = touch
        self.settle = settle
        self.stats = MigrationStats()
        self.book = InFlight()
        self._events: list[tuple[float, int, Callable[[float], None]]] = []
        self._seq = 0
        self._next_tick = 0.0
        self._suspend: dict[int, list[_Move]] = {}  # source -> moves waiting for its step boundary

    @property
    def busy(self) -> bool:
        """Migrations are in flight (the run is not over while they are)."""
        return bool(self._events) or any(self._suspend.values())

    def next_time(self) -> float:
        return min(self._next_tick, self._events[0][0]) if self._events else self._next_tick

    def fire(self, now: float) -> None:
        """Handle what is due at `now` (= `next_time()`): migration events first, then a tick."""
        if self._events and self._events[0][0] <= self._next_tick:
            _, _, action = heapq.heappop(self._events)
            action(now)
            return
        self._next_tick = now + self.model.interval_s
        views = [inst.view for inst in self.instances]
        for order in self.model.policy.plan(views, _Candidates(self), self.book.per_instance()):
            self._start(order, now)

    def at_step_boundary(self, k: int, now: float) -> None:
        """Stop and copy the requests whose last stage waited for instance k's step to end."""
        for move in self._suspend.pop(k, []):
            self._post(move, StepDone(now), now, boundary=True)

    # ---- one migration -------------------------------------------------------------------------
    def _start(self, order: MigrationOrder, now: float) -> None:
        move = _Move(Transfer(order, self.model.transfer), self.index[order.source], self.index[order.destination])
        self.stats.started[order.reason] += 1
        self.book.add(order)
        self._act(move, move.transfer.start(now), now)

    def _later(self, at: float, action: Callable[[float], None]) -> None:
        self._seq += 1
        heapq.heappush(self._events, (at, self._seq, action))

    def _post(self, move: _Move, event: Event, now: float, boundary: bool = False) -> None:
        self._act(move, move.transfer.on(event), now, boundary)

    def _act(self, move: _Move, actions: list[Action], now: float, boundary: bool = False) -> None:
        """Carry out `actions` in order, feeding the answers that come at once back to the core.
        `boundary`: the source is at a step boundary (the loop starts its next step afterwards)."""
        queue = deque(actions)
        while queue:
            event = self._execute(move, queue.popleft(), now, boundary)
            if event is not None:
                queue.extend(move.transfer.on(event))
        if move.transfer.done and not move.ended:
            self._end(move)

    def _execute(self, move: _Move, action: Action, now: float, boundary: bool) -> Event | None:
        """Run one action; its answer if it comes now, else None (it is posted later)."""
        rid = move.transfer.order.request_id
        src = self.instances[move.src]
        try:
            if isinstance(action, Describe):
                self.touch(move.src)
                info = src.engine.request_blocks(rid)
                if info is None:
                    return Refused(now, "finished")
                return Described(now, info.running, info.num_tokens)
            if isinstance(action, Reserve):
                self._verb(move.dst, lambda e: e.reserve(rid, action.num_tokens))
                return Reserved(now)
            if isinstance(action, CopyStage):
                info = src.engine.request_blocks(rid)
                assert info is not None  # just described or checked, at this same instant
                move.stage_end = info.num_blocks
                self._later(now + self.model.copy_s(info.num_blocks - action.first), lambda t: self._stage_end(move, t))
                return None
            if isinstance(action, AwaitStep):
                if src.busy:
                    self._suspend.setdefault(move.src, []).append(move)
                else:  # an idle source (it cannot hold a running request, but keep the books right)
                    self._post(move, StepDone(now), now, boundary=True)
                    self.settle(move.src)
                return None
            if isinstance(action, StopAndCopy):
                return self._stop_and_copy(move, action, now)
            if isinstance(action, Release):
                return Released(now, self._verb(move.src, lambda e: e.release_migrated(rid)))
            if isinstance(action, Abandon):
                self._verb(move.dst, lambda e: e.cancel_reservation(rid))
            elif isinstance(action, Resume):
                if boundary:  # the loop starts the source's next step after this
                    src.engine.resume(rid)
                    src.refresh()
                else:
                    self._verb(move.src, lambda e: e.resume(rid))
            elif isinstance(action, AbortDestination):
                self._verb(move.dst, lambda e: e.abort(rid))
            return None
        except TransferRefused as e:
            return Refused(now, e.reason, e.message)

    def _stage_end(self, move: _Move, now: float) -> None:
        """A stage's pages arrive: the reservation grows to the request's tokens."""
        rid = move.transfer.order.request_id
        self.touch(move.src)
        info = self.instances[move.src].engine.request_blocks(rid)
        if info is None or not info.running:
            self._post(move, Refused(now, "finished" if info is None else "preempted"), now)
            return
        try:
            self._verb(move.dst, lambda e: e.extend_reservation(rid, info.num_tokens))
        except TransferRefused as e:
            self._post(move, Refused(now, e.reason, e.message), now)
            return
        self._post(move, StageCopied(now, move.stage_end, info.num_blocks), now)

    def _stop_and_copy(self, move: _Move, action: StopAndCopy, now: float) -> Event | None:
        rid = move.transfer.order.request_id
        src = self.instances[move.src]
        if action.queued:  # no KV to copy: suspended at the decision
            move.state = src.engine.suspend(rid)
            self._post(move, Suspended(now), now)
            self.settle(move.src)
            self._later(now + self.model.overhead_s, lambda t: self._commit(move, t))
            return None
        info = src.engine.request_blocks(rid)
        if info is None or not info.running:
            return Refused(now, "finished" if info is None else "preempted")
        move.state = state = src.engine.suspend(rid)
        src.refresh()
        self._post(move, Suspended(now), now)
        try:
            self._verb(move.dst, lambda e: e.extend_reservation(rid, state.num_tokens))
        except TransferRefused as e:
            return Refused(now, e.reason, e.message)
        downtime = self.model.copy_s(max(0, state.num_kv_blocks - action.first)) + self.model.overhead_s
        self._later(now + downtime, lambda t: self._commit(move, t))
        return None

    def _commit(self, move: _Move, now: float) -> None:
        state = move.state
        assert state is not None
        try:
            self._verb(move.dst, lambda e: e.commit(state))
        except TransferRefused as e:
            self._post(move, Refused(now, e.reason, e.message), now)
            return
        self._post(move, Committed(now), now)

    def _verb(self, k: int, verb: Callable[[Any], Any]) -> Any:
        """Run an engine verb on instance k between its steps' bookkeeping: cut its decode run
        first, then refresh its view and start it if idle (also when the verb raises)."""
        self.touch(k)
        try:
            return verb(self.instances[k].engine)
        finally:
            self.settle(k)

    def _end(self, move: _Move) -> None:
        move.ended = True
        outcome = move.transfer.outcome
        assert outcome is not None
        if outcome.committed:
            self.stats.committed += 1
            self.stats.downtimes_s.append(outcome.downtime_s)
        else:
            self.stats.aborted[outcome.cause] += 1
        self.book.remove(outcome.order)
