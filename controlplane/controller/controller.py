"""The controller: plans migrations every tick and carries out operators' drain and migrate.

Every `interval_s` it reads the instances' views, asks the instances its migration policy names
(`MigrationPolicy.sources`) for their movable requests, runs the policy (pure:
`controlplane/scheduling/migration.py`, chosen by name from the registry) and starts each order as
its own task; an order the migrator cannot start now (`MigrationBusy`) waits for a later tick's
plan. With no source named, a tick costs no call to any instance.

`drain(instance)` makes the instance refuse new work and lets the ticks move its requests away
(every policy drains), `undrain(instance)` lets it take new work again; `migrate(request, to)` is an
operator's single migration, carried out at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Protocol

from controlplane.scheduling.migration import MigrationOrder, MigrationPolicy
from controlplane.scheduling.types import InstanceView
from controlplane.transfer.protocol import TransferOutcome
from flotilla.errors import FlotillaError, NotFound
from instances.types import MigrationCandidate

log = logging.getLogger(__name__)


class MigratingCluster(Protocol):
    """What the controller needs of a runtime (`RayCluster` and `LocalCluster` implement it)."""

    def views(self) -> list[InstanceView]: ...

    def locate(self, request_id: str) -> str: ...

    async def migration_candidates(self, instance_ids: list[str]) -> dict[str, list[MigrationCandidate]]: ...

    async def migrate(self, order: MigrationOrder) -> TransferOutcome: ...

    async def set_draining(self, instance_id: str, draining: bool) -> None: ...

    def migrations_in_flight(self) -> Mapping[str, int]:
        """Migrations in flight per instance (as source or destination)."""
        ...


class Controller:
    """Migration planning over one cluster (see the module docstring)."""

    def __init__(self, cluster: MigratingCluster, policy: MigrationPolicy, *, interval_s: float) -> None:
        self.cluster = cluster
        self.policy = policy
        self.interval_s = interval_s
        self._tasks: set[asyncio.Task] = set()

    async def run(self) -> None:
        """Tick until cancelled; a failing tick is logged and the next one runs."""
        try:
            while True:
                await asyncio.sleep(self.interval_s)
                try:
                    await self.tick()
                except FlotillaError as e:
                    log.warning("controller tick failed: %s", e.message)
        finally:
            for task in list(self._tasks):
                task.cancel()

    async def tick(self) -> list[MigrationOrder]:
        """Plan once and start the orders; returns them."""
        views = self.cluster.views()
        ids = self.policy.sources(views)
        if not ids:
            return []
        candidates = await self.cluster.migration_candidates(ids)
        orders = self.policy.plan(views, candidates, dict(self.cluster.migrations_in_flight()))
        for order in orders:
            task = asyncio.get_running_loop().create_task(self._migrate(order))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return orders

    async def _migrate(self, order: MigrationOrder) -> None:
        try:
            outcome = await self.cluster.migrate(order)
            if not outcome.committed:
                log.info("migration of %s %s -> %s: %s %s", order.request_id, order.source,
                         order.destination, outcome.result, outcome.detail)
        except FlotillaError as e:  # MigrationBusy: a later tick plans again
            log.info("migration of %s not started: %s", order.request_id, e.message)

    async def drain(self, instance_id: str) -> None:
        """Stop new work on `instance_id`; the next ticks migrate its requests away."""
        self._view(instance_id)
        await self.cluster.set_draining(instance_id, True)

    async def undrain(self, instance_id: str) -> None:
        """Let `instance_id` take new work again (a drain's undo); NotFound for an unknown instance."""
        self._view(instance_id)
        await self.cluster.set_draining(instance_id, False)

    async def migrate(self, request_id: str, to: str) -> TransferOutcome:
        """Move one request (an operator's order) to instance `to` now."""
        self._view(to)
        order = MigrationOrder(request_id, self.cluster.locate(request_id), to, "admin")
        return await self.cluster.migrate(order)

    def _view(self, instance_id: str) -> InstanceView:
        views: Sequence[InstanceView] = self.cluster.views()
        for v in views:
            if v.instance_id == instance_id:
                return v
        raise NotFound(f"no instance {instance_id!r}; GET /admin/v1/instances lists them")
