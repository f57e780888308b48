"""Writing small llama GGUF files the way llama.cpp's converter does, for loader tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from gguf import GGMLQuantizationType, GGUFWriter, RopeScalingType, TokenType
from gguf.quants import quantize

from instances.config import ModelConfig

Q = GGMLQuantizationType

# A byte-level vocabulary: the 256 byte characters, 4 merged tokens, 2 control, 1 user-defined.
MERGES = ["Ġ t", "h e", "Ġt he", "1 2"]
CONTROL = ["<|im_start|>", "<|im_end|>"]
USER_DEFINED = ["<think>"]


def byte_chars() -> list[str]:
    """GPT-2's printable spelling of bytes 0..255 (written out independently of the code under test)."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    table = {b: chr(b) for b in printable}
    extra = [b for b in range(256) if b not in table]
    table.update({b: chr(256 + n) for n, b in enumerate(extra)})
    return [table[b] for b in range(256)]


def vocab() -> tuple[list[str], list[int]]:
    tokens = byte_chars() + [m.replace(" ", "") for m in MERGES] + CONTROL + USER_DEFINED
    types = (
        [TokenType.NORMAL] * (256 + len(MERGES)) + [TokenType.CONTROL] * len(CONTROL)
        + [TokenType.USER_DEFINED] * len(USER_DEFINED)
    )
    return tokens, [int(t) for t in types]


VOCAB_SIZE = len(vocab()[0])


def llamacpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp convert_hf_to_gguf's `LlamaModel.permute` (rotate-half -> interleaved rows)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_name(hf: str) -> str:
    """The llama.cpp name of an HF LlamaForCausalLM tensor."""
    fixed = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    if hf in fixed:
        return fixed[hf]
    layer, rest = hf.removeprefix("model.layers.").split(".", 1)
    part = {
        "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
        "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
    }[rest.removesuffix(".weight")]
    return f"blk.{layer}.{part}.weight"


def write_llama_gguf(
    path: Path,
    config: ModelConfig,
    state: dict[str, torch.Tensor],
    qtype: GGMLQuantizationType = Q.F32,
    *,
    arch: str = "llama",
    linear_rope_factor: float | None = None,
    tokenizer_pre: str = "smollm",
    extra_tensors: dict[str, np.ndarray] | None = None,
) -> None:
    """Write `state` (HF names and layout) as llama.cpp would: q/k rows permuted, 2-D weights in
    `qtype`, 1-D norms in F32, `output.weight` omitted when the config ties embeddings."""
    w = GGUFWriter(str(path), arch)
    w.add_block_count(config.num_hidden_layers)
    w.add_context_length(config.max_position_embeddings)
    w.add_embedding_length(config.hidden_size)
    w.add_feed_forward_length(config.intermediate_size)
    w.add_head_count(config.num_attention_heads)
    w.add_head_count_kv(config.num_key_value_heads)
    w.add_layer_norm_rms_eps(config.rms_norm_eps)
    w.add_rope_freq_base(config.rope_theta)
    w.add_rope_dimension_count(config.head_dim)
    w.add_vocab_size(config.vocab_size)
    if linear_rope_factor is not None:
        w.add_rope_scaling_type(RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(linear_rope_factor)
    tokens, types = vocab()
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(tokenizer_pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(MERGES)
    w.add_bos_token_id(tokens.index("<|im_start|>"))
    w.add_eos_token_id(tokens.index("<|im_end|>"))
    w.add_add_bos_token(False)
    w.add_chat_template("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    for name, t in state.items():
        if name == "lm_head.weight" and config.tie_word_embeddings:
            continue
        a = t.detach().float().numpy()
        if name.endswith("q_proj.weight"):
            a = llamacpp_permute(a, config.num_attention_heads)
        elif name.endswith("k_proj.weight"):
            a = llamacpp_permute(a, config.num_key_value_heads)
        if a.ndim == 1 or qtype == Q.F32:
            w.add_tensor(gguf_name(name), np.ascontiguousarray(a, dtype=np.float32))
        else:
            w.add_tensor(gguf_name(name), quantize(np.ascontiguousarray(a), qtype), raw_dtype=qtype)
    for name, a in (extra_tensors or {}).items():
        w.add_tensor(name, a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def reference_dequantize(blocks: np.ndarray, qtype: GGMLQuantizationType, cols: int) -> np.ndarray:
    """Decode Q8_0 / Q4_0 / Q4_1 rows straight from the ggml block layouts (32 values per block).

    Q8_0: f16 d, int8 q[32]                    -> d * q
    Q4_0: f16 d, 16 bytes (lo nibbles 0-15, hi 16-31) -> d * (nibble - 8)
    Q4_1: f16 d, f16 m, 16 bytes                -> d * nibble + m
    """
    rows = blocks.shape[0]
    b = blocks.reshape(rows, cols // 32, -1)
    d = b[..., 0:2].copy().view(np.float16).astype(np.float32)
    if qtype == Q.Q8_0:
        return (d * b[..., 2:].copy().view(np.int8).astype(np.float32)).reshape(rows, cols)
    offset = 4 if qtype == Q.Q4_1 else 2
    qs = b[..., offset:]
    nibbles = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.float32)
    if qtype == Q.Q4_0:
        return (d * (nibbles - 8)).reshape(rows, cols)
    m = b[..., 2:4].copy().view(np.float16).astype(np.float32)
    return (d * nibbles + m).reshape(rows, cols)
