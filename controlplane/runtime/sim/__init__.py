"""The simulation runtime: the real engine scheduler and scheduling framework in virtual time."""

from controlplane.runtime.sim.config import SimConfig
from controlplane.runtime.sim.instance import SIM_TOKEN_ID, SimInstance
from controlplane.runtime.sim.loop import SimRun, Simulation
from controlplane.runtime.sim.results import results, run_metrics
from controlplane.runtime.sim.workload import SimWorkload

__all__ = [
    "SIM_TOKEN_ID",
    "SimConfig",
    "SimInstance",
    "SimRun",
    "SimWorkload",
    "Simulation",
    "results",
    "run_metrics",
]
