"""A replica: an engine plus its output processor, the unit an instance actor serves.

`Replica` is synchronous; `StepLoop` (instances/step_loop.py) drives it from asyncio.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from instances.engine.config import EngineConfig
from instances.engine.engine import Engine
from instances.engine.executor import ModelRunner
from instances.engine.output import OutputProcessor
from instances.models.loader import LoadedModel, load_model
from instances.step_trace import StepTrace
from instances.types import EngineRequest, GenerationChunk, InstanceStats


@dataclass(frozen=True)
class ReplicaSpec:
    """Everything needed to build a replica in any process (picklable)."""

    instance_id: str
    model: str
    engine: EngineConfig
    dtype: str = "float32"
    torch_threads: int = 1
    step_trace: str | None = None  # a CSV file to append a line per step to (instances/step_trace.py)


class Replica:
    """Engine + detokenizer: requests in, text chunks out."""

    def __init__(self, engine: Engine, output: OutputProcessor) -> None:
        self.engine = engine
        self.output = output

    @classmethod
    def build(cls, spec: ReplicaSpec, loaded: LoadedModel | None = None) -> Replica:
        """Load the model (unless given) and assemble the engine of `spec`."""
        torch.set_num_threads(spec.torch_threads)
        loaded = loaded or load_model(spec.model, dtype=getattr(torch, spec.dtype))
        runner = ModelRunner(loaded.model, spec.engine)
        engine = Engine(spec.engine, runner, instance_id=spec.instance_id,
                        eos_token_ids=loaded.tokenizer.eos_token_ids)
        if spec.step_trace is not None:
            engine.on_step = StepTrace(spec.step_trace).record
        return cls(engine, OutputProcessor(loaded.tokenizer.backend))

    def add(self, req: EngineRequest) -> None:
        """Queue a request; ValueError (user-facing message) if it can never run here."""
        self.engine.add_request(req)
        self.output.add(req.request_id, req.sampling)

    def abort(self, request_id: str) -> None:
        self.engine.abort(request_id)

    def has_work(self) -> bool:
        return self.engine.has_unfinished()

    def step(self) -> list[GenerationChunk]:
        """One engine step; requests ended by a stop string are aborted in the engine."""
        chunks: list[GenerationChunk] = []
        for delta in self.engine.step().deltas:
            chunk, stopped = self.output.process(delta)
            if stopped:
                self.engine.release(delta.request_id)
            chunks.append(chunk)
        return chunks

    def stats(self) -> InstanceStats:
        return self.engine.stats()
