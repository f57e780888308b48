"""`run_transfer` over fake endpoints: every verb of the protocol in order, pages copied in stages and
chunks arriving whole, and a refusal, a dead peer or a hung call at each verb leaving the request
exactly where the core's table says (running on the source, nothing held on the destination),
with the outcome naming what happened."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from controlplane.scheduling.migration import MigrationOrder
from controlplane.transfer.core import Transfer
from controlplane.transfer.driver import run_transfer
from controlplane.transfer.protocol import TransferOutcome
from controlplane.transfer.settings import TransferSettings
from flotilla.errors import TransferRefused
from tests.controlplane.transfer.fakes import HANG, FakeEndpoint, dead

ORDER = MigrationOrder("r", "src", "dst", "test")
SETTINGS = TransferSettings(last_stage_blocks=1, max_stages=4, stage_chunk_blocks=3, transfer_timeout_s=0.2)


def endpoints(*, src_faults=None, dst_faults=None, running=True, tokens=41) -> tuple[FakeEndpoint, FakeEndpoint]:
    src = FakeEndpoint("src", decode_per_call=1, faults=src_faults)
    dst = FakeEndpoint("dst", faults=dst_faults)
    src.add("r", tokens, running=running)
    return src, dst


def transfer(src: FakeEndpoint, dst: FakeEndpoint, settings: TransferSettings = SETTINGS) -> TransferOutcome:
    clock = itertools.count(0.0, 0.01)
    commits: list[str] = []
    outcome = asyncio.run(run_transfer(Transfer(ORDER, settings), src, dst, model="m", hold_s=0.1,
                                       clock=lambda: next(clock), on_commit=lambda: commits.append(dst.name)))
    moved = outcome.committed or "aborted on the source" in outcome.detail  # the commit went through
    assert commits == (["dst"] if moved else [])
    return outcome


def assert_back_on_source(src: FakeEndpoint, dst: FakeEndpoint) -> None:
    assert src.requests["r"].state == "running"
    assert not dst.requests and not dst.reservations and not dst.holds


def test_a_running_request_moves_with_every_page_in_order():
    src, dst = endpoints()
    outcome = transfer(src, dst)
    assert outcome.committed and outcome.cause == "committed"
    assert "r" not in src.requests
    moved = dst.requests["r"]
    bs = dst.block_size
    assert moved.state == "running" and moved.blocks == [bs] * (moved.computed // bs) + (
        [moved.computed % bs] if moved.computed % bs else [])  # every block whole, the last as it was
    assert not dst.reservations and not dst.holds
    # the protocol's order: describe, reserve, stages in chunks of <= 3 blocks, hold, suspend, commit, release
    assert src.calls[0] == "describe" and src.calls[-2:] == ["suspend", "release"]
    assert dst.calls[0] == "reserve" and dst.calls[-2:] == ["hold", "commit"]
    assert dst.calls.count("import_stage") >= 4  # 10 blocks in chunks of 3, then the blocks written meanwhile
    assert outcome.stages >= 2 and outcome.blocks >= 10 and outcome.downtime_s > 0


def test_a_queued_request_moves_without_a_reservation_or_pages():
    src, dst = endpoints(running=False)
    outcome = transfer(src, dst)
    assert outcome.committed and outcome.stages == 1 and outcome.blocks == 0
    assert dst.calls == ["hold", "commit"] and dst.requests["r"].state == "waiting"


def test_the_request_aborted_on_the_source_meanwhile_is_aborted_on_the_destination():
    src, dst = endpoints()

    async def gone_after_suspend(request_id: str) -> bool:
        src.calls.append("release")
        del src.requests[request_id]  # the client went away while it was suspended
        return False

    src.release = gone_after_suspend  # type: ignore[method-assign]
    outcome = transfer(src, dst)
    assert outcome.result == "finished" and "aborted on the source" in outcome.detail
    assert dst.calls[-1] == "abort" and not dst.requests


SOURCE_VERBS = ("describe", "export_stage", "suspend")
DESTINATION_VERBS = ("reserve", "import_stage", "hold", "commit")


@pytest.mark.parametrize("verb", SOURCE_VERBS + DESTINATION_VERBS)
@pytest.mark.parametrize("fault", ["refused", "dead", "hang"])
def test_a_fault_at_any_verb_before_the_commit_leaves_the_request_on_its_source(verb, fault):
    on_source = verb in SOURCE_VERBS
    error = {"refused": TransferRefused("finished" if on_source else "no_room", "no"),
             "dead": dead("src" if on_source else "dst"), "hang": HANG}[fault]
    faults = {verb: error}
    src, dst = endpoints(src_faults=faults if on_source else None, dst_faults=None if on_source else faults)
    outcome = transfer(src, dst)
    assert not outcome.committed
    expected = {"refused": "finished" if on_source else "refused", "dead": "failed", "hang": "timeout"}[fault]
    assert outcome.result == expected and outcome.cause == (expected if expected != "refused" else "no_room")
    assert_back_on_source(src, dst)


@pytest.mark.parametrize("fault", [dead("src"), HANG])
def test_a_failed_release_leaves_the_request_running_on_the_destination(fault):
    src, dst = endpoints(src_faults={"release": fault})
    outcome = transfer(src, dst)
    assert outcome.committed and "release" in outcome.detail
    assert dst.requests["r"].state == "running"


def test_a_request_preempted_on_the_source_during_the_copy_stays_there():
    src, dst = endpoints()
    real = src._export

    async def preempting(request_id: str, first: int, max_blocks: int) -> tuple:
        if first > 0:  # after the first chunk the source preempts it by recompute
            src.requests[request_id].state = "waiting"
        return await real(request_id, first, max_blocks)

    src._export = preempting  # type: ignore[method-assign]
    outcome = transfer(src, dst)
    assert (outcome.result, outcome.cause) == ("preempted", "preempted")
    assert src.requests["r"].state == "waiting" and not dst.reservations


def test_a_destination_that_drains_meanwhile_refuses_the_commit():
    src, dst = endpoints()
    real = dst.hold

    async def draining_hold(request_id: str, seconds: float) -> None:
        await real(request_id, seconds)
        dst.draining = True

    dst.hold = draining_hold  # type: ignore[method-assign]
    outcome = transfer(src, dst)
    assert (outcome.result, outcome.reason) == ("refused", "draining")
    assert_back_on_source(src, dst)


def test_a_cancelled_driver_calls_the_transfer_off():
    src, dst = endpoints(dst_faults={"commit": HANG})
    src.faults["describe"] = None

    async def cancel_during_commit() -> None:
        task = asyncio.create_task(run_transfer(
            Transfer(ORDER, TransferSettings(transfer_timeout_s=30.0)), src, dst, model="m", hold_s=0.1,
            clock=lambda: 0.0))
        while "commit" not in dst.calls:
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_during_commit())
    assert_back_on_source(src, dst)
