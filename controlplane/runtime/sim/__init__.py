"""The simulation runtime: the real engine scheduler and scheduling framework in virtual time.

The names below are imported on first use (PEP 562), so importing `controlplane.runtime.sim.command`
for the CLI's parser does not import the engine and torch.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from controlplane.runtime.sim.config import SimConfig
    from controlplane.runtime.sim.instance import SIM_TOKEN_ID, SimInstance
    from controlplane.runtime.sim.loop import SimRun, Simulation
    from controlplane.runtime.sim.results import results, run_metrics
    from controlplane.runtime.sim.workload import SimWorkload

_WHERE = {
    "SimConfig": "config",
    "SIM_TOKEN_ID": "instance",
    "SimInstance": "instance",
    "SimRun": "loop",
    "Simulation": "loop",
    "results": "results",
    "run_metrics": "results",
    "SimWorkload": "workload",
}

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


class _SimPackage(types.ModuleType):
    """Keeps `results` the function: importing the submodule `results` would otherwise make the
    package attribute the module (the eager `from .results import results` used to rebind it)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "results" and isinstance(value, types.ModuleType):
            value = value.results
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _SimPackage


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
