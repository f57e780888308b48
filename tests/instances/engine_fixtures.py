"""A small random Llama and helpers shared by the engine tests."""

from __future__ import annotations

import torch

from instances.config import ModelConfig
from instances.engine.config import EngineConfig
from instances.engine.engine import Engine
from instances.engine.executor import ModelRunner
from instances.models.llama import LlamaForCausalLM
from instances.types import EngineRequest, SamplingParams

TINY = ModelConfig(
    vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
)


def tiny_model(seed: int = 0) -> LlamaForCausalLM:
    """Random weights with a wide init, so greedy choices have clear margins (no near-ties)."""
    torch.manual_seed(seed)
    model = LlamaForCausalLM(TINY)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.25)
    return model.eval()


def make_engine(model: LlamaForCausalLM, **overrides) -> Engine:
    cfg = EngineConfig(**{"block_size": 4, "num_blocks": 256, "max_num_batched_tokens": 64,
                          "max_num_seqs": 16, "max_model_len": 512, **overrides})
    return Engine(cfg, ModelRunner(model, cfg))


def greedy(max_tokens: int, **kw) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True, **kw)


def run_to_completion(engine: Engine, requests: list[EngineRequest], cached: dict[str, int] | None = None,
                      ) -> dict[str, list[int]]:
    """Add everything, step until idle, collect tokens per request (checking indices are contiguous).

    `cached`, when given, receives each request's prompt tokens served from the prefix cache.
    """
    for r in requests:
        engine.add_request(r)
    out: dict[str, list[int]] = {r.request_id: [] for r in requests}
    for _ in range(10_000):
        if not engine.has_unfinished():
            return out
        for d in engine.step().deltas:
            assert d.first_index == len(out[d.request_id])
            out[d.request_id].extend(d.token_ids)
            if cached is not None:
                cached[d.request_id] = d.num_cached_tokens
    raise AssertionError("engine did not finish")


@torch.inference_mode()
def reference_greedy(model: LlamaForCausalLM, prompt: list[int], max_tokens: int) -> list[int]:
    """No cache: recompute the whole sequence every step."""
    ids = list(prompt)
    out = []
    for _ in range(max_tokens):
        logits = model.forward_dense(torch.tensor([ids]))[0, -1]
        tok = int(torch.argmax(logits))
        out.append(tok)
        ids.append(tok)
    return out
