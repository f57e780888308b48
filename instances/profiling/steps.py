"""Timing one engine step of a given shape: the profiler's core (`profile.py` runs it over a grid,
`colocate.py`'s helpers run it to load the machine).

`StepTimer.prefill(n, T)` and `StepTimer.decode(B, C)` build a real `Engine` (torch `ModelRunner`,
prefix caching off) sized for the point, step it `warmup` untimed and `repeats` timed times, check
that every step computed the expected `StepShape` (the engine's executor is wrapped to record it),
and return the row with the median time.
"""

from __future__ import annotations

import math
import statistics
import time

from instances.engine.config import EngineConfig
from instances.engine.engine import Engine
from instances.engine.executor import Executor, ModelRunner
from instances.engine.scheduler import SampledToken, ScheduledBatch
from instances.latency.rows import ProfileRow
from instances.latency.shape import StepShape
from instances.models.loader import LoadedModel
from instances.types import EngineRequest, SamplingParams

BLOCK_SIZE = 16  # the serving default (EngineConfig.block_size)


class _ShapeRecorder:
    """An executor that records the shape of each batch, then runs it on the wrapped executor."""

    def __init__(self, inner: Executor) -> None:
        self.inner = inner
        self.last: StepShape | None = None

    def execute(self, batch: ScheduledBatch) -> dict[str, SampledToken]:
        self.last = StepShape.of(batch)
        return self.inner.execute(batch)


class StepTimer:
    """Times steps of one model's engine (see the module docstring)."""

    def __init__(self, loaded: LoadedModel, warmup: int, repeats: int) -> None:
        self.loaded = loaded
        self.warmup = warmup
        self.repeats = repeats
        self._ids = 0

    def _engine(self, num_seqs: int, max_len: int, budget: int) -> tuple[Engine, _ShapeRecorder]:
        cfg = EngineConfig(
            block_size=BLOCK_SIZE, num_blocks=num_seqs * math.ceil(max_len / BLOCK_SIZE) + 1,
            max_num_batched_tokens=budget, max_num_seqs=num_seqs, max_model_len=max_len,
            enable_prefix_caching=False,
        )
        recorder = _ShapeRecorder(ModelRunner(self.loaded.model, cfg))
        return Engine(cfg, recorder, eos_token_ids=self.loaded.tokenizer.eos_token_ids), recorder

    def _add(self, engine: Engine, num_seqs: int, prompt_len: int, max_tokens: int) -> None:
        vocab = self.loaded.config.vocab_size
        for _ in range(num_seqs):
            self._ids += 1
            prompt = [(self._ids * 31 + 7 * i) % vocab for i in range(prompt_len)]
            sampling = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
            engine.add_request(EngineRequest(f"profile-{self._ids}", prompt, sampling))

    @staticmethod
    def _timed_step(engine: Engine, recorder: _ShapeRecorder) -> tuple[StepShape, float]:
        t0 = time.perf_counter()
        engine.step()
        seconds = time.perf_counter() - t0
        assert recorder.last is not None
        return recorder.last, seconds

    def prefill(self, num_seqs: int, tokens: int) -> tuple[ProfileRow, list[float]]:
        """The row of `num_seqs` prompts of `tokens` tokens, and every timed step's seconds."""
        engine, recorder = self._engine(num_seqs, tokens + 1, num_seqs * tokens)
        expected = StepShape.prefill(*[tokens] * num_seqs)
        times = []
        for i in range(self.warmup + self.repeats):
            self._add(engine, num_seqs, tokens, max_tokens=1)
            shape, seconds = self._timed_step(engine, recorder)
            _expect(shape == expected and not engine.has_unfinished(), f"prefill {num_seqs}x{tokens}", shape)
            if i >= self.warmup:
                times.append(seconds)
        return ProfileRow.of(expected, statistics.median(times)), times

    def decode(self, batch: int, context: int) -> tuple[ProfileRow, list[float]]:
        """The row of `batch` decodes of `context` tokens each, and every timed step's seconds."""
        first = context - (self.repeats - 1) // 2  # context of the first timed step
        prompt_len = first - 1 - self.warmup
        steps = self.warmup + self.repeats
        engine, recorder = self._engine(batch, prompt_len + steps + 2, max(batch * prompt_len, batch))
        self._add(engine, batch, prompt_len, max_tokens=steps + 2)
        shape, _ = self._timed_step(engine, recorder)
        _expect(shape == StepShape.prefill(*[prompt_len] * batch), f"decode {batch}x{context} set-up", shape)
        times = []
        for i in range(steps):
            shape, seconds = self._timed_step(engine, recorder)
            ctx = first - self.warmup + i
            _expect(shape == StepShape.decode(batch, ctx), f"decode {batch}x{ctx}", shape)
            if i >= self.warmup:
                times.append(seconds)
        return ProfileRow.of(StepShape.decode(batch, context), statistics.median(times)), times


def _expect(ok: bool, what: str, shape: StepShape) -> None:
    if not ok:  # the engine scheduled something else (an engine change the profiler must follow)
        raise RuntimeError(f"profile step {what} ran an unexpected batch {shape}")
