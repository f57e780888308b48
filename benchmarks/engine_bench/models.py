"""The model pair of the engine benchmark: our `LlamaForCausalLM` and a `transformers` twin.

`load_pair(name)` prefers `instances.models.loader.load_model(name)` (the real SmolLM2-135M-Instruct
weights, or the loader's `tiny-llama`). When the loader module is missing or cannot load the model,
it builds our model with the same shape and seeded random weights instead, and says so in
`ModelPair.weights` (the caller prints and records it). Either way the transformers model gets the
identical state dict, in float32, eval mode, with `attn_implementation="sdpa"`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import LlamaConfig
from transformers import LlamaForCausalLM as HFLlama

from instances.config import ModelConfig
from instances.models.llama import LlamaForCausalLM

SMOLLM2 = "smollm2-135m"
TINY = "tiny-llama"

# Shapes used when the loader cannot provide the model (SmolLM2-135M's published config, and
# the loader's tiny-llama over its 260-id byte-level vocabulary).
SHAPES: dict[str, ModelConfig] = {
    SMOLLM2: ModelConfig(
        vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
        num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
        rope_theta=100000.0, tie_word_embeddings=True, name=SMOLLM2,
    ),
    TINY: ModelConfig(
        vocab_size=260, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048, name=TINY,
    ),
}
RANDOM_INIT_STD = 0.02


@dataclass(frozen=True)
class ModelPair:
    """Our model and its transformers twin, holding equal weights. `weights` says where they came from."""

    name: str
    weights: str
    ours: LlamaForCausalLM
    hf: HFLlama


def load_pair(name: str, seed: int = 0) -> ModelPair:
    """The pair for `name` (one of `SHAPES`). Raises ValueError for an unknown name.

    Falls back to seeded random weights (see the module docstring) only when the loader is absent
    or raises its ModelLoadError; any other failure propagates.
    """
    if name not in SHAPES:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(SHAPES)}")
    try:
        from instances.models.loader import load_model
    except ImportError as e:
        return _random_pair(name, seed, f"seeded random (loader not importable: {e})")
    from controlplane.errors import ModelLoadError

    try:
        loaded = load_model(name, torch.float32)
    except ModelLoadError as e:
        return _random_pair(name, seed, f"seeded random (loader failed: {e})")
    weights = "SmolLM2-135M-Instruct GGUF, dequantized to fp32" if name == SMOLLM2 else "loader's tiny-llama"
    return ModelPair(name, weights, loaded.model.eval(), hf_twin(loaded.model))


def random_model(config: ModelConfig, seed: int) -> LlamaForCausalLM:
    """Our model with norms at 1 and every other weight ~ N(0, RANDOM_INIT_STD), from `seed`."""
    model = LlamaForCausalLM(config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname.endswith("norm.weight"):
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * RANDOM_INIT_STD)
    return model.eval()


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


def _random_pair(name: str, seed: int, weights: str) -> ModelPair:
    model = random_model(SHAPES[name], seed)
    return ModelPair(name, weights, model, hf_twin(model))
