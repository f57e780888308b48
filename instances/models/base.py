"""The contract between the model runner and a torch model.

A batch is a flat concatenation of the new tokens of every scheduled sequence, in batch order.
Each layer's KV cache is one tensor of shape [2, num_blocks, block_size, num_kv_heads, head_dim]
(index 0 keys, 1 values); the model writes the new tokens' K and V at `slot_mapping` and attends
over each sequence's blocks listed in `block_tables` (`AttentionMetadata`, owned by the kernels).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

from instances.config import ModelConfig
from instances.kernels.attention import AttentionMetadata


class CausalLM(Protocol):
    """A decoder-only language model runnable over a paged KV cache."""

    config: ModelConfig

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        meta: AttentionMetadata,
        kv_caches: Sequence[torch.Tensor],
    ) -> torch.Tensor:
        """Hidden states [num_tokens, hidden] of the flat batch; writes K/V into `kv_caches`."""
        ...

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits [n, vocab] (float32) for hidden states [n, hidden]."""
        ...

    def forward_dense(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Reference path with no cache: logits [batch, seq, vocab] for input_ids [batch, seq]."""
        ...
