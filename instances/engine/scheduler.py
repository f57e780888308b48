"""The local scheduler: continuous batching with chunked prefill, priorities and preemption.

Policy over the block manager's mechanism. Each step:
1. Running sequences, highest priority first, get their next tokens (1 for a decode, a chunk of the
   remaining prompt otherwise) within the step's token budget. When blocks run out, the running
   sequence with the lowest priority (then latest arrival) is preempted by recompute: its blocks are
   freed and it returns to the waiting queue, to be recomputed later (its full blocks often still sit
   in the prefix cache).
2. If nobody was preempted, waiting sequences are admitted in (priority, arrival) order, reusing their
   longest cached prefix, while budget, blocks and the running-set bound allow. Admission stops at the
   first sequence that does not fit (no overtaking), so a large request cannot starve.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field

from instances.engine.block_manager import BlockManager
from instances.engine.config import EngineConfig
from instances.engine.sequence import Sequence, SequenceStatus
from instances.types import FinishReason, TokenLogprob


@dataclass(frozen=True)
class ScheduledSeq:
    """`num_new_tokens` tokens of `seq`, starting at position `start`, are computed this step.

    `needs_sample`: this step computes the sequence's last known token, so a new one is drawn.
    """

    seq: Sequence
    start: int
    num_new_tokens: int
    needs_sample: bool

    @classmethod
    def of(cls, seq: Sequence, start: int, num_new_tokens: int) -> ScheduledSeq:
        return cls(seq, start, num_new_tokens, start + num_new_tokens == seq.num_tokens)


@dataclass
class ScheduledBatch:
    """One step's work, in batch order, and the sequences preempted to make room for it."""

    seqs: list[ScheduledSeq] = field(default_factory=list)
    preempted: list[Sequence] = field(default_factory=list)

    @property
    def num_tokens(self) -> int:
        return sum(s.num_new_tokens for s in self.seqs)

    def __bool__(self) -> bool:
        return bool(self.seqs)


@dataclass(frozen=True)
class SampledToken:
    token_id: int
    logprob: TokenLogprob | None = None


class LocalScheduler:
    """Owns the waiting queue, the running set and the block manager of one engine."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.blocks = BlockManager(config.num_blocks, config.block_size, config.enable_prefix_caching)
        self.waiting: list[tuple[tuple[int, float, int], Sequence]] = []  # heap by priority key
        self.running: list[Sequence] = []
        self.requests: dict[str, Sequence] = {}
        self.num_preemptions = 0

    # ---- queue management -------------------------------------------------------------------
    def add(self, seq: Sequence) -> None:
        if seq.request_id in self.requests:
            raise ValueError(f"request id {seq.request_id!r} is already in this engine")
        self.requests[seq.request_id] = seq
        heapq.heappush(self.waiting, (seq.priority_key(), seq))

    def abort(self, request_id: str) -> Sequence | None:
        """Remove a request wherever it is, freeing its blocks. Returns it, or None if unknown."""
        seq = self.requests.pop(request_id, None)
        if seq is None:
            return None
        if seq.status is SequenceStatus.RUNNING:
            self.running.remove(seq)
            self.blocks.free(seq)
        else:
            self.waiting = [item for item in self.waiting if item[1] is not seq]
            heapq.heapify(self.waiting)
        seq.status = SequenceStatus.FINISHED
        seq.finish_reason = FinishReason.ABORT
        return seq

    def has_work(self) -> bool:
        return bool(self.running or self.waiting)

    # ---- one step ---------------------------------------------------------------------------
    def schedule(self) -> ScheduledBatch:
        """Choose this step's work (see the module docstring). Allocates the blocks it needs."""
        batch = ScheduledBatch()
        budget = self.config.max_num_batched_tokens
        self.running.sort(key=Sequence.priority_key)
        i = 0
        while i < len(self.running) and budget > 0:
            seq = self.running[i]
            n = min(seq.num_tokens - seq.num_computed_tokens, budget)
            while not self.blocks.allocate(seq, seq.num_computed_tokens + n):
                victim = self.running.pop()
                self._preempt(victim)
                batch.preempted.append(victim)
                if victim is seq:
                    break
            else:
                batch.seqs.append(ScheduledSeq.of(seq, seq.num_computed_tokens, n))
                budget -= n
                i += 1
        if not batch.preempted:
            self._admit(batch, budget)
        return batch

    def _admit(self, batch: ScheduledBatch, budget: int) -> None:
        while self.waiting and budget > 0 and len(self.running) < self.config.max_num_seqs:
            seq = self.waiting[0][1]
            cached = self.blocks.find_cached_prefix(seq)
            computed = len(cached) * self.config.block_size
            n = min(seq.num_tokens - computed, budget)
            if not self.blocks.allocate(seq, computed + n, cached):
                break
            heapq.heappop(self.waiting)
            if seq.num_preemptions == 0:
                seq.num_cached_tokens = computed
            seq.num_computed_tokens = computed
            seq.status = SequenceStatus.RUNNING
            self.running.append(seq)
            batch.seqs.append(ScheduledSeq.of(seq, computed, n))
            budget -= n

    def _preempt(self, seq: Sequence) -> None:
        self.blocks.free(seq)
        seq.num_computed_tokens = 0
        seq.status = SequenceStatus.WAITING
        seq.num_preemptions += 1
        self.num_preemptions += 1
        heapq.heappush(self.waiting, (seq.priority_key(), seq))

    def update(self, batch: ScheduledBatch, sampled: Mapping[str, SampledToken]) -> list[Sequence]:
        """Apply a step's results: advance computed counts, append samples, finish sequences.

        Returns the sequences that finished in this step (already removed and freed).
        """
        finished: list[Sequence] = []
        for item in batch.seqs:
            seq = item.seq
            seq.num_computed_tokens = item.start + item.num_new_tokens
            if item.needs_sample:
                s = sampled[seq.request_id]
                seq.output_token_ids.append(s.token_id)
                if s.logprob is not None:
                    seq.output_logprobs.append(s.logprob)
            self.blocks.cache_full_blocks(seq)
            if item.needs_sample:
                reason = self._finish_reason(seq)
                if reason is not None:
                    self._finish(seq, reason)
                    finished.append(seq)
        return finished

    def _finish_reason(self, seq: Sequence) -> FinishReason | None:
        last = seq.output_token_ids[-1]
        sp = seq.sampling
        if last in sp.stop_token_ids or (not sp.ignore_eos and last in seq.eos_token_ids):
            return FinishReason.STOP
        if len(seq.output_token_ids) >= sp.max_tokens or seq.num_tokens >= self.config.max_model_len:
            return FinishReason.LENGTH
        return None

    def _finish(self, seq: Sequence, reason: FinishReason) -> None:
        self.running.remove(seq)
        self.blocks.free(seq)
        del self.requests[seq.request_id]
        seq.status = SequenceStatus.FINISHED
        seq.finish_reason = reason
