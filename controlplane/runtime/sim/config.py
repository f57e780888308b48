"""Settings of one simulation run (plain values; the CLI and experiments build them)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from controlplane.observability.serving_metrics import SLO
from controlplane.runtime.sim.host import HostModel
from controlplane.runtime.sim.migration import MigrationModel
from controlplane.runtime.sim.noise import StepNoise
from controlplane.scheduling.registry import PluginSettings, ProfileConfig
from instances.engine.config import EngineConfig
from instances.latency.base import LatencyModel


@dataclass(frozen=True)
class SimConfig:
    """`instances` identical simulated engines (`engine` sizes, `latency` step times) behind one
    gateway that places every request with the scheduling `profile` (reported as `policy`).

    `seed` feeds the pickers' `random.Random`; with the same workload, config and seed a run is
    identical. `slo` (optional) defines attainment and goodput.

    Two serving overheads that the latency model (which prices `Engine.step` alone) does not see,
    0 unless set (`benchmarks/sim_fidelity.py` measures both on a real cluster):
    - `dispatch_delay_s`: a fixed delay between a request's arrival and its placement on an
      instance (HTTP, the gateway's request path, the call to the instance). A fixed delay on the
      tokens' way back gives the same latencies, so measure the round trip and put it here.
      `dispatch_delays_s`, when not empty, replaces it with a distribution: each request's delay
      is drawn from these samples (`benchmarks/sim_fidelity.py` measures them on a calibration run).
    - `step_overhead_s`: added to every step's latency-model time (what a serving instance does per
      step besides `Engine.step`: its step loop, detokenization, pushing chunks and stats out).

    `host` (`host.HostModel`) puts the instances on one machine's CPUs; `noise` (`noise.StepNoise`)
    replays a served cluster's measured step-time deviations. With either, every step is an event
    (no decode runs, `max_run_steps` is ignored).

    `migration` (`migration.MigrationModel`): a controller tick every `interval_s` of virtual time
    runs its migration policy and the simulator carries out the orders; None: no migration, no
    ticks. `plugins`: the settings of the profile's plugins by name (`registry.PluginSettings`).
    """

    instances: int
    policy: str
    profile: ProfileConfig
    engine: EngineConfig
    latency: LatencyModel
    seed: int = 0
    slo: SLO | None = None
    dispatch_delay_s: float = 0.0
    dispatch_delays_s: tuple[float, ...] = ()
    step_overhead_s: float = 0.0
    step_overhead_per_seq_s: float = 0.0
    host: HostModel | None = None
    noise: StepNoise | None = None
    max_run_steps: int = 256
    migration: MigrationModel | None = None
    plugins: PluginSettings = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.instances < 1:
            raise ValueError(f"a simulation needs at least one instance, got {self.instances}")
        if self.max_run_steps < 1:
            raise ValueError(f"max_run_steps must be >= 1, got {self.max_run_steps}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        for name in ("dispatch_delay_s", "step_overhead_s", "step_overhead_per_seq_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if self.dispatch_delays_s and self.dispatch_delay_s:
            raise ValueError("give dispatch_delay_s or dispatch_delays_s, not both")
        if not all(math.isfinite(v) and v >= 0 for v in self.dispatch_delays_s):
            raise ValueError("every dispatch_delays_s sample must be a finite number >= 0")
