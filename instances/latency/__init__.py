"""Latency models of the simulated engine: how long one engine step of a given shape takes.

The simulator drives the real `LocalScheduler` and `BlockManager` and asks a `LatencyModel` for the
step time of each scheduled batch (`StepShape.of(batch)`). `RooflineModel`: analytical, from a GPU's
datasheet peaks and a model's shape.
"""

from __future__ import annotations

from instances.latency.base import LatencyModel
from instances.latency.hardware import GPUS, GPUSpec, gpu_spec
from instances.latency.model_specs import DEFAULT_MODEL, MODELS, ModelSpec, kv_capacity_blocks, model_spec
from instances.latency.roofline import RooflineModel, RooflineTerms
from instances.latency.shape import StepShape

__all__ = [
    "DEFAULT_MODEL", "GPUS", "MODELS", "GPUSpec", "LatencyModel", "ModelSpec", "RooflineModel", "RooflineTerms",
    "StepShape", "gpu_spec", "kv_capacity_blocks", "model_spec",
]
