"""The engine's books for live migration: suspend, resume and release a request on the source;
reserve, commit and cancel on the destination.

Mechanism only (the controller decides what moves where; `instances/kv_transfer.py` copies the
pages). Every verb runs between two steps, never inside one.

Source side. `suspend` takes a running or waiting request out of the scheduler without freeing its
blocks (status SUSPENDED): the next steps neither schedule nor report it, and its KV blocks stay
as they are for the last copy. `state` captures everything the destination needs to continue it
exactly: tokens, computed count and logprobs (a seeded request's draws depend
on its seed and positions only, see `sampler`). `resume` puts it back
(running when it holds computed blocks, else waiting), `release` frees it after a commit elsewhere.

Destination side. `reserve` allocates blocks for a request that is not here yet (refusing with
`TransferRefused` when draining, full or already holding it); `extend` grows a reservation as the
source keeps decoding; a reservation not touched for `timeout_s` is freed by `expire` (the
watchdog). Refusals are `flotilla.errors.TransferRefused` with their reason word. `commit` turns a reservation into a running request, with the state from the source, so
it joins the next step's batch; a state with no computed tokens (a queued request) joins the
waiting queue instead and needs no reservation.

Counts to keep exact (`LocalScheduler`'s running totals) only change when a request enters or
leaves the running set or the waiting queue, which these verbs do through the scheduler's own
`detach` and `attach`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flotilla.errors import TransferRefused
from instances.engine.scheduler import LocalScheduler
from instances.engine.sequence import Sequence, SequenceStatus
from instances.types import EngineRequest, SamplingParams, TokenLogprob


@dataclass
class SequenceState:
    """A request's engine state, enough to continue it elsewhere (picklable).

    `num_computed_tokens` tokens have K/V in the `num_kv_blocks` leading blocks that travel with it."""

    request: EngineRequest
    output_token_ids: list[int]
    output_logprobs: list[TokenLogprob]
    num_computed_tokens: int
    num_cached_tokens: int
    num_preemptions: int
    block_size: int = 16

    @property
    def num_tokens(self) -> int:
        return len(self.request.prompt_token_ids) + len(self.output_token_ids)

    @property
    def num_kv_blocks(self) -> int:
        """Blocks holding computed K/V (the last one possibly part full)."""
        return -(-self.num_computed_tokens // self.block_size)


@dataclass
class Reservation:
    """Blocks held on a destination for a request on its way; `deadline` is the watchdog's."""

    request_id: str
    holder: Sequence  # a placeholder sequence whose block table is the reserved blocks
    deadline: float
    block_ids: list[int] = field(init=False)

    def __post_init__(self) -> None:
        self.block_ids = self.holder.block_ids


def state_of(seq: Sequence, block_size: int) -> SequenceState:
    """The migratable state of `seq` as it is now."""
    req = EngineRequest(
        request_id=seq.request_id,
        prompt_token_ids=seq.prompt_token_ids,
        sampling=seq.sampling,
        arrival_time=seq.arrival_time,
        priority=seq.priority,
        eos_token_ids=seq.eos_token_ids,
        slo_ttft_s=seq.slo_ttft_s,
        slo_tpot_s=seq.slo_tpot_s,
    )
    return SequenceState(req, list(seq.output_token_ids), list(seq.output_logprobs), seq.num_computed_tokens,
                         seq.num_cached_tokens, seq.num_preemptions, block_size)


