"""`healthy` filter: keeps the instances that can take new work: healthy by their last snapshot and
not draining (a draining instance refuses new requests; its work is being migrated away)."""

from __future__ import annotations

from collections.abc import Sequence

from controlplane.scheduling.types import InstanceView, RequestView


class HealthyFilter:
    """Drops unhealthy and draining instances; keeps the others in the given order."""

    def filter(self, req: RequestView, cands: Sequence[InstanceView]) -> list[InstanceView]:
        return [c for c in cands if c.healthy and not c.draining]
