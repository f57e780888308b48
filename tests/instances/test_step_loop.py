"""StepLoop: submissions validated at once, applied between steps, chunks pushed, aborts honoured."""

import asyncio
import time

import pytest

from instances.engine.config import EngineConfig
from instances.replica import Replica, ReplicaSpec
from instances.step_loop import StepLoop
from instances.types import EngineRequest, FinishReason, SamplingParams

ENGINE = EngineConfig(block_size=4, num_blocks=64, max_num_batched_tokens=64, max_num_seqs=8, max_model_len=128)


def request(rid: str, n: int = 5) -> EngineRequest:
    return EngineRequest(rid, [10, 11, 12], SamplingParams(max_tokens=n, temperature=0, ignore_eos=True))


@pytest.mark.parametrize("inline", [False, True])
async def test_runs_requests_and_pushes_their_chunks_in_order(inline):
    replica = Replica.build(ReplicaSpec("i0", "tiny-llama", ENGINE))
    pushed = []
    loop = StepLoop(replica, pushed.extend, inline=inline)
    task = asyncio.create_task(loop.run())
    try:
        loop.submit(request("a"))
        loop.submit(request("b", 3))
        with pytest.raises(ValueError, match="already in this engine"):
            loop.submit(request("a"))  # still pending: refused before it reaches the engine
        loop.submit(request("gone", 50))
        loop.abort("gone")  # aborted before it was ever applied
        while sum(1 for c in pushed if c.finish_reason is not None) < 3:
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
    for rid, n in (("a", 5), ("b", 3)):
        chunks = [c for c in pushed if c.request_id == rid]
        assert [c.first_index for c in chunks] == list(range(n))
        assert chunks[-1].finish_reason is FinishReason.LENGTH
    assert [c.finish_reason for c in pushed if c.request_id == "gone"] == [FinishReason.ABORT]
    stats = loop.stats()
    assert stats.running == stats.waiting == 0 and stats.free_blocks == stats.total_blocks


async def test_inline_steps_leave_the_loop_free_between_steps():
    """Inline, a coroutine woken by a step's chunks runs before the next step (as a poll must)."""
    replica = Replica.build(ReplicaSpec("i0", "tiny-llama", ENGINE))
    woken = asyncio.Event()
    seen = []  # (chunks pushed so far, when the waiter ran)

    async def waiter():
        await woken.wait()
        seen.append(len(pushed))

    pushed = []

    def on_chunks(chunks):
        pushed.extend(chunks)
        woken.set()

    loop = StepLoop(replica, on_chunks, inline=True)
    waiting = asyncio.create_task(waiter())
    task = asyncio.create_task(loop.run())
    try:
        loop.submit(request("a", 20))
        await asyncio.wait_for(waiting, 10)
    finally:
        task.cancel()
    assert seen == [1]  # it ran right after the first step, before the second


def test_a_request_that_can_never_run_is_refused_at_submit():
    replica = Replica.build(ReplicaSpec("i0", "tiny-llama", ENGINE))
    loop = StepLoop(replica, lambda chunks: None)
    with pytest.raises(ValueError, match="context"):
        loop.submit(EngineRequest("long", [1] * 200, SamplingParams(max_tokens=1)))


@pytest.mark.parametrize("inline", [False, True])
async def test_a_hold_stops_the_steps_until_unheld_or_its_deadline_while_calls_still_run(inline):
    replica = Replica.build(ReplicaSpec("i0", "tiny-llama", ENGINE))
    pushed = []
    loop = StepLoop(replica, pushed.extend, inline=inline)
    task = asyncio.create_task(loop.run())
    try:
        loop.submit(request("a", 100))
        while not pushed:
            await asyncio.sleep(0.001)
        await loop.hold("r", 30.0)  # in place from the next step boundary
        steps = loop.stats().steps
        await asyncio.sleep(0.2)
        assert loop.stats().steps == steps  # no step while held ...
        assert await loop.call(lambda r: r.engine.stats().running) == 1  # ... but calls run at once
        loop.unhold("r")
        while loop.stats().steps == steps:
            await asyncio.sleep(0.001)
        await loop.hold("short", 0.1)  # a hold nobody ends runs out
        held_at, steps = time.monotonic(), loop.stats().steps
        while loop.stats().steps == steps:
            await asyncio.sleep(0.001)
        assert time.monotonic() - held_at >= 0.09
    finally:
        task.cancel()


@pytest.mark.parametrize("inline", [False, True])
async def test_a_request_that_cannot_fit_beside_reservations_waits_without_spinning(inline):
    """60 of 64 blocks reserved for an incoming migration: a 30-token request (8 blocks) cannot
    run. The loop tries once, then waits; cancelling the reservation lets the request finish."""
    replica = Replica.build(ReplicaSpec("i0", "tiny-llama", ENGINE))
    loop = StepLoop(replica, lambda chunks: None, inline=inline)
    task = asyncio.create_task(loop.run())
    attempts = 0
    real_step = replica.step

    def counted_step():
        nonlocal attempts
        attempts += 1
        return real_step()

    replica.step = counted_step
    try:
        for rid in ("incoming-0", "incoming-1"):  # 30 blocks each
            await loop.call(lambda r, rid=rid: r.reserve(rid, "tiny-llama", 30 * 4))
        loop.submit(EngineRequest("big", list(range(3, 33)), SamplingParams(max_tokens=2, temperature=0)))
        await asyncio.sleep(0.3)
        assert attempts == 1
        assert loop.stats().waiting == 1
        await loop.call(lambda r: r.cancel_reservation("incoming-0"))
        for _ in range(300):
            if not replica.has_work():
                break
            await asyncio.sleep(0.01)
        assert not replica.has_work()
        assert loop.stats().free_blocks == ENGINE.num_blocks - 30
    finally:
        task.cancel()
