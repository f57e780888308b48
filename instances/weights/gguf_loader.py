"""Llama-architecture GGUF files: ModelConfig from metadata, HF-named fp32 tensors.

Tensors are dequantized at load with `gguf.quants.dequantize` (F32, F16, Q8_0, Q4_0, Q4_1) and
renamed to Hugging Face's `LlamaForCausalLM` names. llama.cpp's converter permutes the rows of
`attn_q` / `attn_k` (from HF's rotate-half RoPE layout to ggml's interleaved one); we undo that
here, as transformers' GGUF loader does, so the tensors load into the HF-layout model unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gguf import GGMLQuantizationType, GGUFReader
from gguf.quants import dequantize

from flotilla.errors import ModelLoadError
from instances.config import ModelConfig, RopeScaling

SUPPORTED_TYPES = (
    GGMLQuantizationType.F32,
    GGMLQuantizationType.F16,
    GGMLQuantizationType.Q8_0,
    GGMLQuantizationType.Q4_0,
    GGMLQuantizationType.Q4_1,
)

_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_LAYER_RE = re.compile(r"^blk\.(\d+)\.(\w+)\.weight$")


@dataclass
class GGUFCheckpoint:
    """A loaded GGUF: its config, HF-named float32 tensors, and the reader (for the tokenizer)."""

    config: ModelConfig
    tensors: dict[str, torch.Tensor]
    reader: GGUFReader


def load_gguf(path: str | Path, name: str) -> GGUFCheckpoint:
    """Open, parse and dequantize a llama GGUF file; ModelLoadError on anything unsupported."""
    reader = open_gguf(path)
    config = read_config(reader, name)
    return GGUFCheckpoint(config, read_tensors(reader, config), reader)


def open_gguf(path: str | Path) -> GGUFReader:
    """A memory-mapped reader; ModelLoadError if the file is missing or not a valid GGUF."""
    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"GGUF file {p} does not exist; pass the path of a .gguf file")
    try:
        return GGUFReader(p)
    except (ValueError, OSError) as e:
        raise ModelLoadError(f"{p} is not a readable GGUF file ({e}); re-download or re-convert it") from e


def field(reader: GGUFReader, key: str) -> Any:
    """The decoded value of metadata `key` (str, number, bool or list), or None when absent."""
    f = reader.fields.get(key)
    return None if f is None else f.contents()


def read_config(reader: GGUFReader, name: str) -> ModelConfig:
    """ModelConfig from the `llama.*` and `tokenizer.ggml.*` metadata of a GGUF file."""
    arch = field(reader, "general.architecture")
    if arch != "llama":
        raise ModelLoadError(
            f"GGUF architecture {arch!r} is not supported; Flotilla runs 'llama'-architecture "
            "models (Llama, SmolLM, TinyLlama). Use a llama GGUF or a Hugging Face Llama directory."
        )
    tensor_names = {t.name for t in reader.tensors}
    if "rope_freqs.weight" in tensor_names:
        raise ModelLoadError(
            "this GGUF stores Llama 3.1-style RoPE frequency factors (rope_freqs.weight), which the "
            "GGUF loader does not read; load the model's Hugging Face safetensors directory instead"
        )

    def required(key: str) -> Any:
        value = field(reader, f"llama.{key}")
        if value is None:
            raise ModelLoadError(f"GGUF metadata lacks llama.{key}; the file is incomplete, re-convert it")
        return value

    heads = int(required("attention.head_count"))
    hidden = int(required("embedding_length"))
    head_dim = int(field(reader, "llama.attention.key_length") or hidden // heads)
    rope_dim = field(reader, "llama.rope.dimension_count")
    if rope_dim is not None and int(rope_dim) != head_dim:
        raise ModelLoadError(
            f"partial rotary embeddings (rope dimension {rope_dim} < head dim {head_dim}) are not supported"
        )
    vocab = field(reader, "llama.vocab_size")
    if vocab is None:
        vocab = next(int(t.shape[1]) for t in reader.tensors if t.name == "token_embd.weight")
    bos = field(reader, "tokenizer.ggml.bos_token_id")
    eos = [field(reader, f"tokenizer.ggml.{k}_token_id") for k in ("eos", "eot", "eom")]
    return ModelConfig(
        vocab_size=int(vocab),
        hidden_size=hidden,
        intermediate_size=int(required("feed_forward_length")),
        num_hidden_layers=int(required("block_count")),
        num_attention_heads=heads,
        num_key_value_heads=int(field(reader, "llama.attention.head_count_kv") or heads),
        max_position_embeddings=int(required("context_length")),
        rms_norm_eps=float(field(reader, "llama.attention.layer_norm_rms_epsilon") or 1e-5),
        rope_theta=float(field(reader, "llama.rope.freq_base") or 10000.0),
        rope_scaling=_rope_scaling(reader),
        tie_word_embeddings="output.weight" not in tensor_names,
        head_dim=head_dim,
        bos_token_id=None if bos is None else int(bos),
        eos_token_ids=tuple(dict.fromkeys(int(e) for e in eos if e is not None)),
        name=name,
    )


def _rope_scaling(reader: GGUFReader) -> RopeScaling:
    kind = field(reader, "llama.rope.scaling.type")
    factor = field(reader, "llama.rope.scaling.factor")
    legacy_linear = field(reader, "llama.rope.scale_linear")
    if kind in (None, "none") and legacy_linear is None:
        return RopeScaling()
    if kind == "linear" or (kind is None and legacy_linear is not None):
        return RopeScaling(kind="linear", factor=float(factor if factor is not None else legacy_linear))
    raise ModelLoadError(
        f"GGUF RoPE scaling {kind!r} is not supported (supported: none, linear); "
        "load the model's Hugging Face directory instead"
    )


def hf_name(gguf_name: str) -> str:
    """The Hugging Face LlamaForCausalLM name of a llama GGUF tensor; ModelLoadError if unknown."""
    if gguf_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[gguf_name]
    m = _LAYER_RE.match(gguf_name)
    if m is None or m.group(2) not in _LAYER_NAMES:
        raise ModelLoadError(f"unexpected tensor {gguf_name!r} in a llama GGUF; the file is not a plain Llama model")
    return f"model.layers.{m.group(1)}.{_LAYER_NAMES[m.group(2)]}.weight"


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """Invert llama.cpp's `permute(w, n_head)` on the rows of a q or k projection.

    llama.cpp maps each head's rows from (half, pair-index) order to (pair-index, half) order,
    i.e. `w.reshape(n_head, 2, d // 2, ...).swapaxes(1, 2)`; this swaps them back.
    """
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def read_tensors(reader: GGUFReader, config: ModelConfig) -> dict[str, torch.Tensor]:
    """All tensors, dequantized to float32, HF-named and with q/k rows un-permuted."""
    bad = [t for t in reader.tensors if t.tensor_type not in SUPPORTED_TYPES]
    if bad:
        t = bad[0]
        raise ModelLoadError(
            f"tensor {t.name} has GGML type {t.tensor_type.name}, which Flotilla does not dequantize "
            f"({len(bad)} such tensors); supported types: {', '.join(q.name for q in SUPPORTED_TYPES)}. "
            "Use a GGUF quantized to one of those (e.g. Q8_0 or Q4_0)."
        )
    out: dict[str, torch.Tensor] = {}
    for t in reader.tensors:
        name = hf_name(t.name)
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))
        w = dequantize(t.data, t.tensor_type).reshape(shape)
        if name.endswith("q_proj.weight"):
            w = unpermute_qk(w, config.num_attention_heads)
        elif name.endswith("k_proj.weight"):
            w = unpermute_qk(w, config.num_key_value_heads)
        out[name] = torch.from_numpy(np.array(w, dtype=np.float32))
    return out
