"""One engine replica: the local scheduler plus an executor, stepped by its owner.

`Engine` is synchronous and single-threaded; an actor or a simulator drives `step()`. It reads no
wall clock itself: the clock used to time steps is injected.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from flotilla.errors import TransferRefused
from instances.engine.config import EngineConfig
from instances.engine.decode_run import DecodeRun, advance_decode_run, plan_decode_run
from instances.engine.executor import Executor
from instances.engine.migration import MigrationBooks, SequenceState
from instances.engine.scheduler import LocalScheduler, SampledToken, ScheduledBatch
from instances.engine.sequence import Sequence, SequenceStatus
from instances.types import (
    EngineRequest,
    FinishReason,
    InstanceStats,
    MigrationCandidate,
    RequestBlocks,
    RequestDelta,
    StepOutput,
)


class Engine:
    """Continuous-batching engine over a paged KV cache."""

    def __init__(
        self,
        config: EngineConfig,
        executor: Executor,
        *,
        instance_id: str = "engine-0",
        eos_token_ids: tuple[int, ...] = (),
        clock: Callable[[], float] = time.perf_counter,
        vocab_size: int | None = None,
    ) -> None:
        self.config = config
        self.vocab_size = vocab_size  # token ids must be below it (None: not checked)
        self.executor = executor
        self.instance_id = instance_id
        self.eos_token_ids = eos_token_ids
        self.clock = clock
        self.scheduler = LocalScheduler(config)
        self.migration = MigrationBooks(self.scheduler, config.reservation_timeout_s)
        self._order = 0
        self._steps = 0
        self._last_step_time = 0.0
        self._aborted: list[RequestDelta] = []
        # called after each executed step of `step()` with its batch and measured time (a step trace)
        self.on_step: Callable[[ScheduledBatch, float], None] | None = None

    def check(self, req: EngineRequest) -> None:
        """Raise ValueError (message for the user) if `req` can never run here. Mutates nothing."""
        req.sampling.validate()
        if self.migration.draining:
            raise ValueError(f"instance {self.instance_id} is draining and accepts no new requests; "
                             "send the request again to be placed elsewhere")
        n = len(req.prompt_token_ids)
        if n == 0:
            raise ValueError("the prompt is empty")
        if n >= self.config.max_model_len:
            raise ValueError(
                f"the prompt has {n} tokens but this engine's context is {self.config.max_model_len} "
                "tokens (prompt plus at least one output token); shorten the prompt"
            )
        if req.request_id in self.scheduler.requests:
            raise ValueError(f"request id {req.request_id!r} is already in this engine")
        if self.vocab_size is not None:
            ids = [*req.prompt_token_ids, *(req.resumed.output_token_ids if req.resumed else ())]
            bad = next((t for t in ids if not 0 <= t < self.vocab_size), None)
            if bad is not None:
                raise ValueError(f"token id {bad} is out of range (the vocabulary has {self.vocab_size} tokens)")
        if req.resumed is not None:
            done = len(req.resumed.output_token_ids)
            if done >= req.sampling.max_tokens or n + done >= self.config.max_model_len:
                raise ValueError(f"request {req.request_id!r} resumes with {done} output tokens, "
                                 "which already ended it")

    def add_request(self, req: EngineRequest) -> None:
        """Queue a request after `check`ing it."""
        self.check(req)
        self._order += 1
        self.scheduler.add(Sequence.from_request(req, self._order, self.eos_token_ids))

    def abort(self, request_id: str) -> bool:
        """Abort a request and free its blocks. True if it was here. Its final delta (finish
        reason ABORT) comes out of the next `step()`."""
        seq = self.migration.drop_suspended(request_id)
        if seq is not None:
            self.scheduler.untrack(request_id)
        else:
            seq = self.scheduler.abort(request_id)
        if seq is None:
            return False
        self._aborted.append(
            RequestDelta(request_id, len(seq.output_token_ids), [], finish_reason=FinishReason.ABORT,
                         num_prompt_tokens=seq.num_prompt_tokens, num_cached_tokens=seq.num_cached_tokens)
        )
        return True

    def release(self, request_id: str) -> None:
        """End a request whose owner already knows it finished (a stop string matched): frees its
        blocks and reports nothing more for it. Unknown ids are ignored."""
        self.scheduler.abort(request_id)

    # ---- migration verbs (see instances/engine/migration.py) ----------------------------------
    def suspend(self, request_id: str) -> SequenceState:
        """Source: stop scheduling a request, keeping its blocks; its state for the destination."""
        return self.migration.suspend(request_id)

    def resume(self, request_id: str) -> bool:
        """Source: a failed migration's request runs here again."""
        return self.migration.resume(request_id)

    def release_migrated(self, request_id: str) -> bool:
        """Source: forget a suspended request that now runs elsewhere, freeing its blocks.
        False if it is not suspended here (aborted meanwhile)."""
        return self.migration.release(request_id)

    def reserve(self, request_id: str, num_tokens: int) -> list[int]:
        """Destination: hold blocks for `num_tokens` tokens of an incoming request."""
        return self.migration.reserve(request_id, num_tokens, self.clock())

    def extend_reservation(self, request_id: str, num_tokens: int) -> list[int]:
        return self.migration.extend(request_id, num_tokens, self.clock())

    def cancel_reservation(self, request_id: str) -> bool:
        return self.migration.cancel(request_id)

    def expire_reservations(self) -> list[str]:
        """The destination's watchdog; run it periodically."""
        return self.migration.expire(self.clock())

    def commit(self, state: SequenceState) -> None:
        """Destination: the migrated request joins this engine (its K/V already in the reserved
        blocks); its next tokens come out of the next steps, numbered after those it had."""
        if self.migration.draining:
            raise TransferRefused("draining", f"instance {self.instance_id} is draining")
        self._order += 1
        self.migration.commit(state, self._order)

    def request_blocks(self, request_id: str) -> RequestBlocks | None:
        """Where `request_id` stands here and its blocks (None when it is not here)."""
        seq = self.scheduler.requests.get(request_id)
        if seq is None:
            return None
        return RequestBlocks(request_id, seq.status.value, seq.num_tokens, seq.num_computed_tokens,
                             tuple(seq.block_ids))

    def is_reserved(self, request_id: str) -> bool:
        """Whether blocks are reserved here for an incoming `request_id`."""
        return request_id in self.migration.reservations

    @property
    def has_reservations(self) -> bool:
        """Whether blocks are reserved for incoming requests (the watchdog then has work)."""
        return bool(self.migration.reservations)

    def migration_candidates(self) -> list[MigrationCandidate]:
        """Every request that could move now (running or queued, not already suspended)."""
        return [
            MigrationCandidate(seq.request_id, seq.priority, seq.num_tokens, len(seq.block_ids),
                               seq.status is SequenceStatus.RUNNING, seq.order)
            for seq in self.scheduler.requests.values()
            if seq.status is not SequenceStatus.SUSPENDED
        ]

    def set_draining(self, draining: bool) -> None:
        """A draining engine refuses new requests and incoming migrations."""
        self.migration.draining = draining

    def has_unfinished(self) -> bool:
        return self.scheduler.has_work() or bool(self._aborted)

    def step(self) -> StepOutput:
        """Run one batch iteration and report what every progressed request produced."""
        batch = self.begin_step()
        if not batch:
            return self.finish_step(batch, {})
        t0 = self.clock()
        sampled = self.executor.execute(batch)
        out = self.finish_step(batch, sampled, self.clock() - t0)
        if self.on_step is not None:
            self.on_step(batch, self._last_step_time)
        return out

    def begin_step(self) -> ScheduledBatch:
        """First half of `step()`: choose the batch (allocating its blocks). A runtime that times
        the forward pass itself (the simulator) calls this, then `finish_step` with the samples."""
        return self.scheduler.schedule()

    def finish_step(
        self, batch: ScheduledBatch, sampled: Mapping[str, SampledToken], step_time_s: float = 0.0
    ) -> StepOutput:
        """Second half of `step()`: apply `sampled` (one token per `needs_sample` sequence of
        `batch`) and report the deltas, including those of requests aborted since the last step."""
        deltas, self._aborted = self._aborted, []
        if not batch:
            return StepOutput(deltas=deltas, num_preempted=len(batch.preempted))
        self._last_step_time = step_time_s
        self._steps += 1
        self.scheduler.update(batch, sampled)
        for item in batch.seqs:
            if item.needs_sample:
                deltas.append(self._delta(item.seq))
        return StepOutput(deltas=deltas, num_scheduled_tokens=batch.num_tokens, num_preempted=len(batch.preempted))

    def plan_decode_run(self, max_steps: int, token_id: int) -> DecodeRun | None:
        """Plan the next steps as one decode run (see `decode_run`), or None when the next step is not
        a pure decode of the running set or an abort is still to be reported."""
        if self._aborted:
            return None
        return plan_decode_run(self.scheduler, max_steps, token_id)

    def advance_decode_run(self, run: DecodeRun, steps: int, last_step_time_s: float) -> None:
        """Apply the first `steps` steps of `run` (fewer than `run.steps`), as that many `step()`s
        sampling `run.token_id` would: their tokens count as reported (no deltas are built; every
        sequence of the run got one token per step)."""
        advance_decode_run(self.scheduler, run, steps)
        if steps:
            self._steps += steps
            self._last_step_time = last_step_time_s
            for seq in run.seqs:
                seq.num_emitted = len(seq.output_token_ids)

    def _delta(self, seq: Sequence) -> RequestDelta:
        """The output tokens of `seq` not reported yet (one per step, so far)."""
        first = seq.num_emitted
        seq.num_emitted = len(seq.output_token_ids)
        # positional, in RequestDelta's field order (request_id, first_index, token_ids, logprobs,
        # finish_reason, num_prompt_tokens, num_cached_tokens, error): one is built per sequence per step,
        # and keyword arguments make that construction about twice as slow
        return RequestDelta(
            seq.request_id,
            first,
            seq.output_token_ids[first:],
            seq.output_logprobs[first:] if seq.sampling.logprobs is not None else None,
            seq.finish_reason,
            seq.num_prompt_tokens,
            seq.num_cached_tokens,
            seq.error,
        )

    def stats(self) -> InstanceStats:
        """A snapshot for the control plane. Its token sums are the scheduler's running totals
        (kept exact at every transition), so a snapshot costs the same with 1 or 256 sequences."""
        s = self.scheduler
        return InstanceStats(
            instance_id=self.instance_id,
            running=len(s.running),
            waiting=len(s.waiting),
            free_blocks=s.blocks.num_free_blocks,
            total_blocks=self.config.num_blocks,
            block_size=self.config.block_size,
            tokens_in_flight=s.tokens_in_flight,
            queued_prompt_tokens=s.queued_prompt_tokens,
            last_step_time_s=self._last_step_time,
            steps=self._steps,
            preemptions=s.num_preemptions,
            draining=self.migration.draining,
            head_demand_blocks=s.head_demand_blocks(),
            high_priority=s.num_high_priority,
        )
