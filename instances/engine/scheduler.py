"""The local scheduler: continuous batching with chunked prefill, priorities and preemption.

Policy over the block manager's mechanism. Each step:
1. Running sequences, highest priority first, get their next tokens (1 for a decode, a chunk of the
   remaining prompt otherwise) within the step's token budget; prompt chunks also within the
   prefill budget, which is `high_priority_prefill_tokens` while a HIGH-priority sequence runs
   (a prefill chunk is what makes a memory-bound decode step long) and the step budget otherwise. When blocks run out, the running
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
from operator import attrgetter
from typing import NamedTuple

from instances.engine.block_manager import BlockManager
from instances.engine.config import EngineConfig
from instances.engine.sequence import Sequence, SequenceStatus
from instances.types import FinishReason, Priority, TokenLogprob


class ScheduledSeq(NamedTuple):
    """`num_new_tokens` tokens of `seq`, starting at position `start`, are computed this step.

    `needs_sample`: this step computes the sequence's last known token, so a new one is drawn.
    Immutable; one is built per scheduled sequence per step, hence a tuple rather than a dataclass.
    """

    seq: Sequence
    start: int
    num_new_tokens: int
    needs_sample: bool

    @classmethod
    def of(cls, seq: Sequence, start: int, num_new_tokens: int) -> ScheduledSeq:
        return cls(seq, start, num_new_tokens, start + num_new_tokens == seq.num_tokens)


PRIORITY_KEY = attrgetter("priority_key")
"""Batch order of the running set: `Sequence.priority_key`, smallest first."""


def prefill_backlog(seq: Sequence) -> int:
    """Tokens of a running `seq` still to prefill: its uncomputed tokens, unless only one is left
    (a decode's newest sample, or the last token of a prompt, which costs what a decode does)."""
    uncomputed = seq.num_tokens - seq.num_computed_tokens
    return uncomputed if uncomputed > 1 else 0


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
    """One sequence's sample of a step; `error` instead when its row could not be sampled (the
    sequence then finishes with `FinishReason.ERROR`, and `token_id` means nothing)."""

    token_id: int
    logprob: TokenLogprob | None = None
    error: str | None = None


class LocalScheduler:
    """Owns the waiting queue, the running set and the block manager of one engine.

    Running totals, updated with every change instead of summed over the queues at each snapshot
    (`Engine.stats`): every transition of a sequence (add, admit, step, preempt, finish, abort)
    adjusts them, so at any moment outside `schedule` and `update` they equal
    - `waiting_tokens`: sum of `num_tokens` over the waiting sequences;
    - `running_tokens`: sum of `num_tokens` over the running sequences;
    - `running_backlog`: sum of `prefill_backlog` over the running sequences;
    - `num_high_priority`: requests of priority HIGH in `requests` (`track`/`untrack` keep it).
    """

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.blocks = BlockManager(config.num_blocks, config.block_size, config.enable_prefix_caching)
        self.waiting: list[tuple[tuple[int, float, float, int], Sequence]] = []  # heap by priority key
        self.running: list[Sequence] = []
        self.requests: dict[str, Sequence] = {}
        self.num_preemptions = 0
        self.waiting_tokens = 0
        self.running_tokens = 0
        self.running_backlog = 0
        self.num_high_priority = 0

    @property
    def tokens_in_flight(self) -> int:
        """Prompt and output tokens of every running and waiting sequence."""
        return self.running_tokens + self.waiting_tokens

    @property
    def queued_prompt_tokens(self) -> int:
        """Tokens still to prefill: all of a waiting sequence's, a running one's `prefill_backlog`."""
        return self.running_backlog + self.waiting_tokens

    # ---- queue management -------------------------------------------------------------------
    def track(self, seq: Sequence) -> None:
        """Enter `seq` in `requests` (it must not be there)."""
        self.requests[seq.request_id] = seq
        if seq.priority == Priority.HIGH:
            self.num_high_priority += 1

    def untrack(self, request_id: str) -> Sequence | None:
        """Remove a request from `requests`; returns it (None if unknown)."""
        seq = self.requests.pop(request_id, None)
        if seq is not None and seq.priority == Priority.HIGH:
            self.num_high_priority -= 1
        return seq

    def head_demand_blocks(self) -> int:
        """Blocks the head-of-line waiting sequence needs for its tokens (0 when none waits)."""
        if not self.waiting:
            return 0
        return -(-self.waiting[0][1].num_tokens // self.config.block_size)

    def add(self, seq: Sequence) -> None:
        if seq.request_id in self.requests:
            raise ValueError(f"request id {seq.request_id!r} is already in this engine")
        self.track(seq)
        heapq.heappush(self.waiting, (seq.priority_key, seq))
        self.waiting_tokens += seq.num_tokens

    def abort(self, request_id: str) -> Sequence | None:
        """Remove a request wherever it is, freeing its blocks. Returns it, or None if unknown."""
        seq = self.untrack(request_id)
        if seq is None:
            return None
        self.detach(seq)
        self.blocks.free(seq)
        seq.status = SequenceStatus.FINISHED
        seq.finish_reason = FinishReason.ABORT
        return seq

    def detach(self, seq: Sequence) -> None:
        """Take a running or waiting `seq` out of the running set or the waiting queue, keeping its
        blocks; the running totals follow. (Abort and a migration's suspend.)"""
        if seq.status is SequenceStatus.RUNNING:
            self.running.remove(seq)
            self.running_tokens -= seq.num_tokens
            self.running_backlog -= prefill_backlog(seq)
        else:
            self.waiting = [item for item in self.waiting if item[1] is not seq]
            heapq.heapify(self.waiting)
            self.waiting_tokens -= seq.num_tokens

    def attach(self, seq: Sequence) -> None:
        """Put `seq` (in no queue) into the running set when it holds computed K/V, else into the
        waiting queue; the running totals follow. (Preemption, a migration's resume or commit.)"""
        if seq.num_computed_tokens > 0 and seq.block_ids:
            seq.status = SequenceStatus.RUNNING
            self.running.append(seq)
            self.running_tokens += seq.num_tokens
            self.running_backlog += prefill_backlog(seq)
        else:
            seq.status = SequenceStatus.WAITING
            heapq.heappush(self.waiting, (seq.priority_key, seq))
            self.waiting_tokens += seq.num_tokens

    def has_work(self) -> bool:
        return bool(self.running or self.waiting)

    # ---- one step ---------------------------------------------------------------------------
    def schedule(self) -> ScheduledBatch:
        """Choose this step's work (see the module docstring). Allocates the blocks it needs."""
        batch = ScheduledBatch()
        budget = self.config.max_num_batched_tokens
        running, allocate = self.running, self.blocks.allocate
        running.sort(key=PRIORITY_KEY)
        prefill = self._prefill_budget()
        i = 0
        while i < len(running) and budget > 0:
            seq = running[i]
            start = seq.num_computed_tokens
            left = seq.num_tokens - start
            prefilling = left > 1  # one token left costs what a decode does
            n = min(left, budget, prefill) if prefilling else 1
            if n == 0:  # the prefill budget is spent: only decodes follow
                i += 1
                continue
            while not allocate(seq, start + n):
                victim = running.pop()
                self._preempt(victim)
                batch.preempted.append(victim)
                if victim is seq:
                    break
            else:
                batch.seqs.append(ScheduledSeq.of(seq, start, n))
                budget -= n
                prefill -= n if prefilling else 0
                i += 1
        if not batch.preempted:
            self._admit(batch, budget, prefill)
        return batch

    def _prefill_budget(self) -> int:
        """Prompt tokens this step may compute: `high_priority_prefill_tokens` while a HIGH-priority
        sequence runs (the running set is in batch order), else the whole step budget."""
        cap = self.config.high_priority_prefill_tokens
        if cap is not None and self.running and self.running[0].priority == Priority.HIGH:
            return cap
        return self.config.max_num_batched_tokens

    def _admit(self, batch: ScheduledBatch, budget: int, prefill: int) -> None:
        while self.waiting and budget > 0 and len(self.running) < self.config.max_num_seqs:
            seq = self.waiting[0][1]
            cached = self.blocks.find_cached_prefix(seq)
            computed = len(cached) * self.config.block_size
            left = seq.num_tokens - computed
            prefilling = left > 1
            n = min(left, budget, prefill) if prefilling else 1
            if n == 0 or not self.blocks.allocate(seq, computed + n, cached):
                break
            prefill -= n if prefilling else 0
            heapq.heappop(self.waiting)
            if seq.num_preemptions == 0:
                seq.num_cached_tokens = computed
            seq.num_computed_tokens = computed
            seq.status = SequenceStatus.RUNNING
            self.running.append(seq)
            self.waiting_tokens -= seq.num_tokens
            self.running_tokens += seq.num_tokens
            self.running_backlog += prefill_backlog(seq)
            batch.seqs.append(ScheduledSeq.of(seq, computed, n))
            budget -= n

    def _preempt(self, seq: Sequence) -> None:
        """Send `seq` (already taken out of `running`) back to the waiting queue, freeing its blocks."""
        self.running_tokens -= seq.num_tokens
        self.running_backlog -= prefill_backlog(seq)
        self.blocks.free(seq)
        seq.num_computed_tokens = 0
        seq.num_preemptions += 1
        self.num_preemptions += 1
        self.attach(seq)  # to the waiting queue: it holds nothing now

    def update(self, batch: ScheduledBatch, sampled: Mapping[str, SampledToken]) -> list[Sequence]:
        """Apply a step's results: advance computed counts, append samples, finish sequences.

        Returns the sequences that finished in this step (already removed and freed).
        """
        finished: list[Sequence] = []
        caching = self.blocks.enable_prefix_caching
        backlog = self.running_backlog
        for item in batch.seqs:
            seq = item.seq
            backlog -= prefill_backlog(seq)
            seq.num_computed_tokens = item.start + item.num_new_tokens
            if item.needs_sample:
                s = sampled[seq.request_id]
                if s.error is not None:
                    seq.error = s.error
                else:
                    seq.append_output(s.token_id, s.logprob)
                    self.running_tokens += 1
            else:
                backlog += prefill_backlog(seq)  # a sampled sequence has one token left: no backlog
            if caching:
                self.blocks.cache_full_blocks(seq)
            if item.needs_sample:
                reason = self._finish_reason(seq)
                if reason is not None:
                    self._finish(seq, reason)
                    finished.append(seq)
        self.running_backlog = backlog
        return finished

    def _finish_reason(self, seq: Sequence) -> FinishReason | None:
        if seq.error is not None:
            return FinishReason.ERROR
        last = seq.output_token_ids[-1]
        sp = seq.sampling
        if last in sp.stop_token_ids or (not sp.ignore_eos and last in seq.eos_token_ids):
            return FinishReason.STOP
        if len(seq.output_token_ids) >= sp.max_tokens or seq.num_tokens >= self.config.max_model_len:
            return FinishReason.LENGTH
        return None

    def _finish(self, seq: Sequence, reason: FinishReason) -> None:
        """End a running sequence that was just sampled (its `prefill_backlog` is 0)."""
        self.running.remove(seq)
        self.running_tokens -= seq.num_tokens
        self.blocks.free(seq)
        self.untrack(seq.request_id)
        seq.status = SequenceStatus.FINISHED
        seq.finish_reason = reason
