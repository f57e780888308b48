from controlplane.scheduling.plugins.least_requests import LeastRequestsScorer, outstanding_requests
from tests.controlplane.scheduling.helpers import REQ, view


def test_outstanding_counts_running_waiting_and_pending():
    assert outstanding_requests(view("a", running=3, waiting=2, pending_requests=1)) == 6


def test_fewer_requests_score_higher_proportionally():
    cands = [view("a", running=4), view("b", running=1, waiting=1, pending_requests=1), view("c")]
    assert LeastRequestsScorer().score(REQ, cands) == [0.0, 0.25, 1.0]


def test_pending_requests_count():
    cands = [view("a", running=2), view("b", pending_requests=8)]
    assert LeastRequestsScorer().score(REQ, cands) == [0.75, 0.0]


def test_all_idle_score_one():
    assert LeastRequestsScorer().score(REQ, [view("a"), view("b")]) == [1.0, 1.0]


def test_tokens_do_not_count():
    cands = [view("a", running=1, tokens_in_flight=5000), view("b", running=2, tokens_in_flight=10)]
    assert LeastRequestsScorer().score(REQ, cands) == [0.5, 0.0]
