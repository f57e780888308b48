"""The transfer core, event by event: exact actions for every state, and for a failure of each kind
in each state the exact undo actions and outcome (the table in `controlplane/transfer/core.py`)."""

from __future__ import annotations

import pytest

from controlplane.scheduling.migration import MigrationOrder
from controlplane.transfer.core import Phase, Transfer
from controlplane.transfer.protocol import (
    Abandon,
    Abort,
    AbortDestination,
    AwaitStep,
    Committed,
    CopyStage,
    Describe,
    Described,
    PeerLost,
    Refused,
    Release,
    Released,
    Reserve,
    Reserved,
    Resume,
    StageCopied,
    StepDone,
    StopAndCopy,
    Suspended,
    TimedOut,
)
from controlplane.transfer.settings import TransferSettings

ORDER = MigrationOrder("r", "src", "dst", "load")
SETTINGS = TransferSettings(last_stage_blocks=2, max_stages=4)


def new(settings: TransferSettings = SETTINGS) -> Transfer:
    t = Transfer(ORDER, settings)
    assert t.start(0.0) == [Describe()]
    return t


def to_phase(phase: Phase, settings: TransferSettings = SETTINGS) -> Transfer:
    """A transfer of a running request walked to `phase` (one stage copied before WAITING)."""
    t = new(settings)
    steps = {
        Phase.DESCRIBING: [],
        Phase.RESERVING: [Described(1.0, True, 40)],
        Phase.COPYING: [Described(1.0, True, 40), Reserved(1.1)],
        Phase.WAITING: [Described(1.0, True, 40), Reserved(1.1), StageCopied(2.0, 9, 10, 10, 1000)],
        Phase.STOPPING: [Described(1.0, True, 40), Reserved(1.1), StageCopied(2.0, 9, 10, 10, 1000), StepDone(2.1)],
        Phase.RELEASING: [Described(1.0, True, 40), Reserved(1.1), StageCopied(2.0, 9, 10, 10, 1000), StepDone(2.1),
                          Suspended(2.2), Committed(2.25, 2, 200)],
    }[phase]
    for e in steps:
        t.on(e)
    assert t.phase is phase
    return t


def test_a_running_request_moves_in_stages_then_stops_and_copies():
    t = new()
    assert t.on(Described(1.0, True, 40)) == [Reserve(40)]
    assert t.on(Reserved(1.1)) == [CopyStage(0)]
    assert t.on(StageCopied(2.0, 9, 14, 10, 1000)) == [CopyStage(9)]  # 5 blocks left > 2: another stage
    assert t.on(StageCopied(2.5, 13, 15, 5, 500)) == [AwaitStep()]  # 2 left: stop and copy them
    assert t.on(StepDone(2.6)) == [StopAndCopy(13, queued=False)]
    assert t.on(Suspended(2.7)) == []
    assert t.on(Committed(2.75, 2, 200)) == [Release()]
    assert t.on(Released(2.8, True)) == []
    o = t.outcome
    assert t.done and o is not None and o.committed and o.cause == "committed"
    assert (o.stages, o.blocks, o.bytes, o.suspended_at) == (3, 17, 1700, 2.7)
    assert o.downtime_s == pytest.approx(0.05)


def test_stages_end_after_max_stages_whatever_is_left():
    t = to_phase(Phase.COPYING, TransferSettings(last_stage_blocks=0, max_stages=2))
    assert t.on(StageCopied(2.0, 9, 14)) == [CopyStage(9)]
    assert t.on(StageCopied(3.0, 14, 30)) == [AwaitStep()]


def test_a_one_stage_handoff_copies_everything_in_the_stop_and_copy():
    # max_stages 0: the prefill-to-decode handoff, right after the first token
    t = to_phase(Phase.RESERVING, TransferSettings(max_stages=0))
    assert t.on(Reserved(1.1)) == [AwaitStep()]
    assert t.on(StepDone(1.2)) == [StopAndCopy(0, queued=False)]


