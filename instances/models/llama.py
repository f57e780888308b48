"""Llama-family decoder (Llama 2/3, SmolLM, TinyLlama...) implementing `CausalLM`.

Parameter names equal Hugging Face's `LlamaForCausalLM`, so an HF state dict loads with
`load_state_dict` (a tied checkpoint may omit `lm_head.weight`; see `tie_weights`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from instances.config import ModelConfig
from instances.kernels.attention import AttentionMetadata, paged_attention, plan_attention, write_kv
from instances.models.layers import Attend, LlamaDecoderLayer, RMSNorm
from instances.models.rope import RotaryEmbedding


class LlamaModel(nn.Module):
    """Embedding, decoder layers and final norm (HF's `model.*` submodule)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(LlamaDecoderLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(config)

    def run(self, input_ids: torch.Tensor, positions: torch.Tensor, attends: Sequence[Attend]) -> torch.Tensor:
        """Final-normed hidden states [*input_ids.shape, hidden]; layer i attends with attends[i]."""
        x = self.embed_tokens(input_ids)
        cos, sin = self.rotary_emb.cos_sin(positions, x.dtype)
        for layer, attend in zip(self.layers, attends, strict=True):
            x = layer(x, cos, sin, attend)
        return self.norm(x)


class LlamaForCausalLM(nn.Module):
    """A Llama decoder with an LM head, runnable densely or over a paged KV cache."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.model = LlamaModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.scale = config.head_dim**-0.5
        self.tie_weights()

    def tie_weights(self) -> None:
        """Share the embedding with the LM head when the config says so.

        Call again after `load_state_dict(..., assign=True)`, which replaces parameters.
        """
        if self.config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        meta: AttentionMetadata,
        kv_caches: Sequence[torch.Tensor],
    ) -> torch.Tensor:
        """Final-normed hidden states [num_tokens, hidden] of the flat batch.

        input_ids and positions are [num_tokens]. Writes each layer's new K/V into kv_caches[layer]
        at `meta.slot_mapping` before attending.
        """

        plan = plan_attention(meta)  # the batch layout, once for every layer

        def paged(cache: torch.Tensor) -> Attend:
            def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
                write_kv(cache, k, v, meta.slot_mapping)
                return paged_attention(q, cache, plan, self.scale)

            return attend

        return self.model.run(input_ids, positions, [paged(c) for c in kv_caches])

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits [n, vocab] in float32 for final-normed hidden states [n, hidden]."""
        return self.lm_head(hidden).float()

    def forward_dense(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Logits [batch, seq, vocab] (float32) of a plain causal forward with no cache."""
        positions = torch.arange(input_ids.shape[1]).expand_as(input_ids)
        hidden = self.model.run(input_ids, positions, [self._dense_attend] * len(self.model.layers))
        return self.compute_logits(hidden)

    def _dense_attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Causal attention over [batch, seq, heads, head_dim] tensors."""
        o = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
            is_causal=True, scale=self.scale, enable_gqa=True,
        )
        return o.transpose(1, 2)
