"""The model pair of the engine benchmark: our `LlamaForCausalLM` and a `transformers` twin.

`load_pair(name)` loads `name` with `instances.models.loader.load_model` (the real
SmolLM2-135M-Instruct weights, or the seeded `tiny-llama`) and gives the transformers model the
identical state dict, in float32, eval mode, with `attn_implementation="sdpa"`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import LlamaConfig
from transformers import LlamaForCausalLM as HFLlama

from instances.config import ModelConfig
from instances.models.llama import LlamaForCausalLM
from instances.models.loader import load_model

SMOLLM2 = "smollm2-135m"
TINY = "tiny-llama"
MODELS = (SMOLLM2, TINY)


@dataclass(frozen=True)
class ModelPair:
    """Our model and its transformers twin, holding equal weights. `weights` says where they came from."""

    name: str
    weights: str
    ours: LlamaForCausalLM
    hf: HFLlama


def load_pair(name: str) -> ModelPair:
    """The pair for `name` (one of `MODELS`); ModelLoadError if the loader cannot load it."""
    loaded = load_model(name, torch.float32)
    weights = "SmolLM2-135M-Instruct GGUF, dequantized to fp32" if name == SMOLLM2 else "seeded tiny-llama"
    return ModelPair(name, weights, loaded.model.eval(), hf_twin(loaded.model))


def hf_config(c: ModelConfig) -> LlamaConfig:
    """The transformers `LlamaConfig` of `c` (rope scaling "none" only: the benchmarked shapes)."""
    if c.rope_scaling.kind != "none":
        raise ValueError(f"the benchmark twins only default RoPE, not {c.rope_scaling.kind!r}")
    return LlamaConfig(
        vocab_size=c.vocab_size, hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
        num_hidden_layers=c.num_hidden_layers, num_attention_heads=c.num_attention_heads,
        num_key_value_heads=c.num_key_value_heads, max_position_embeddings=c.max_position_embeddings,
        rms_norm_eps=c.rms_norm_eps, rope_parameters={"rope_type": "default", "rope_theta": c.rope_theta},
        tie_word_embeddings=c.tie_word_embeddings, head_dim=c.head_dim, attn_implementation="sdpa",
    )


def hf_twin(model: LlamaForCausalLM) -> HFLlama:
    """A transformers Llama (fp32, eval, SDPA) holding a copy of `model`'s state dict.

    EOS is unset in its generation config, so `generate` never stops early and suppresses nothing:
    it produces exactly `max_new_tokens` greedy tokens, as our engine does with `ignore_eos`.
    Raises RuntimeError if the state dict does not fit exactly.
    """
    hf = HFLlama(hf_config(model.config)).float().eval()
    hf.load_state_dict({k: v.float() for k, v in model.state_dict().items()}, strict=True)
    hf.generation_config.eos_token_id = None
    hf.generation_config.bos_token_id = None
    return hf
