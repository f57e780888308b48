"""The executor boundary: what turns a scheduled batch into sampled tokens.

The engine's scheduler and block manager never touch torch tensors of the model; they hand a
`ScheduledBatch` to an `Executor`. The torch `ModelRunner` is the real one; the simulator plugs in
an executor whose forward pass is a latency model.
"""

from __future__ import annotations

from typing import Protocol

import torch

from instances.engine.config import EngineConfig
from instances.engine.sampler import sample
from instances.engine.scheduler import SampledToken, ScheduledBatch
from instances.kernels.attention import AttentionMetadata
from instances.models.base import CausalLM


class Executor(Protocol):
    """Runs one step's forward pass and sampling."""

    def execute(self, batch: ScheduledBatch) -> dict[str, SampledToken]:
        """Compute K/V for every scheduled token and sample for each `needs_sample` sequence.

        Returns request id -> sampled token for exactly the sequences that need a sample.
        """
        ...


class ModelRunner:
    """The torch executor: owns the model and the paged KV cache tensors of one engine."""

    def __init__(self, model: CausalLM, config: EngineConfig, device: str = "cpu") -> None:
        self.model = model
        self.config = config
        self.device = torch.device(device)
        mc = model.config
        shape = (2, config.num_blocks, config.block_size, mc.num_key_value_heads, mc.head_dim)
        dtype = next(model.parameters()).dtype  # type: ignore[attr-defined]
        self.kv_caches = [torch.zeros(shape, dtype=dtype, device=self.device) for _ in range(mc.num_hidden_layers)]
        self.generator = torch.Generator()
        self.generator.manual_seed(config.seed)

    @torch.inference_mode()
    def execute(self, batch: ScheduledBatch) -> dict[str, SampledToken]:
        bs = self.config.block_size
        input_ids: list[int] = []
        positions: list[int] = []
        slots: list[int] = []
        sample_rows: list[int] = []
        max_blocks = max(len(s.seq.block_ids) for s in batch.seqs)
        tables = torch.zeros((len(batch.seqs), max_blocks), dtype=torch.int32)
        for i, item in enumerate(batch.seqs):
            seq, start, end = item.seq, item.start, item.start + item.num_new_tokens
            input_ids.extend(seq.token_slice(start, end))
            positions.extend(range(start, end))
            blocks = seq.block_ids
            slots.extend(blocks[p // bs] * bs + p % bs for p in range(start, end))
            tables[i, : len(blocks)] = torch.tensor(blocks, dtype=torch.int32)
            if item.needs_sample:
                sample_rows.append(len(input_ids) - 1)
        meta = AttentionMetadata(
            query_lens=[s.num_new_tokens for s in batch.seqs],
            context_lens=[s.start + s.num_new_tokens for s in batch.seqs],
            block_tables=tables.to(self.device),
            slot_mapping=torch.tensor(slots, dtype=torch.int64, device=self.device),
            block_size=bs,
        )
        hidden = self.model.forward(
            torch.tensor(input_ids, dtype=torch.int64, device=self.device),
            torch.tensor(positions, dtype=torch.int64, device=self.device),
            meta,
            self.kv_caches,
        )
        if not sample_rows:
            return {}
        logits = self.model.compute_logits(hidden[torch.tensor(sample_rows, device=self.device)])
        seqs = [s.seq for s in batch.seqs if s.needs_sample]
        tokens = sample(logits.float().cpu(), seqs, self.generator)
        return {seq.request_id: tok for seq, tok in zip(seqs, tokens)}
