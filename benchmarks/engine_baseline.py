"""Engine-only latency: the same requests run on an in-process `Engine`, one at a time.

This is the baseline that the serving path (HTTP, gateway, Ray dispatch, detokenization) is
compared against: `gateway_capacity` subtracts its median from the median end-to-end latency
measured through `flotilla serve`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch

from controlplane.config import load_config
from controlplane.serve import engine_config
from instances.engine.engine import Engine
from instances.engine.executor import ModelRunner
from instances.models.loader import load_model
from instances.types import EngineRequest, SamplingParams


def served_engine(model: str, torch_threads: int = 1) -> Engine:
    """An engine for `model` with the engine settings `flotilla serve --model MODEL` uses by default
    (float32) and `torch_threads` intra-op threads, as one instance actor runs it.

    Sets torch's thread count for the whole process. Raises ModelLoadError for an unknown model.
    """
    torch.set_num_threads(torch_threads)
    loaded = load_model(model, torch.float32)
    config = engine_config(load_config(None, {"model.name_or_path": model}), loaded.config)
    return Engine(config, ModelRunner(loaded.model, config), eos_token_ids=loaded.tokenizer.eos_token_ids)


def engine_only_latencies(
    engine: Engine,
    prompts: Sequence[list[int]],
    max_tokens: int,
    clock: Callable[[], float] = time.perf_counter,
) -> list[float]:
    """Seconds from `add_request` to the step that returns the request's finished delta, for each
    prompt run alone (greedy, `ignore_eos`, `max_tokens` output tokens), in order.

    Expects an idle engine and leaves it idle. Raises ValueError (from `Engine.check`) for a prompt
    the engine rejects, and RuntimeError if the engine goes idle without finishing a request.
    """
    latencies = []
    sampling = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
    for index, prompt in enumerate(prompts):
        request_id = f"engine-baseline-{index}"
        start = clock()
        engine.add_request(EngineRequest(request_id, list(prompt), sampling))
        while not _finished(engine, request_id):
            if not engine.has_unfinished():
                raise RuntimeError(f"the engine went idle before {request_id} finished")
        latencies.append(clock() - start)
    return latencies


def _finished(engine: Engine, request_id: str) -> bool:
    """Run one step; whether it reported `request_id` finished."""
    return any(d.request_id == request_id and d.finish_reason is not None for d in engine.step().deltas)
