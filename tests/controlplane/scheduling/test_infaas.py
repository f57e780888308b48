import random

import pytest

from controlplane.scheduling.plugins.infaas import InfaasScorer, freeness
from tests.controlplane.scheduling.helpers import REQ, view


def test_freeness_is_free_blocks_less_queued_demand_per_batched_request():
    # demand = ceil((40 + 9) / 16) = 4 blocks; batch = 3 running + 1 pending
    v = view("a", free_blocks=60, running=3, pending_requests=1, queued_prompt_tokens=40, pending_tokens=9)
    assert freeness(v) == 14.0


def test_idle_instance_divides_by_one():
    assert freeness(view("a", free_blocks=100)) == 100.0


def test_freeness_can_be_negative():
    assert freeness(view("a", free_blocks=2, running=2, queued_prompt_tokens=160)) == -4.0


def test_scores_are_min_max_normalised_freeness():
    cands = [
        view("a", free_blocks=100, running=4),  # 25
        view("b", free_blocks=100, running=1, queued_prompt_tokens=800),  # (100 - 50) / 1 = 50
        view("c", free_blocks=10, running=1),  # 10
        view("d", free_blocks=40, running=2, pending_requests=2, pending_tokens=1),  # 39 / 4 = 9.75
    ]
    assert [freeness(c) for c in cands] == [25.0, 50.0, 10.0, 9.75]
    assert InfaasScorer().score(REQ, cands) == pytest.approx([15.25 / 40.25, 1.0, 0.25 / 40.25, 0.0])
    scores = InfaasScorer().score(REQ, cands)
    assert scores[1] == 1.0 and scores[3] == 0.0


def test_all_equally_free_score_one():
    cands = [view("a", free_blocks=50, running=1), view("b", free_blocks=100, running=2)]
    assert InfaasScorer().score(REQ, cands) == [1.0, 1.0]


def test_more_running_requests_make_an_instance_less_free():
    # same free memory, but "a" shares it among 4 requests and "b" among 1
    cands = [view("a", free_blocks=80, running=4), view("b", free_blocks=80, running=1)]
    assert InfaasScorer().score(REQ, cands) == [0.0, 1.0]


def test_scorer_agrees_with_freeness_on_random_views():
    rng = random.Random(4)
    cands = [
        view(
            f"i{k}",
            free_blocks=rng.randint(0, 200),
            running=rng.randint(0, 6),
            pending_requests=rng.randint(0, 2),
            queued_prompt_tokens=rng.randint(0, 900),
            pending_tokens=rng.choice((0, rng.randint(1, 300))),
        )
        for k in range(40)
    ]
    values = [freeness(c) for c in cands]
    lo, hi = min(values), max(values)
    assert InfaasScorer().score(REQ, cands) == [(f - lo) / (hi - lo) for f in values]
