"""`healthy` filter: keeps the instances whose last snapshot says they are healthy."""

from __future__ import annotations

from collections.abc import Sequence

from controlplane.scheduling.types import InstanceView, RequestView


class HealthyFilter:
    """Drops unhealthy instances; keeps the others in the given order."""

    def filter(self, req: RequestView, cands: Sequence[InstanceView]) -> list[InstanceView]:
        return [c for c in cands if c.healthy]
