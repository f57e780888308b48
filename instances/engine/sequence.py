"""One request inside an engine: its tokens, how many are in the KV cache, and its blocks.

As in vLLM v1 there is no prefill or decode phase: a sequence has `num_tokens` tokens (prompt plus
output) of which `num_computed_tokens` have K/V in the cache. The scheduler computes the difference,
in chunks, and a sample is drawn whenever the computed count reaches the token count.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

from instances.types import EngineRequest, FinishReason, SamplingParams, TokenLogprob
from kvstore.block_keys import ROOT, BlockHash, hash_block


class SequenceStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    SUSPENDED = "suspended"  # held for a migration: keeps its blocks, neither scheduled nor reported
    FINISHED = "finished"


@dataclass(eq=False)
class Sequence:
    """Mutable per-request engine state. Owned by the scheduler; the block manager edits `block_ids`,
    `num_offered_blocks` and `private_blocks`.

    Derived fields, kept exact so the per-step code reads attributes instead of recomputing them:
    - `num_tokens` is always `len(prompt_token_ids) + len(output_token_ids)`: the prompt never
      changes after construction and output tokens are only added through `append_output`;
    - `num_prompt_tokens` is `len(prompt_token_ids)`;
    - `priority_key` is `(priority, deadline, arrival_time, order)`, fixed at construction (none
      changes afterwards); `deadline` is `arrival_time + slo_ttft_s` (infinite without a TTFT SLO).
    """

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
    error: str | None = None  # why it finished with FinishReason.ERROR
    salt: str = ""
    slo_ttft_s: float | None = None
    slo_tpot_s: float | None = None
    # prefix-cache bookkeeping of the block manager (see `BlockManager.cache_full_blocks`): how many
    # leading full blocks were already offered to the cache, and the indices of those among them
    # left private because an identical block was cached first. `BlockManager.free` resets both.
    num_offered_blocks: int = 0
    private_blocks: list[int] = field(default_factory=list)
    num_tokens: int = field(init=False)
    num_prompt_tokens: int = field(init=False)
    priority_key: tuple[int, float, float, int] = field(init=False)

    def __post_init__(self) -> None:
        self.num_prompt_tokens = len(self.prompt_token_ids)
        self.num_tokens = self.num_prompt_tokens + len(self.output_token_ids)
        # smaller is served first: priority, then TTFT deadline, then arrival, then admission order
        deadline = math.inf if self.slo_ttft_s is None else self.arrival_time + self.slo_ttft_s
        self.priority_key = (self.priority, deadline, self.arrival_time, self.order)

    @classmethod
    def from_request(cls, req: EngineRequest, order: int, eos_token_ids: tuple[int, ...]) -> Sequence:
        """A new sequence for `req`; a resumed request starts with the output it already had
        (reported: `num_emitted`), none of it computed."""
        resumed = req.resumed
        output = list(resumed.output_token_ids) if resumed is not None else []
        return cls(
            request_id=req.request_id,
            prompt_token_ids=list(req.prompt_token_ids),
            sampling=req.sampling,
            arrival_time=req.arrival_time,
            priority=req.priority,
            eos_token_ids=req.eos_token_ids or eos_token_ids,
            order=order,
            output_token_ids=output,
            output_logprobs=list(resumed.output_logprobs or ()) if resumed is not None else [],
            num_emitted=len(output),
            slo_ttft_s=req.slo_ttft_s,
            slo_tpot_s=req.slo_tpot_s,
        )

    def append_output(self, token_id: int, logprob: TokenLogprob | None = None) -> None:
        """Append one sampled token (and its logprob, when reported); the only way output grows."""
        self.output_token_ids.append(token_id)
        if logprob is not None:
            self.output_logprobs.append(logprob)
        self.num_tokens += 1

    def token_slice(self, start: int, end: int) -> list[int]:
        """Tokens [start, end) of prompt + output without copying the whole list."""
        n_prompt = self.num_prompt_tokens
        if end <= n_prompt:
            return self.prompt_token_ids[start:end]
        if start >= n_prompt:
            return self.output_token_ids[start - n_prompt : end - n_prompt]
        return self.prompt_token_ids[start:] + self.output_token_ids[: end - n_prompt]

    def update_block_hashes(self, block_size: int) -> None:
        """Extend `block_hashes` to cover every full block of the current tokens."""
        n_full = self.num_tokens // block_size
        hashes = self.block_hashes
        if len(hashes) >= n_full:
            return
        parent = hashes[-1] if hashes else ROOT
        for i in range(len(hashes), n_full):
            parent = hash_block(parent, self.token_slice(i * block_size, (i + 1) * block_size), self.salt)
            hashes.append(parent)
