"""The contract of a migration policy: pure planning over instance snapshots.

A policy reads the instances' views, the requests each could give away and the migrations already
in flight, and returns the migrations to start now. It never calls an instance, sleeps or reads a
clock, so the same policy runs in the controller (over Ray or in-process) and in the simulator.
Mechanism (the transfer core, `controlplane/transfer/`, driven by a runtime) carries the orders
out and may still fail them (the destination refuses, the request finished meanwhile). Policies
are chosen by name from `registry.MIGRATION_POLICIES`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from controlplane.scheduling.types import InstanceView
from instances.types import MigrationCandidate


@dataclass(frozen=True)
class MigrationOrder:
    """Move `request_id` from `source` to `destination`; `reason` names the rule that chose it
    (`load`, `defrag`, `priority`, `drain`, or `admin` for an operator's request)."""

    request_id: str
    source: str
    destination: str
    reason: str


class MigrationPolicy(Protocol):
    """Plans migrations; see the module docstring."""

    def sources(self, views: Sequence[InstanceView]) -> list[str]:
        """The instances whose candidates `plan` may read now; a runtime asks only these for their
        movable requests (none: nothing to plan this tick)."""
        ...

    def plan(
        self,
        views: Sequence[InstanceView],
        candidates: Mapping[str, Sequence[MigrationCandidate]],
        in_flight: Mapping[str, int],
    ) -> list[MigrationOrder]:
        """The migrations to start now.

        `views`: every instance's snapshot. `candidates[instance_id]`: the requests that instance
        could give away now (absent: none). `in_flight[instance_id]`: migrations in flight with
        that instance as source or destination (absent: 0). A request id appears in at most one
        order; orders never name an unhealthy or draining destination.
        """
        ...

    def instance_info(self, view: InstanceView) -> Mapping[str, object]:
        """What the policy exposes about an instance, shown beside its stats by the admin API
        (JSON-ready values)."""
        ...
