"""Llumnix freeness by hand: head-of-line demand, high-priority headroom, draining; the scorer."""

from __future__ import annotations

import math
import random

import pytest

from controlplane.scheduling.plugins.llumnix import (
    LlumnixScorer,
    LlumnixSettings,
    dispatch_freeness,
    headroom,
    llumnix_freeness,
)
from controlplane.scheduling.policies import POLICIES, policy_migration, policy_profile
from controlplane.scheduling.registry import build_framework
from controlplane.scheduling.types import RequestView
from instances.types import Priority
from tests.controlplane.scheduling.helpers import REQ, view


def test_migration_freeness_subtracts_the_head_of_line_demand_per_running_request():
    v = view("a", running=4, waiting=3, free_blocks=100, head_demand_blocks=20, queued_prompt_tokens=800)
    assert llumnix_freeness(v, headroom_blocks=0) == (100 - 20) / 4


def test_headroom_counts_only_on_instances_serving_high_priority_requests():
    normal = view("a", running=2, free_blocks=100)
    high = view("b", running=2, free_blocks=100, high_priority=1)
    assert llumnix_freeness(normal, headroom_blocks=30) == 50.0
    assert llumnix_freeness(high, headroom_blocks=30) == (100 - 30) / 2


def test_a_draining_instance_is_infinitely_loaded():
    v = view("a", free_blocks=100, draining=True)
    assert llumnix_freeness(v, 0) == -math.inf
    assert dispatch_freeness(v, 0) == -math.inf


def test_an_idle_instance_divides_by_one():
    assert llumnix_freeness(view("a", free_blocks=7), 0) == 7.0


def test_dispatch_freeness_counts_the_whole_queue_and_pending_dispatches():
    # queued 100 + pending 60 tokens = 10 blocks; batch = 2 running + 3 waiting + 1 pending
    v = view("a", running=2, waiting=3, free_blocks=100, queued_prompt_tokens=100, pending_tokens=60,
             pending_requests=1, head_demand_blocks=2, high_priority=1)
    assert dispatch_freeness(v, headroom_blocks=30) == (100 - 10 - 30) / 6


def test_scorer_normalises_and_scores_draining_zero():
    cands = [view("a", running=1, free_blocks=10), view("b", running=1, free_blocks=50),
             view("c", free_blocks=100, draining=True), view("d", running=1, free_blocks=30)]
    assert LlumnixScorer(LlumnixSettings(headroom_blocks=0)).score(REQ, cands) == [0.0, 1.0, 0.0, 0.5]


def test_a_high_request_sees_the_headroom_kept_for_it_as_free():
    # b serves one HIGH request: normal work sees (100 - 64) / 2 = 18 < a's 25; a HIGH request sees 50
    cands = [view("a", running=4, free_blocks=100), view("b", running=2, free_blocks=100, high_priority=1),
             view("c", running=10, free_blocks=100)]
    high = RequestView(request_id="h", num_prompt_tokens=10, max_tokens=20, priority=Priority.HIGH)
    scorer = LlumnixScorer(LlumnixSettings(headroom_blocks=64, headroom_fraction=0.0))
    assert scorer.score(REQ, cands) == [1.0, pytest.approx((18 - 10) / (25 - 10)), 0.0]
    assert scorer.score(high, cands) == [pytest.approx((25 - 10) / (50 - 10)), 1.0, 0.0]


def test_scorer_all_equal_scores_one_and_all_draining_zero():
    assert LlumnixScorer().score(REQ, [view("a"), view("b")]) == [1.0, 1.0]
    assert LlumnixScorer().score(REQ, [view("a", draining=True)]) == [0.0]


def test_settings_reject_negative_headroom():
    with pytest.raises(ValueError, match="headroom_blocks"):
        LlumnixSettings(headroom_blocks=-1)


def test_llumnix_policy_dispatches_to_the_freest_and_migrates():
    fw = build_framework(POLICIES)
    views = [view("a", running=3, free_blocks=60), view("b", running=1, free_blocks=40, high_priority=1),
             view("c", running=2, free_blocks=50)]
    # freeness: a 20, b (40 - 64 headroom) / 1 < 0, c 25
    assert fw.schedule("llumnix", REQ, views, random.Random(0)).instance_id == "c"
    assert policy_profile("llumnix").scorers == {"llumnix": 1.0}
    assert policy_migration("llumnix", {}, 1) is not None
    assert policy_migration("infaas", {}, 1) is None


def test_headroom_fraction_reserves_a_share_of_the_instance_per_high_request():
    # 64 blocks of 1,000 plus 10% per HIGH request: 2 HIGH requests reserve 64 + 200
    v = view("a", running=4, free_blocks=600, total_blocks=1000, high_priority=2)
    assert headroom(v, 64, 0.1) == 264
    assert headroom(view("b", total_blocks=1000), 64, 0.1) == 0
    assert llumnix_freeness(v, 64, 0.1) == (600 - 264) / 4
    assert dispatch_freeness(v, 64, 0.1) == (600 - 264) / 4


def test_settings_reject_a_headroom_fraction_outside_0_1():
    for bad in (-0.1, 1.5, math.nan):
        with pytest.raises(ValueError, match="headroom_fraction"):
            LlumnixSettings(headroom_fraction=bad)
