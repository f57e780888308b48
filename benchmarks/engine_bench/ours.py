"""Our side: a closed loop of `concurrency` clients over one continuous-batching engine.

The engine always holds `concurrency` unfinished requests while any are left: whenever one
finishes, the next is added before the next step, and the scheduler admits it into the running
batch (chunked prefill alongside the others' decodes).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence

from benchmarks.engine_bench.requests import BenchRequest
from benchmarks.engine_bench.result import SideResult
from instances.engine.config import EngineConfig
from instances.engine.engine import Engine
from instances.engine.executor import ModelRunner
from instances.models.llama import LlamaForCausalLM
from instances.types import EngineRequest, FinishReason, SamplingParams

BLOCK_SIZE = 16
MAX_NUM_BATCHED_TOKENS = 512


def engine_config(concurrency: int, max_model_len: int) -> EngineConfig:
    """A KV pool that holds `concurrency` requests of `max_model_len` tokens each (no preemption),
    16-token blocks, a 512-token step budget and room for `concurrency` running sequences."""
    blocks_per_request = -(-max_model_len // BLOCK_SIZE)
    return EngineConfig(
        block_size=BLOCK_SIZE,
        num_blocks=concurrency * blocks_per_request,
        max_num_batched_tokens=MAX_NUM_BATCHED_TOKENS,
        max_num_seqs=concurrency,
        max_model_len=max_model_len,
    )


def engine_request(r: BenchRequest) -> EngineRequest:
    """Greedy, EOS ignored: exactly `r.output_len` tokens."""
    sampling = SamplingParams(max_tokens=r.output_len, temperature=0.0, ignore_eos=True)
    return EngineRequest(r.request_id, list(r.prompt), sampling)


def run_engine(
    model: LlamaForCausalLM,
    requests: Sequence[BenchRequest],
    concurrency: int,
    max_model_len: int,
    *,
    clock: Callable[[], float] = time.perf_counter,
    on_finish: Callable[[int], None] = lambda done: None,
) -> SideResult:
    """Run `requests` in order through a fresh engine, `concurrency` at a time (see module docstring).

    The clock starts after the engine (and its KV cache) is built. `on_finish(done)` is called after
    each finished request. Raises RuntimeError if a request ends for a reason other than its length.
    """
    config = engine_config(concurrency, max_model_len)
    engine = Engine(config, ModelRunner(model, config), clock=clock)
    pending = deque(requests)
    tokens: dict[str, list[int]] = {r.request_id: [] for r in requests}
    first_at: dict[str, float] = {}
    tpot: list[float] = []
    start = clock()
    for _ in range(min(concurrency, len(pending))):
        engine.add_request(engine_request(pending.popleft()))
    done = 0
    while engine.has_unfinished():
        out = engine.step()
        now = clock()
        for d in out.deltas:
            tokens[d.request_id].extend(d.token_ids)
            first_at.setdefault(d.request_id, now)
            if d.finish_reason is None:
                continue
            if d.finish_reason is not FinishReason.LENGTH:
                raise RuntimeError(f"{d.request_id} finished with {d.finish_reason.value!r}, not 'length'")
            n = len(tokens[d.request_id])
            if n > 1:
                tpot.append((now - first_at[d.request_id]) / (n - 1))
            done += 1
            on_finish(done)
            if pending:
                engine.add_request(engine_request(pending.popleft()))
    elapsed = clock() - start
    computed = sum(len(t) for t in tokens.values())
    return SideResult(elapsed, tokens, computed, tuple(tpot))
