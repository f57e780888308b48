"""The latency-model contract of the simulated engine.

The simulator runs the engine's real `LocalScheduler` and `BlockManager`; where the real engine
would run the forward pass it asks a `LatencyModel` how long the step takes and advances virtual
time by that much.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from instances.latency.shape import StepShape


@runtime_checkable
class LatencyModel(Protocol):
    """Prices one engine step.

    `step_time(shape)`: wall time in seconds of one step that computes `shape` (scheduling, forward
    pass and sampling included), finite and > 0 for a non-empty shape; raises ValueError for an
    empty shape (an engine never runs an empty step). Pure: the same shape gives the same time.

    `describe()`: a JSON-ready dict naming the model and its parameters, for results files.
    """

    def step_time(self, shape: StepShape) -> float: ...

    def describe(self) -> dict[str, Any]: ...
