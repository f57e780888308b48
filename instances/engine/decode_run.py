"""Multi-step decoding: plan several pure-decode steps of the running set at once, and apply them.

When nothing waits and every running sequence only decodes, the next steps are known in advance:
each step schedules the whole running set (in the same priority order), one token each, and
allocates a block to every sequence that crosses a block boundary. `plan_decode_run` computes how
many such steps can run before anything else could happen (a sequence finishing, an allocation
that would preempt); `advance_decode_run` applies the first `j` of them in one call, leaving the
scheduler, the block manager and every sequence exactly as `j` calls of `schedule` + `update` with
the planned token would have: same block ids allocated in the same order, same prefix-cache
registrations, same counters.

The simulator uses this to skip the per-step events of long decode stretches (vLLM's multi-step
scheduling plans decode steps ahead for the same reason). Token ids are fixed per run: the sampler
must draw `token_id` for every sequence, which is what a simulated executor does.
"""

from __future__ import annotations

from dataclasses import dataclass

from instances.engine.scheduler import PRIORITY_KEY, LocalScheduler
from instances.engine.sequence import Sequence


@dataclass(frozen=True, slots=True)
class DecodeRun:
    """`steps` consecutive decode steps of `seqs` (the running set, in batch order), planned at once.

    - Steps 1 .. steps-1 finish no sequence; step `steps` is the first at which one finishes, or the
      last whose block allocations fit, or the planning cap.
    - `free_blocks[s]` (s = 0 .. steps): free blocks after the allocations of steps 1 .. s.
    - `context`: the decode context (`StepShape.decode_context`) of step 1; step s has
      `context + (s - 1) * len(seqs)`.
    - `base_tokens[r]`: `seqs[r].num_tokens` when planned.
    """

    seqs: tuple[Sequence, ...]
    steps: int
    context: int
    free_blocks: tuple[int, ...]
    base_tokens: tuple[int, ...]
    token_id: int


def plan_decode_run(sched: LocalScheduler, max_steps: int, token_id: int) -> DecodeRun | None:
    """Plan up to `max_steps` decode steps from the scheduler's state, or None when the next step is
    not a pure decode of everyone (something waits, a sequence still prefills, the budget does not
    cover the running set, logprobs are asked for, `token_id` would stop a sequence) or fewer than
    two steps can be planned. Mutates nothing except sorting `running` into batch order, which
    `schedule` does anyway."""
    running = sched.running
    config = sched.config
    if sched.waiting or not running or len(running) > config.max_num_batched_tokens:
        return None
    running.sort(key=PRIORITY_KEY)
    steps = max_steps
    context = 0
    for seq in running:
        sp = seq.sampling
        if (seq.num_computed_tokens != seq.num_tokens - 1 or sp.logprobs is not None
                or token_id in sp.stop_token_ids or (not sp.ignore_eos and token_id in seq.eos_token_ids)):
            return None
        steps = min(steps, sp.max_tokens - len(seq.output_token_ids), config.max_model_len - seq.num_tokens)
        context += seq.num_tokens
    if steps < 2:
        return None
    bs = sched.blocks.block_size
    needed = [0] * (steps + 1)  # needed[s]: blocks allocated at the start of step s
    for seq in running:
        for s in range(len(seq.block_ids) * bs - seq.num_tokens + 2, steps + 1, bs):
            needed[s] += 1
    free = sched.blocks.num_free_blocks
    free_blocks = [free]
    for s in range(1, steps + 1):
        free -= needed[s]
        if free < 0:
            steps = s - 1
            break
        free_blocks.append(free)
    if steps < 2:
        return None
    return DecodeRun(tuple(running), steps, context, tuple(free_blocks),
                     tuple(seq.num_tokens for seq in running), token_id)


def advance_decode_run(sched: LocalScheduler, run: DecodeRun, steps: int) -> None:
    """Apply steps 1 .. `steps` of `run` (0 <= steps < run.steps) to a scheduler still in the state
    `run` was planned from. Sequences' `num_emitted` is not touched (the engine reports them)."""
    if not 0 <= steps < run.steps:
        raise ValueError(f"a decode run of {run.steps} steps can advance 0 to {run.steps - 1}, not {steps}")
    if steps == 0:
        return
    blocks = sched.blocks
    bs = blocks.block_size
    seqs, base = run.seqs, run.base_tokens
    allocs: dict[int, list[int]] = {}  # step -> ranks (batch positions) allocating at its start
    for r, seq in enumerate(seqs):
        for s in range(len(seq.block_ids) * bs - base[r] + 2, steps + 1, bs):
            allocs.setdefault(s, []).append(r)
    if blocks.enable_prefix_caching:
        _advance_caching(sched, run, steps, allocs)
    else:
        for s in sorted(allocs):
            for r in allocs[s]:
                _allocate(sched, seqs[r], base[r] + s - 1)
    for r, seq in enumerate(seqs):
        _bring_to(seq, base[r], steps, run.token_id)
    sched.running_tokens += len(seqs) * steps


def _advance_caching(sched: LocalScheduler, run: DecodeRun, steps: int, allocs: dict[int, list[int]]) -> None:
    """Allocations and prefix-cache registrations of steps 1 .. `steps` in the order `schedule` and
    `update` make them: step by step, allocations first, then registrations in batch order.

    A registration happens when a block fills, and for a sequence holding private blocks (an
    identical block was cached first) on every later step; such a retry can only succeed after
    an eviction, so retries are replayed at the steps whose allocations evicted a cached block."""
    blocks = sched.blocks
    bs = blocks.block_size
    seqs, base = run.seqs, run.base_tokens
    fills: dict[int, list[int]] = {}  # step -> ranks whose computed tokens fill a block in it
    for r in range(len(seqs)):
        first = (1 - base[r]) % bs or bs  # computed tokens after step s: base - 1 + s
        for s in range(first, steps + 1, bs):
            fills.setdefault(s, []).append(r)
    for s in sorted(allocs.keys() | fills.keys()):
        cached = len(blocks.cached)
        for r in allocs.get(s, ()):
            _allocate(sched, seqs[r], base[r] + s - 1)
        ranks = fills.get(s, [])
        if len(blocks.cached) < cached:
            ranks = sorted(set(ranks).union(r for r, seq in enumerate(seqs) if seq.private_blocks))
        for r in ranks:
            _bring_to(seqs[r], base[r], s, run.token_id)
            blocks.cache_full_blocks(seqs[r])


def _allocate(sched: LocalScheduler, seq: Sequence, num_tokens: int) -> None:
    if not sched.blocks.allocate(seq, num_tokens):
        raise AssertionError(f"{seq.request_id}: a planned decode-run allocation did not fit")


def _bring_to(seq: Sequence, base_tokens: int, step: int, token_id: int) -> None:
    """Make `seq` look as it does after `step` steps of the run (it may already be part way)."""
    missing = base_tokens + step - seq.num_tokens
    if missing > 0:
        seq.output_token_ids.extend([token_id] * missing)
        seq.num_tokens += missing
    seq.num_computed_tokens = base_tokens - 1 + step
