"""GGUF loader: config from metadata, dequantized tensors, q/k un-permutation, clear rejections."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from gguf.quants import quantize

from flotilla.errors import ModelLoadError
from instances.config import ModelConfig
from instances.models.llama import LlamaForCausalLM
from instances.weights.gguf_loader import load_gguf, unpermute_qk
from tests.instances.gguf_fixtures import (
    VOCAB_SIZE,
    Q,
    llamacpp_permute,
    reference_dequantize,
    write_llama_gguf,
)


def _config(tied: bool = False) -> ModelConfig:
    return ModelConfig(
        vocab_size=VOCAB_SIZE, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        rms_norm_eps=1e-6, rope_theta=20000.0, tie_word_embeddings=tied,
    )


def _state(config: ModelConfig) -> dict[str, torch.Tensor]:
    model = LlamaForCausalLM(config)
    g = torch.Generator().manual_seed(0)
    return {k: torch.randn(v.shape, generator=g) * 0.5 for k, v in model.state_dict().items()}


def test_permutation_round_trip() -> None:
    w = np.arange(8 * 16 * 3, dtype=np.float32).reshape(8 * 16, 3)
    for n_head in (1, 2, 8):
        permuted = llamacpp_permute(w, n_head)
        assert not np.array_equal(permuted, w)
        assert np.array_equal(unpermute_qk(permuted, n_head), w)


def test_f32_file_gives_back_exact_hf_tensors_and_config(tmp_path: Path) -> None:
    config = _config()
    state = _state(config)
    write_llama_gguf(tmp_path / "m.gguf", config, state, Q.F32)
    ckpt = load_gguf(tmp_path / "m.gguf", "m")
    assert ckpt.config == ModelConfig(
        vocab_size=VOCAB_SIZE, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        rms_norm_eps=pytest.approx(1e-6), rope_theta=20000.0, tie_word_embeddings=False, head_dim=16,  # type: ignore[arg-type]
        bos_token_id=VOCAB_SIZE - 3, eos_token_ids=(VOCAB_SIZE - 2,), name="m",
    )
    assert sorted(ckpt.tensors) == sorted(state)
    for name, t in state.items():
        assert ckpt.tensors[name].dtype == torch.float32
        assert torch.equal(ckpt.tensors[name], t), name


def test_missing_output_weight_means_tied(tmp_path: Path) -> None:
    config = _config(tied=True)
    write_llama_gguf(tmp_path / "m.gguf", config, _state(config), Q.F32)
    ckpt = load_gguf(tmp_path / "m.gguf", "m")
    assert ckpt.config.tie_word_embeddings is True
    assert "lm_head.weight" not in ckpt.tensors


def test_f16(tmp_path: Path) -> None:
    config = _config()
    state = _state(config)
    write_llama_gguf(tmp_path / "m.gguf", config, state, Q.F16)
    tensors = load_gguf(tmp_path / "m.gguf", "m").tensors
    for name, t in state.items():
        expected = t if t.dim() == 1 else t.half().float()
        assert torch.equal(tensors[name], expected), name


@pytest.mark.parametrize("qtype", [Q.Q8_0, Q.Q4_0, Q.Q4_1])
def test_block_quantized(tmp_path: Path, qtype: Q) -> None:
    """Each weight equals an independent decode of its blocks; rows are quantized independently,
    so decoding the un-permuted HF matrix's blocks gives what the loader must return."""
    config = _config()
    state = _state(config)
    write_llama_gguf(tmp_path / "m.gguf", config, state, qtype)
    tensors = load_gguf(tmp_path / "m.gguf", "m").tensors
    for name, t in state.items():
        if t.dim() == 1:
            assert torch.equal(tensors[name], t), name
            continue
        a = t.numpy()
        expected = reference_dequantize(quantize(a, qtype), qtype, a.shape[1])
        assert np.array_equal(tensors[name].numpy(), expected), name
        bound = 0.02 if qtype == Q.Q8_0 else 0.25  # |x| <~ 2.5: half a step of 8-bit / 4-bit scales
        assert (tensors[name] - t).abs().max().item() < bound, name


def test_unsupported_type_is_named(tmp_path: Path) -> None:
    config = _config()
    write_llama_gguf(tmp_path / "m.gguf", config, _state(config), Q.Q5_0)
    with pytest.raises(ModelLoadError, match=r"Q5_0.*supported types: F32, F16, Q8_0, Q4_0, Q4_1"):
        load_gguf(tmp_path / "m.gguf", "m")


def test_linear_rope_scaling_is_read(tmp_path: Path) -> None:
    config = _config()
    write_llama_gguf(tmp_path / "m.gguf", config, _state(config), linear_rope_factor=4.0)
    scaling = load_gguf(tmp_path / "m.gguf", "m").config.rope_scaling
    assert (scaling.kind, scaling.factor) == ("linear", 4.0)


def test_rejections(tmp_path: Path) -> None:
    config = _config()
    state = _state(config)
    write_llama_gguf(tmp_path / "q.gguf", config, state, arch="qwen2")
    with pytest.raises(ModelLoadError, match="architecture 'qwen2' is not supported"):
        load_gguf(tmp_path / "q.gguf", "q")
    freqs = {"rope_freqs.weight": np.ones(8, dtype=np.float32)}
    write_llama_gguf(tmp_path / "r.gguf", config, state, extra_tensors=freqs)
    with pytest.raises(ModelLoadError, match="rope_freqs"):
        load_gguf(tmp_path / "r.gguf", "r")
    fused = {"blk.0.attn_qkv.weight": np.ones(4, np.float32)}
    write_llama_gguf(tmp_path / "x.gguf", config, state, extra_tensors=fused)
    with pytest.raises(ModelLoadError, match="unexpected tensor 'blk.0.attn_qkv.weight'"):
        load_gguf(tmp_path / "x.gguf", "x")
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_gguf(tmp_path / "none.gguf", "none")
    (tmp_path / "junk.gguf").write_bytes(b"not a gguf file at all")
    with pytest.raises(ModelLoadError, match="not a readable GGUF"):
        load_gguf(tmp_path / "junk.gguf", "junk")
