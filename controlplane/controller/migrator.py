"""Carrying out migrations between the instances of one cluster, whatever runs them.

The mechanism; policies decide. Each order becomes a `Transfer` (`controlplane/transfer/core.py`)
that `run_transfer` drives over the two instances' `TransferEndpoint`s (Ray actors or in-process
step loops). At most `max_in_flight` migrations touch an instance at once (as source or
destination), and a request is in at most one; further orders are refused with `MigrationBusy`.
Observers hear of every start and outcome; `on_commit(order)` runs once the request runs on its
destination (the gateway's stream then expects it from there), before the source releases it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from controlplane.scheduling.migration import MigrationOrder
from controlplane.transfer.book import InFlight
from controlplane.transfer.core import Transfer
from controlplane.transfer.driver import run_transfer
from controlplane.transfer.endpoint import TransferEndpoint
from controlplane.transfer.protocol import TransferOutcome
from controlplane.transfer.settings import TransferSettings

MIN_HOLD_S = 0.1
"""The least a destination holds its next step for a stop-and-copy (see `Migrator.hold_s`)."""

HOLD_STEPS = 4
"""A destination holds its next step for at most this many of the source's step times: the rest
of the source's step in progress, plus the hops of its state. A step's time in the snapshot is its
forward pass; the interval between steps (batching, detokenizing, answering calls) is longer."""


class MigrationObserver(Protocol):
    """Told of every migration's start and outcome (metrics, tests)."""

    def migration_started(self, order: MigrationOrder) -> None: ...

    def migration_finished(self, outcome: TransferOutcome) -> None: ...


class Migrator:
    """Runs migrations between the instances of `endpoints` (instance id -> its endpoint).

    `step_time(instance_id)`: the instance's latest step time in seconds, from its last snapshot;
    a destination holds its next step for at most `HOLD_STEPS` of the source's step times (at least
    `MIN_HOLD_S`, at most the call timeout) while the source finishes its step in progress and
    suspends; the hold ends as soon as the request is committed."""

    def __init__(
        self,
        endpoints: Mapping[str, TransferEndpoint],
        model: str,
        settings: TransferSettings,
        max_in_flight: int,
        on_commit: Callable[[MigrationOrder], None],
        step_time: Callable[[str], float],
        observers: Sequence[MigrationObserver] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.endpoints = endpoints
        self.model = model
        self.settings = settings
        self.on_commit = on_commit
        self.step_time = step_time
        self.observers = observers  # read at each event: the owner may add observers later
        self.clock = clock
        self.book = InFlight(max_in_flight)

    @property
    def in_flight(self) -> Mapping[str, int]:
        """Migrations in flight per instance (as source or destination)."""
        return self.book.per_instance()

    def admit(self, order: MigrationOrder) -> None:
        """Raise MigrationBusy (or KeyError for an unknown instance) if `order` cannot start now."""
        self.book.admit(order, self.endpoints)

    def hold_s(self, source: str) -> float:
        """How long the destination holds its next step for the stop-and-copy from `source`."""
        return min(self.settings.transfer_timeout_s, max(MIN_HOLD_S, HOLD_STEPS * self.step_time(source)))

    async def migrate(self, order: MigrationOrder) -> TransferOutcome:
        """Carry out `order` (after `admit`, which it calls); never raises for a failed migration,
        whose outcome says what happened."""
        self.admit(order)
        for observer in self.observers:
            observer.migration_started(order)
        self.book.add(order)
        try:
            outcome = await run_transfer(
                Transfer(order, self.settings), self.endpoints[order.source], self.endpoints[order.destination],
                model=self.model, hold_s=self.hold_s(order.source), clock=self.clock,
                on_commit=lambda: self.on_commit(order))
        finally:
            self.book.remove(order)
        for observer in self.observers:
            observer.migration_finished(outcome)
        return outcome
