"""Live migration in the simulator: a periodic controller tick runs a `MigrationPolicy`, and each
order is carried out with the real engine verbs on a transfer-time model.

A running request (it holds KV blocks) moves in stages, as Llumnix migrates:
1. at the decision: the destination `reserve`s blocks for its tokens (a refusal aborts the
   migration, counted by its reason), and stage 1 copies the blocks it holds now, taking
   `blocks x kv_bytes_per_block / bandwidth_bytes_s` while it keeps decoding on the source;
2. at a stage's end, the blocks it gained meanwhile are copied in the next stage (the reservation
   `extend`ed to its tokens), until what is left is at most `last_stage_blocks` or `max_stages`
   stages ran;
3. then, at the source's next step boundary (verbs run between steps), it is `suspend`ed: its
   downtime is the last copy (the blocks not copied yet) plus `overhead_s`; the destination
   `commit`s it and the source `release`s its blocks.
A queued request holds no KV: it is suspended at the decision and committed `overhead_s` later.
A request that finished (or was preempted by recompute) during its copy aborts the migration: the
reservation is cancelled. A commit the destination refuses (it began draining) resumes the request
on the source. Every verb that touches an instance first cuts its decode run (`SimInstance.interrupt`),
exactly as an arrival does; the tick reads candidates only of the instances the policy asks about.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from controlplane.runtime.sim.instance import SimInstance
from controlplane.scheduling.migration import MigrationOrder, MigrationPolicy
from instances.engine.migration import MigrationRefused, SequenceState
from instances.engine.sequence import SequenceStatus
from instances.types import MigrationCandidate


@dataclass(frozen=True)
class MigrationModel:
    """The migration policy and how its orders execute. `kv_bytes_per_block`: KV bytes of one block
    (`block_size x ModelSpec.kv_bytes_per_token`); `bandwidth_bytes_s` the instance-to-instance copy
    rate (default 10 GB/s, an assumption: a PCIe 4.0 x16 or 100 Gb/s RDMA path)."""

    policy: MigrationPolicy
    kv_bytes_per_block: float
    interval_s: float = 0.05
    bandwidth_bytes_s: float = 10e9
    last_stage_blocks: int = 2
    max_stages: int = 4
    overhead_s: float = 0.005

    def __post_init__(self) -> None:
        for name in ("kv_bytes_per_block", "interval_s", "bandwidth_bytes_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"migration {name} must be a finite number > 0, got {value}")
        if not (math.isfinite(self.overhead_s) and self.overhead_s >= 0):
            raise ValueError(f"migration overhead_s must be a finite number >= 0, got {self.overhead_s}")
        if self.last_stage_blocks < 0 or self.max_stages < 1:
            raise ValueError("migration last_stage_blocks must be >= 0 and max_stages >= 1")

    def copy_s(self, blocks: int) -> float:
        return blocks * self.kv_bytes_per_block / self.bandwidth_bytes_s


@dataclass
class _Move:
    order: MigrationOrder
    src: int
    dst: int
    copied: int = 0  # blocks copied so far
    stages: int = 0
    state: SequenceState | None = None  # once suspended
    suspended_at: float = 0.0


@dataclass
class MigrationStats:
    """Counters of a run's migrations (`results.json`'s `migrations`)."""

    started: Counter[str] = field(default_factory=Counter)  # by the order's reason
    committed: int = 0
    aborted: Counter[str] = field(default_factory=Counter)  # by why (a refusal's reason, finished...)
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
            moving = self._m.moving
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
        self.in_flight: dict[str, int] = {}
        self.moving: set[str] = set()  # request ids in flight
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
        for order in self.model.policy.plan(views, _Candidates(self), self.in_flight):
            self._start(order, now)

    def at_step_boundary(self, k: int, now: float) -> None:
        """Suspend the requests whose last stage waited for instance k's step to end."""
        for move in self._suspend.pop(k, []):
            self._stop_and_copy(move, now)

    # ---- one migration -------------------------------------------------------------------------
    def _later(self, at: float, action: Callable[[float], None]) -> None:
        self._seq += 1
        heapq.heappush(self._events, (at, self._seq, action))

    def _start(self, order: MigrationOrder, now: float) -> None:
        move = _Move(order, self.index[order.source], self.index[order.destination])
        self.stats.started[order.reason] += 1
        self.moving.add(order.request_id)
        for k in (move.src, move.dst):
            iid = self.instances[k].instance_id
            self.in_flight[iid] = self.in_flight.get(iid, 0) + 1
        src = self.instances[move.src].engine
        self.touch(move.src)
        seq = src.scheduler.requests[order.request_id]
        if seq.status is SequenceStatus.WAITING:  # queued: no KV to copy
            move.state = src.suspend(order.request_id)
            move.suspended_at = now
            self.settle(move.src)
            self._later(now + self.model.overhead_s, lambda t: self._commit(move, t))
            return
        try:
            self._verb(move.dst, lambda e: e.reserve(order.request_id, seq.num_tokens))
        except MigrationRefused as e:
            self._end(move, e.reason)
            return
        self._stage(move, len(seq.block_ids), now)

    def _stage(self, move: _Move, blocks: int, now: float) -> None:
        copy = blocks - move.copied
        move.copied, move.stages = blocks, move.stages + 1
        self._later(now + self.model.copy_s(copy), lambda t: self._stage_end(move, t))

    def _stage_end(self, move: _Move, now: float) -> None:
        rid = move.order.request_id
        self.touch(move.src)
        seq = self.instances[move.src].engine.scheduler.requests.get(rid)
        if seq is None or seq.status is not SequenceStatus.RUNNING:
            self._cancel(move, "finished" if seq is None else "preempted")
            return
        try:
            self._verb(move.dst, lambda e: e.extend_reservation(rid, seq.num_tokens))
        except MigrationRefused as e:
            self._cancel(move, e.reason)
            return
        left = len(seq.block_ids) - move.copied
        if left > self.model.last_stage_blocks and move.stages < self.model.max_stages:
            self._stage(move, len(seq.block_ids), now)
        elif self.instances[move.src].busy:
            self._suspend.setdefault(move.src, []).append(move)
        else:  # idle source (cannot hold a running request, but keep the books right if it did)
            self._stop_and_copy(move, now)
            self.settle(move.src)

    def _stop_and_copy(self, move: _Move, now: float) -> None:
        """At a step boundary of the source: suspend, copy what is left, commit after the downtime."""
        rid = move.order.request_id
        src = self.instances[move.src]
        seq = src.engine.scheduler.requests.get(rid)
        if seq is None or seq.status is not SequenceStatus.RUNNING:
            self._cancel(move, "finished" if seq is None else "preempted")
            return
        move.state = state = src.engine.suspend(rid)
        src.refresh()
        move.suspended_at = now
        try:
            self._verb(move.dst, lambda e: e.extend_reservation(rid, state.num_tokens))
        except MigrationRefused as e:
            src.engine.resume(rid)  # at its step boundary: the loop starts its next step
            src.refresh()
            self._cancel(move, e.reason)
            return
        downtime = self.model.copy_s(max(0, state.num_kv_blocks - move.copied)) + self.model.overhead_s
        self._later(now + downtime, lambda t: self._commit(move, t))

    def _commit(self, move: _Move, now: float) -> None:
        assert move.state is not None
        state = move.state
        try:
            self._verb(move.dst, lambda e: e.commit(state))
        except MigrationRefused as e:
            self._verb(move.dst, lambda e: e.cancel_reservation(state.request.request_id))
            self._verb(move.src, lambda e: e.resume(state.request.request_id))
            self._end(move, e.reason)
            return
        self._verb(move.src, lambda e: e.release_migrated(state.request.request_id))
        self.stats.committed += 1
        self.stats.downtimes_s.append(now - move.suspended_at)
        self._end(move, None)

    def _cancel(self, move: _Move, why: str) -> None:
        self._verb(move.dst, lambda e: e.cancel_reservation(move.order.request_id))
        self._end(move, why)

    def _verb(self, k: int, verb: Callable[[Any], object]) -> None:
        """Run an engine verb on instance k between its steps' bookkeeping: cut its decode run
        first, then refresh its view and start it if idle (also when the verb raises)."""
        self.touch(k)
        try:
            verb(self.instances[k].engine)
        finally:
            self.settle(k)

    def _end(self, move: _Move, aborted: str | None) -> None:
        if aborted is not None:
            self.stats.aborted[aborted] += 1
        self.moving.discard(move.order.request_id)
        for k in (move.src, move.dst):
            iid = self.instances[k].instance_id
            self.in_flight[iid] -= 1
