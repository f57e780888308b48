"""LlamaForCausalLM: logits equal transformers' on the same weights; paged forward equals dense."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import LlamaConfig
from transformers import LlamaForCausalLM as HFLlama

from instances.config import ModelConfig, RopeScaling
from instances.kernels.attention import AttentionMetadata
from instances.models.llama import LlamaForCausalLM

TOL = 1e-4


def _config(**overrides: object) -> ModelConfig:
    base: dict[str, object] = dict(
        vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        rms_norm_eps=1e-5, rope_theta=10000.0,
    )
    base.update(overrides)
    return ModelConfig(**base)  # type: ignore[arg-type]


def _hf_config(c: ModelConfig) -> LlamaConfig:
    rope: dict[str, object] = {"rope_type": "default", "rope_theta": c.rope_theta}
    s = c.rope_scaling
    if s.kind == "linear":
        rope = {"rope_type": "linear", "rope_theta": c.rope_theta, "factor": s.factor}
    elif s.kind == "llama3":
        rope = {
            "rope_type": "llama3", "rope_theta": c.rope_theta, "factor": s.factor,
            "low_freq_factor": s.low_freq_factor, "high_freq_factor": s.high_freq_factor,
            "original_max_position_embeddings": s.original_max_position_embeddings,
        }
    return LlamaConfig(
        vocab_size=c.vocab_size, hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
        num_hidden_layers=c.num_hidden_layers, num_attention_heads=c.num_attention_heads,
        num_key_value_heads=c.num_key_value_heads, max_position_embeddings=c.max_position_embeddings,
        rms_norm_eps=c.rms_norm_eps, rope_parameters=rope, tie_word_embeddings=c.tie_word_embeddings,
        head_dim=c.head_dim, attn_implementation="eager",
    )


def _randomize(model: torch.nn.Module, seed: int) -> None:
    """Weights large enough that attention is sharp, so RoPE errors show in the logits."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * (2.0 / math.sqrt(p.shape[1])))


def _pair(c: ModelConfig, seed: int = 0) -> tuple[LlamaForCausalLM, HFLlama]:
    hf = HFLlama(_hf_config(c)).eval()
    _randomize(hf, seed)
    ours = LlamaForCausalLM(c).eval()
    ours.load_state_dict(hf.state_dict(), strict=True)
    return ours, hf


CASES = {
    "gqa-untied": _config(),
    "mha-tied": _config(num_key_value_heads=4, tie_word_embeddings=True),
    "mqa-headdim": _config(num_key_value_heads=1, head_dim=24),
    "linear": _config(rope_scaling=RopeScaling(kind="linear", factor=4.0), rope_theta=500.0),
    "llama3": _config(
        rope_scaling=RopeScaling(
            kind="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
            original_max_position_embeddings=16,
        ),
        rope_theta=500.0,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_match_transformers(case: str) -> None:
    ours, hf = _pair(CASES[case])
    ids = torch.randint(0, 97, (2, 48), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = hf(ids).logits
        got = ours.forward_dense(ids)
    assert got.dtype == torch.float32 and got.shape == (2, 48, 97)
    assert (got - ref).abs().max().item() < TOL


def test_tied_model_shares_embedding_and_state_dict_names() -> None:
    ours, hf = _pair(CASES["mha-tied"])
    assert ours.lm_head.weight is ours.model.embed_tokens.weight
    assert sorted(ours.state_dict()) == sorted(hf.state_dict())


@pytest.mark.parametrize("kind", ["linear", "llama3"])
def test_rope_scaling_changes_logits(kind: str) -> None:
    """The comparison above would be vacuous if scaling did not matter at this length."""
    scaled, _ = _pair(CASES[kind])
    plain = LlamaForCausalLM(_config(rope_theta=500.0)).eval()
    plain.load_state_dict(scaled.state_dict())
    ids = torch.randint(0, 97, (1, 48), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (scaled.forward_dense(ids) - plain.forward_dense(ids)).abs().max().item() > 1e-2


BLOCK = 4
NUM_BLOCKS = 32


def _meta(steps: list[tuple[list[int], int, int]]) -> AttentionMetadata:
    """Metadata for sequences given as (block_ids, context_len_after_step, query_len)."""
    width = max(len(b) for b, _, _ in steps)
    tables = torch.zeros(len(steps), width, dtype=torch.int32)
    slots: list[int] = []
    for i, (blocks, ctx, n) in enumerate(steps):
        tables[i, : len(blocks)] = torch.tensor(blocks, dtype=torch.int32)
        slots += [blocks[p // BLOCK] * BLOCK + p % BLOCK for p in range(ctx - n, ctx)]
    return AttentionMetadata(
        query_lens=[n for _, _, n in steps], context_lens=[c for _, c, _ in steps],
        block_tables=tables, slot_mapping=torch.tensor(slots, dtype=torch.int64), block_size=BLOCK,
    )


def test_paged_forward_equals_dense() -> None:
    """Chunked prefill across blocks, a cached prefix, then decodes batched with another prefill."""
    c = CASES["gqa-untied"]
    model, _ = _pair(c)
    g = torch.Generator().manual_seed(2)
    seq_a = torch.randint(0, 97, (17,), generator=g)  # prefilled in chunks 0-6, 6-13, then decodes
    seq_b = torch.randint(0, 97, (14,), generator=g)  # decodes only, after a 10-token "cached prefix"
    seq_c = torch.randint(0, 97, (9,), generator=g)  # one prefill chunk in the mixed batch
    blocks = {"a": [7, 2, 19, 11, 5], "b": [30, 1, 22, 14], "c": [9, 25, 3]}
    caches = [torch.zeros(2, NUM_BLOCKS, BLOCK, c.num_key_value_heads, c.head_dim) for _ in range(2)]
    with torch.no_grad():
        dense = {k: model.forward_dense(s[None])[0] for k, s in (("a", seq_a), ("b", seq_b), ("c", seq_c))}

        def step(parts: list[tuple[str, torch.Tensor, int, int]]) -> dict[str, torch.Tensor]:
            """parts: (name, sequence, start, end) of the tokens computed this step."""
            meta = _meta([(blocks[n], end, end - start) for n, _, start, end in parts])
            ids = torch.cat([s[start:end] for _, s, start, end in parts])
            pos = torch.cat([torch.arange(start, end) for _, _, start, end in parts])
            logits = model.compute_logits(model(ids, pos, meta, caches))
            out, row = {}, 0
            for n, _, start, end in parts:
                out[n] = logits[row : row + end - start]
                row += end - start
            return out

        def check(name: str, got: torch.Tensor, start: int, end: int) -> None:
            assert (got - dense[name][start:end]).abs().max().item() < TOL

        # The "cached prefix" of b: written by an earlier step, as if computed by another request.
        step([("b", seq_b, 0, 10)])
        check("a", step([("a", seq_a, 0, 6)])["a"], 0, 6)
        check("a", step([("a", seq_a, 6, 13)])["a"], 6, 13)
        for t in range(13, 17):
            parts = [("b", seq_b, t - 3, t - 2), ("a", seq_a, t, t + 1)]
            if t == 14:
                parts.insert(1, ("c", seq_c, 0, 9))
            out = step(parts)
            check("a", out["a"], t, t + 1)
            check("b", out["b"], t - 3, t - 2)
            if t == 14:
                check("c", out["c"], 0, 9)