def test_a_queued_request_skips_the_reservation_and_the_copy():
    t = new()
    assert t.on(Described(1.0, False, 40)) == [StopAndCopy(0, queued=True)]
    t.on(Suspended(1.0))
    assert t.on(Committed(1.005)) == [Release()]
    t.on(Released(1.01, True))
    assert t.outcome is not None and t.outcome.committed and t.outcome.stages == 1


def test_a_request_aborted_on_the_source_during_the_move_is_aborted_on_the_destination():
    t = to_phase(Phase.RELEASING)
    assert t.on(Released(3.0, False)) == [AbortDestination()]
    assert t.outcome is not None and t.outcome.result == "finished" and "aborted on the source" in t.outcome.detail


_BEFORE_COMMIT = (Phase.DESCRIBING, Phase.RESERVING, Phase.COPYING, Phase.WAITING, Phase.STOPPING)
_UNDO = {  # phase -> (destination refused, source gone, timed out / peer lost / aborted)
    Phase.DESCRIBING: ([], [], []),
    Phase.RESERVING: ([], [], [Abandon()]),  # a refused reservation holds nothing; a late one is freed
    Phase.COPYING: ([Abandon()], [Abandon()], [Abandon()]),
    Phase.WAITING: ([Abandon()], [Abandon()], [Abandon()]),
    Phase.STOPPING: ([Abandon(), Resume()], [Abandon()], [Abandon(), Resume()]),
}


@pytest.mark.parametrize("phase", _BEFORE_COMMIT, ids=lambda p: p.value)
@pytest.mark.parametrize(("event", "kind", "result", "reason"), [
    (Refused(9.0, "no_room", "3 more blocks needed"), 0, "refused", "no_room"),
    (Refused(9.0, "draining", "draining"), 0, "refused", "draining"),
    (Refused(9.0, "finished", "not here"), 1, "finished", ""),
    (Refused(9.0, "preempted", "preempted"), 1, "preempted", ""),
    (TimedOut(9.0, "a call took over 10 s"), 2, "timeout", ""),
    (PeerLost(9.0, "instance dst died"), 2, "failed", ""),
    (Abort(9.0, "called off"), 2, "aborted", ""),
], ids=["refused", "draining", "finished", "preempted", "timeout", "peer-lost", "abort"])
def test_a_failure_before_the_commit_leaves_the_request_where_it_was(phase, event, kind, result, reason):
    t = to_phase(phase)
    assert t.on(event) == _UNDO[phase][kind]
    o = t.outcome
    assert t.done and o is not None and not o.committed
    assert (o.result, o.reason, o.cause) == (result, reason, reason or result)
    assert t.on(Reserved(10.0)) == [] and t.outcome is o  # late answers are ignored


@pytest.mark.parametrize("event", [TimedOut(9.0, "slow"), PeerLost(9.0, "source died"),
                                   Refused(9.0, "finished", "gone")])
def test_after_the_commit_a_failed_release_leaves_the_request_committed(event):
    t = to_phase(Phase.RELEASING)
    assert t.on(event) == []
    assert t.outcome is not None and t.outcome.committed and "release" in t.outcome.detail


def test_an_abort_after_the_commit_changes_nothing():
    t = to_phase(Phase.RELEASING)
    assert t.on(Abort(9.0)) == [] and t.phase is Phase.RELEASING
    assert t.on(Released(9.1, True)) == [] and t.outcome is not None and t.outcome.committed


def test_protocol_errors_are_bugs():
    t = Transfer(ORDER, SETTINGS)
    with pytest.raises(RuntimeError, match="before start"):
        t.on(Reserved(0.0))
    t.start(0.0)
    with pytest.raises(RuntimeError, match="already started"):
        t.start(0.0)
    with pytest.raises(RuntimeError, match="unexpected Committed while describing"):
        t.on(Committed(0.1))