class MigrationBooks:
    """Suspended requests and reservations of one engine's scheduler."""

    def __init__(self, scheduler: LocalScheduler, timeout_s: float) -> None:
        self.scheduler = scheduler
        self.timeout_s = timeout_s
        self.suspended: dict[str, Sequence] = {}
        self.reservations: dict[str, Reservation] = {}
        self.draining = False

    # ---- source -------------------------------------------------------------------------------
    def suspend(self, request_id: str) -> SequenceState:
        """Take a running or waiting request out of scheduling, keeping its blocks."""
        s = self.scheduler
        seq = s.requests.get(request_id)
        if seq is None or request_id in self.suspended:
            raise TransferRefused("finished", f"request {request_id!r} is not running or queued here")
        s.detach(seq)
        seq.status = SequenceStatus.SUSPENDED
        self.suspended[request_id] = seq
        return state_of(seq, s.config.block_size)

    def resume(self, request_id: str) -> bool:
        """Put a suspended request back where it can run; False if it is not suspended here."""
        seq = self.suspended.pop(request_id, None)
        if seq is None:
            return False
        self.scheduler.attach(seq)
        return True

    def release(self, request_id: str) -> bool:
        """Forget a suspended request (it now runs elsewhere) and free its blocks; False if it
        is not suspended here (it was aborted meanwhile)."""
        seq = self.suspended.pop(request_id, None)
        if seq is None:
            return False
        self.scheduler.blocks.free(seq)
        self.scheduler.untrack(request_id)
        seq.status = SequenceStatus.FINISHED
        return True

    def drop_suspended(self, request_id: str) -> Sequence | None:
        """Abort path: free a suspended request's blocks and return it (None if not suspended)."""
        seq = self.suspended.pop(request_id, None)
        if seq is not None:
            self.scheduler.blocks.free(seq)
        return seq

    # ---- destination --------------------------------------------------------------------------
    def reserve(self, request_id: str, num_tokens: int, now: float) -> list[int]:
        """Hold blocks for `num_tokens` tokens of a request on its way; returns their ids."""
        s = self.scheduler
        if self.draining:
            raise TransferRefused("draining", "this instance is draining and accepts no new work")
        if request_id in s.requests or request_id in self.reservations:
            raise TransferRefused("duplicate", f"request {request_id!r} is already here")
        if num_tokens > s.config.max_model_len:
            raise TransferRefused("too_long", f"{num_tokens} tokens exceed this engine's context "
                                               f"({s.config.max_model_len})")
        if len(s.running) >= s.config.max_num_seqs:
            raise TransferRefused("full", f"the running set is full ({s.config.max_num_seqs} requests)")
        holder = Sequence(request_id, [], SamplingParams(), 0.0, 0, (), 0)
        res = Reservation(request_id, holder, now + self.timeout_s)
        self._grow(res, num_tokens)
        self.reservations[request_id] = res
        return list(res.block_ids)

    def extend(self, request_id: str, num_tokens: int, now: float) -> list[int]:
        """Grow a reservation to `num_tokens` tokens (and push its deadline back)."""
        res = self.reservations.get(request_id)
        if res is None:
            raise TransferRefused("expired", f"no reservation for request {request_id!r} (it expired?)")
        self._grow(res, num_tokens)
        res.deadline = now + self.timeout_s
        return list(res.block_ids)

    def _grow(self, res: Reservation, num_tokens: int) -> None:
        if not self.scheduler.blocks.allocate(res.holder, num_tokens):
            needed = -(-num_tokens // self.scheduler.config.block_size) - len(res.block_ids)
            raise TransferRefused("no_room", f"{needed} more KV blocks are needed and "
                                              f"{self.scheduler.blocks.num_free_blocks} are free")

    def cancel(self, request_id: str) -> bool:
        """Free a reservation; False if there is none."""
        res = self.reservations.pop(request_id, None)
        if res is None:
            return False
        self.scheduler.blocks.free(res.holder)
        return True

    def expire(self, now: float) -> list[str]:
        """The watchdog: free reservations whose deadline passed; returns their request ids."""
        late = [rid for rid, res in self.reservations.items() if res.deadline <= now]
        for rid in late:
            self.cancel(rid)
        return late

    def commit(self, state: SequenceState, order: int) -> Sequence:
        """Make the migrated request run here: with computed tokens it takes over its
        reservation's blocks and joins the running set; without (a queued request) it joins
        the waiting queue. Refuses a state whose blocks the reservation does not cover."""
        s = self.scheduler
        rid = state.request.request_id
        if rid in s.requests:
            raise TransferRefused("duplicate", f"request {rid!r} is already here")
        seq = Sequence.from_request(state.request, order, ())
        seq.eos_token_ids = state.request.eos_token_ids
        seq.output_token_ids = list(state.output_token_ids)
        seq.output_logprobs = list(state.output_logprobs)
        seq.num_tokens = seq.num_prompt_tokens + len(seq.output_token_ids)
        seq.num_cached_tokens = state.num_cached_tokens
        seq.num_preemptions = state.num_preemptions
        seq.num_emitted = len(seq.output_token_ids)
        if state.num_computed_tokens > 0:
            res = self.reservations.get(rid)
            if res is None or len(res.block_ids) < state.num_kv_blocks:
                have = 0 if res is None else len(res.block_ids)
                raise TransferRefused("expired", f"request {rid!r} needs {state.num_kv_blocks} reserved "
                                                  f"blocks, {have} are reserved")
            del self.reservations[rid]
            seq.block_ids = res.holder.block_ids
            res.holder.block_ids = []
            seq.num_computed_tokens = state.num_computed_tokens
        else:
            self.cancel(rid)
        s.track(seq)
        s.attach(seq)
        return seq
