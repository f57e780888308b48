"""The contract between the model runner and a torch model.

A batch is a flat concatenation of the new tokens of every scheduled sequence, in batch order.
Each layer's KV cache is one tensor of shape [2, num_blocks, block_size, num_kv_heads, head_dim]
(index 0 keys, 1 values); the model writes the new tokens' K and V at `slot_mapping` and attends
over each sequence's blocks listed in `block_tables`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from instances.config import ModelConfig


@dataclass
class AttentionMetadata:
    """Where the tokens of a flat batch live in the paged KV cache.

    query_lens[i]: new tokens of sequence i in this step (1 for a decode, a chunk for a prefill).
    context_lens[i]: tokens of sequence i in the cache once this step's tokens are written
        (so the new tokens sit at positions context_lens[i] - query_lens[i] ... context_lens[i] - 1).
    block_tables: int32 [num_seqs, max_blocks], padded with 0 past each sequence's blocks.
    slot_mapping: int64 [num_tokens], block_id * block_size + offset for every new token.
    """

    query_lens: list[int]
    context_lens: list[int]
    block_tables: torch.Tensor
    slot_mapping: torch.Tensor
    block_size: int

    @property
    def num_seqs(self) -> int:
        return len(self.query_lens)


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
