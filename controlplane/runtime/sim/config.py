"""Settings of one simulation run (plain values; the CLI and experiments build them)."""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.serving_metrics import SLO
from controlplane.config import ProfileConfig
from instances.engine.config import EngineConfig
from instances.latency.base import LatencyModel


@dataclass(frozen=True)
class SimConfig:
    """`instances` identical simulated engines (`engine` sizes, `latency` step times) behind one
    gateway that places every request with the scheduling `profile` (reported as `policy`).

    `seed` feeds the pickers' `random.Random`; with the same workload, config and seed a run is
    identical. `slo` (optional) defines attainment and goodput.
    """

    instances: int
    policy: str
    profile: ProfileConfig
    engine: EngineConfig
    latency: LatencyModel
    seed: int = 0
    slo: SLO | None = None

    def __post_init__(self) -> None:
        if self.instances < 1:
            raise ValueError(f"a simulation needs at least one instance, got {self.instances}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
