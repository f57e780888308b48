"""Which transfers are in flight, per instance and per request (every driver keeps one)."""

from __future__ import annotations

from collections.abc import Container, Mapping

from controlplane.scheduling.migration import MigrationOrder
from flotilla.errors import MigrationBusy


class InFlight:
    """Transfers in flight: `counts[instance_id]` of them touch that instance (as source or
    destination), and `requests` are moving. A request is in at most one transfer."""

    def __init__(self, max_in_flight: int | None = None) -> None:
        self.max_in_flight = max_in_flight
        self.counts: dict[str, int] = {}
        self.requests: set[str] = set()

    def admit(self, order: MigrationOrder, instances: Container[str]) -> None:
        """Raise KeyError for an instance not in `instances`, MigrationBusy when `order` cannot
        start now (the request is already moving, is already at the destination, or an end is at
        its `max_in_flight`)."""
        for iid in (order.source, order.destination):
            if iid not in instances:
                raise KeyError(iid)
        if order.source == order.destination:
            raise MigrationBusy(f"request {order.request_id} is already on {order.source}")
        if order.request_id in self.requests:
            raise MigrationBusy(f"request {order.request_id} is already being migrated")
        if self.max_in_flight is not None:
            for iid in (order.source, order.destination):
                if self.counts.get(iid, 0) >= self.max_in_flight:
                    raise MigrationBusy(f"instance {iid} already has {self.max_in_flight} "
                                        "migrations in flight; retry later")

    def add(self, order: MigrationOrder) -> None:
        self.requests.add(order.request_id)
        for iid in (order.source, order.destination):
            self.counts[iid] = self.counts.get(iid, 0) + 1

    def remove(self, order: MigrationOrder) -> None:
        self.requests.discard(order.request_id)
        for iid in (order.source, order.destination):
            self.counts[iid] -= 1

    def per_instance(self) -> Mapping[str, int]:
        """In-flight transfers per instance (absent: none), as a migration policy reads them."""
        return self.counts
