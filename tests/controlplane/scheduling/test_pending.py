"""PendingDispatches: a burst between two snapshots is counted until a snapshot counts it."""

from controlplane.scheduling.pending import PendingDispatches
from tests.controlplane.scheduling.helpers import view


def test_dispatches_count_until_the_snapshot_that_admits_them():
    ledger = PendingDispatches()
    busy = view("a", running=2, steps=10)
    ledger.record(busy, 100)
    ledger.record(busy, 20)
    assert [(v.pending_requests, v.pending_tokens) for v in ledger.apply([busy, view("b", steps=3)])] == [(2, 120), (0, 0)]
    assert ledger.apply([view("a", running=2, steps=11)])[0].pending_requests == 2  # may have come during step 11
    assert ledger.apply([view("a", running=4, steps=12)])[0].pending_requests == 0  # admitted by step 12
    assert ledger.apply([view("a", running=4, steps=11)])[0].pending_requests == 0  # dropped for good


def test_an_idle_instance_counts_a_dispatch_from_its_next_step():
    ledger = PendingDispatches()
    idle = view("a", steps=7)
    ledger.record(idle, 5)
    assert ledger.apply([idle])[0].pending_requests == 1
    assert ledger.apply([view("a", running=1, steps=8)])[0].pending_requests == 0


def test_pending_adds_to_what_a_view_already_has():
    ledger = PendingDispatches()
    v = view("a", running=1, steps=1, pending_requests=3, pending_tokens=30)
    ledger.record(v, 10)
    got = ledger.apply([v])[0]
    assert (got.pending_requests, got.pending_tokens) == (4, 40)
