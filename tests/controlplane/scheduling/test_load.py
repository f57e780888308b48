import pytest

from controlplane.scheduling.plugins.load import LoadScorer, instance_load
from tests.controlplane.scheduling.helpers import REQ, view


def test_load_counts_in_flight_and_pending_tokens():
    assert instance_load(view("a", tokens_in_flight=30, pending_tokens=12)) == 42


def test_less_load_scores_higher_proportionally():
    cands = [view("a", tokens_in_flight=100), view("b", tokens_in_flight=25), view("c")]
    assert LoadScorer().score(REQ, cands) == [0.0, 0.75, 1.0]


def test_pending_tokens_count_as_load():
    cands = [view("a", tokens_in_flight=50), view("b", pending_tokens=200)]
    assert LoadScorer().score(REQ, cands) == [pytest.approx(0.75), 0.0]


def test_all_idle_score_one():
    assert LoadScorer().score(REQ, [view("a"), view("b")]) == [1.0, 1.0]


def test_equal_load_scores_zero_for_all():
    cands = [view("a", tokens_in_flight=7), view("b", tokens_in_flight=7)]
    assert LoadScorer().score(REQ, cands) == [0.0, 0.0]
