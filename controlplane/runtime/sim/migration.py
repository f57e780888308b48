"""Live migration in the simulator: a periodic controller tick runs a `MigrationPolicy`, and each
order is a `Transfer` (`controlplane/transfer/core.py`, the same core the real runtimes drive)
carried out with the real engine verbs on a transfer-time model (`MigrationModel`) by the
simulator's transfer driver (`transfer.py`). The tick reads candidates only of the instances the
policy asks about (`_Candidates`).
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from controlplane.runtime.sim.instance import SimInstance
from controlplane.runtime.sim.transfer import Move, SimTransfers
from controlplane.scheduling.migration import MigrationOrder, MigrationPolicy
from controlplane.transfer.book import InFlight
from controlplane.transfer.core import Transfer
from controlplane.transfer.settings import TransferSettings
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
        self.transfers = SimTransfers(model, instances, self._later, touch, settle, self._end)

    @property
    def busy(self) -> bool:
        """Migrations are in flight (the run is not over while they are)."""
        return bool(self._events) or any(self.transfers.waiting.values())

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
        self.transfers.at_step_boundary(k, now)

    def _start(self, order: MigrationOrder, now: float) -> None:
        move = Move(Transfer(order, self.model.transfer), self.index[order.source],
                    self.index[order.destination])
        self.stats.started[order.reason] += 1
        self.book.add(order)
        self.transfers.start(move, now)

    def _later(self, at: float, action: Callable[[float], None]) -> None:
        self._seq += 1
        heapq.heappush(self._events, (at, self._seq, action))

    def _end(self, move: Move) -> None:
        outcome = move.transfer.outcome
        assert outcome is not None
        if outcome.committed:
            self.stats.committed += 1
            self.stats.downtimes_s.append(outcome.downtime_s)
        else:
            self.stats.aborted[outcome.cause] += 1
        self.book.remove(outcome.order)
