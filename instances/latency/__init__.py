"""Latency models of the simulated engine: how long one engine step of a given shape takes.

The simulator drives the real `LocalScheduler` and `BlockManager` and asks a `LatencyModel` for the
step time of each scheduled batch (`StepShape.of(batch)`). Two models:
- `RooflineModel`: analytical, from a GPU's datasheet peaks and a model's shape;
- `DistServeModel`: fitted coefficients, e.g. from `flotilla profile` on this machine.
See docs/latency-models.md.
"""

from __future__ import annotations

from instances.latency.base import LatencyModel
from instances.latency.distserve import Coefficients, DistServeModel, FitQuality, FitResult, fit
from instances.latency.hardware import GPUS, GPUSpec, gpu_spec
from instances.latency.model_specs import DEFAULT_MODEL, MODELS, ModelSpec, kv_capacity_blocks, model_spec
from instances.latency.roofline import RooflineModel, RooflineTerms
from instances.latency.rows import ProfileRow, read_rows, write_rows
from instances.latency.shape import StepShape

__all__ = [
    "DEFAULT_MODEL", "GPUS", "MODELS", "Coefficients", "DistServeModel", "FitQuality", "FitResult", "GPUSpec",
    "LatencyModel", "ModelSpec", "ProfileRow", "RooflineModel", "RooflineTerms", "StepShape",
    "build_latency_model", "fit", "gpu_spec", "kv_capacity_blocks", "model_spec", "read_rows", "write_rows",
]


def build_latency_model(gpu: str, model: str = DEFAULT_MODEL, coefficients: str | None = None) -> LatencyModel:
    """The simulator's latency model: a `DistServeModel` loaded from the `coefficients` file when one
    is given (then `gpu` and `model` are not looked up: the file was measured on its own setup),
    else the `RooflineModel` of the named GPU and model. ConfigError for unknown names or a bad file.
    """
    if coefficients is not None:
        return DistServeModel.load(coefficients)
    return RooflineModel(gpu_spec(gpu), model_spec(model))
