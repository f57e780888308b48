"""One request inside an engine: its tokens, how many are in the KV cache, and its blocks.

As in vLLM v1 there is no prefill or decode phase: a sequence has `num_tokens` tokens (prompt plus
output) of which `num_computed_tokens` have K/V in the cache. The scheduler computes the difference,
in chunks, and a sample is drawn whenever the computed count reaches the token count.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import torch

from instances.types import EngineRequest, FinishReason, SamplingParams, TokenLogprob
from kvstore.block_keys import ROOT, BlockHash, hash_block


class SequenceStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(eq=False)
class Sequence:
    """Mutable per-request engine state. Owned by the scheduler; the block manager edits `block_ids`."""

    request_id: str
    prompt_token_ids: list[int]
    sampling: SamplingParams
    arrival_time: float
    priority: int
    eos_token_ids: tuple[int, ...]
    order: int  # admission counter: a total order among equal (priority, arrival_time)
    output_token_ids: list[int] = field(default_factory=list)
    output_logprobs: list[TokenLogprob] = field(default_factory=list)
    num_computed_tokens: int = 0
    num_cached_tokens: int = 0  # prompt tokens found in the prefix cache at first admission
    block_ids: list[int] = field(default_factory=list)
    block_hashes: list[BlockHash] = field(default_factory=list)
    status: SequenceStatus = SequenceStatus.WAITING
    finish_reason: FinishReason | None = None
    num_preemptions: int = 0
    num_emitted: int = 0  # output tokens already reported in a delta
    generator: torch.Generator | None = None
    salt: str = ""

    @classmethod
    def from_request(cls, req: EngineRequest, order: int, eos_token_ids: tuple[int, ...]) -> Sequence:
        gen = None
        if req.sampling.seed is not None:
            gen = torch.Generator()
            gen.manual_seed(req.sampling.seed)
        return cls(
            request_id=req.request_id,
            prompt_token_ids=list(req.prompt_token_ids),
            sampling=req.sampling,
            arrival_time=req.arrival_time,
            priority=req.priority,
            eos_token_ids=req.eos_token_ids or eos_token_ids,
            order=order,
            generator=gen,
        )

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_token_ids) + len(self.output_token_ids)

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)

    def token_slice(self, start: int, end: int) -> list[int]:
        """Tokens [start, end) of prompt + output without copying the whole list."""
        n_prompt = len(self.prompt_token_ids)
        if end <= n_prompt:
            return self.prompt_token_ids[start:end]
        if start >= n_prompt:
            return self.output_token_ids[start - n_prompt : end - n_prompt]
        return self.prompt_token_ids[start:] + self.output_token_ids[: end - n_prompt]

    def update_block_hashes(self, block_size: int) -> None:
        """Extend `block_hashes` to cover every full block of the current tokens."""
        n_full = self.num_tokens // block_size
        parent = self.block_hashes[-1] if self.block_hashes else ROOT
        for i in range(len(self.block_hashes), n_full):
            parent = hash_block(parent, self.token_slice(i * block_size, (i + 1) * block_size), self.salt)
            self.block_hashes.append(parent)

    def priority_key(self) -> tuple[int, float, int]:
        """Smaller is served first: priority, then arrival, then admission order."""
        return (self.priority, self.arrival_time, self.order)
