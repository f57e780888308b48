"""LlumnixMigrationPolicy's exact orders on hand-built snapshots."""

from __future__ import annotations

import pytest

from controlplane.config import load_config
from controlplane.scheduling.llumnix_migration import LlumnixMigrationPolicy
from controlplane.scheduling.migration import MigrationOrder
from controlplane.scheduling.plugins.llumnix import LlumnixSettings
from controlplane.scheduling.registry import build_migration_policy
from flotilla.errors import ConfigError
from instances.types import MigrationCandidate, Priority
from tests.controlplane.scheduling.helpers import view

SETTINGS = LlumnixSettings(source_freeness=10, destination_freeness=30, headroom_blocks=20)


def cand(rid: str, blocks: int, *, priority: int = Priority.NORMAL, running: bool = True, order: int = 1,
         tokens: int | None = None) -> MigrationCandidate:
    return MigrationCandidate(rid, priority, blocks * 16 if tokens is None else tokens, blocks if running else 0,
                              running, order)


def plan(views, candidates, in_flight=None, settings=SETTINGS, max_in_flight=1):
    return LlumnixMigrationPolicy(settings, max_in_flight).plan(views, candidates, in_flight or {})


def test_nothing_to_do_on_a_balanced_cluster():
    views = [view("a", running=2, free_blocks=40), view("b", running=2, free_blocks=40)]
    assert plan(views, {"a": [cand("r1", 10)], "b": [cand("r2", 10)]}) == []


def test_load_pairs_the_least_free_with_the_freest_and_moves_the_cheapest_lowest_class():
    views = [
        view("a", running=10, free_blocks=50),  # freeness 5: source
        view("b", running=10, free_blocks=20),  # freeness 2: the least free source
        view("c", running=1, free_blocks=90),  # 90: the freest destination
        view("d", running=2, free_blocks=80),  # 40: second destination
    ]
    candidates = {
        "a": [cand("a1", 5, order=1), cand("a2", 3, order=2)],
        "b": [cand("b1", 2, order=1), cand("b2", 8, priority=Priority.OFFLINE, order=2),
              cand("b3", 2, order=3)],
    }
    assert plan(views, candidates) == [
        MigrationOrder("b2", "b", "c", "load"),  # offline first, though larger
        MigrationOrder("a2", "a", "d", "load"),  # fewest blocks
    ]


def test_load_ties_on_blocks_go_to_the_last_admitted():
    views = [view("a", running=10, free_blocks=20), view("c", running=1, free_blocks=90)]
    assert plan(views, {"a": [cand("a1", 2, order=1), cand("a2", 2, order=7)]}) == [
        MigrationOrder("a2", "a", "c", "load")]


def test_load_keeps_the_destination_at_least_as_free_as_the_source():
    # source freeness (10 - 0) / 2 = 5 < 10; destination (40 - 0) / 1 = 40 > 30. Moving the 30-block
    # request leaves the destination (40 - 30) / 2 = 5 and the source 40 / 1 = 40: it would invert
    views = [view("a", running=2, free_blocks=10), view("c", running=1, free_blocks=40)]
    assert plan(views, {"a": [cand("a1", 30)]}) == []
    assert plan(views, {"a": [cand("a1", 30), cand("a2", 1)]}) == [MigrationOrder("a2", "a", "c", "load")]


def test_defrag_moves_the_cheapest_running_request_that_frees_enough():
    # the head of line needs 30 blocks and 10 are free: 20 short (freeness (10 - 30) / 3 < 0)
    views = [view("a", running=3, waiting=1, free_blocks=10, head_demand_blocks=30),
             view("c", running=1, free_blocks=200)]
    candidates = {"a": [cand("small", 5), cand("big", 40), cand("enough", 25), cand("queued", 0, running=False,
                                                                                     tokens=480)]}
    assert plan(views, candidates, settings=LlumnixSettings(source_freeness=-100,
                                                                     destination_freeness=30)) == [
        MigrationOrder("enough", "a", "c", "defrag")]


def test_defrag_takes_the_largest_when_none_frees_enough():
    views = [view("a", running=2, waiting=1, free_blocks=0, head_demand_blocks=100),
             view("c", running=1, free_blocks=200)]
    candidates = {"a": [cand("x", 5), cand("y", 9)]}
    assert plan(views, candidates) == [MigrationOrder("y", "a", "c", "defrag")]


def test_priority_moves_normal_work_off_an_instance_whose_headroom_is_eaten():
    # a serves a HIGH request and has 15 free blocks < 20 headroom: its lowest class leaves first
    views = [view("a", running=3, free_blocks=15, high_priority=1), view("c", running=1, free_blocks=100)]
    candidates = {"a": [cand("hi", 2, priority=Priority.HIGH), cand("n", 4), cand("off", 6, priority=Priority.OFFLINE)]}
    settings = LlumnixSettings(source_freeness=-100, destination_freeness=30, headroom_blocks=20)
    assert plan(views, candidates, settings=settings, max_in_flight=2) == [
        MigrationOrder("off", "a", "c", "priority"),
        MigrationOrder("n", "a", "c", "priority"),
    ]


def test_a_headroom_fraction_makes_an_instance_serving_high_requests_a_priority_source():
    # a: 40 of 100 blocks free, 1 HIGH request; 50% of its blocks reserved per HIGH request eats it
    views = [view("a", running=2, free_blocks=40, high_priority=1), view("b", running=1, free_blocks=10),
             view("c", running=1, free_blocks=100)]
    settings = LlumnixSettings(source_freeness=-100, destination_freeness=30, headroom_blocks=0,
                                        headroom_fraction=0.5)
    assert plan(views, {"a": [cand("hi", 2, priority=Priority.HIGH), cand("n", 4)]}, settings=settings) == [
        MigrationOrder("n", "a", "c", "priority")]
    without = LlumnixSettings(source_freeness=-100, destination_freeness=30, headroom_blocks=0)
    assert plan(views, {"a": [cand("hi", 2, priority=Priority.HIGH), cand("n", 4)]}, settings=without) == []


def test_priority_never_moves_high_requests():
    views = [view("a", running=1, free_blocks=5, high_priority=1), view("c", running=1, free_blocks=100)]
    settings = LlumnixSettings(source_freeness=-100, destination_freeness=30, headroom_blocks=20)
    assert plan(views, {"a": [cand("hi", 2, priority=Priority.HIGH)]}, settings=settings) == []


def test_drain_gives_everything_away_queued_first_to_the_freest():
    views = [view("a", running=2, waiting=1, free_blocks=50, draining=True),
             view("b", running=4, free_blocks=60),  # freeness 15
             view("c", running=1, free_blocks=40),  # freeness 40
             view("d", running=0, free_blocks=300, draining=True)]  # never a destination
    candidates = {"a": [cand("r1", 5), cand("r2", 3), cand("q", 0, running=False, tokens=100)]}
    assert plan(views, candidates, settings=LlumnixSettings(), max_in_flight=3) == [
        MigrationOrder("q", "a", "c", "drain"),  # c: 40 - 7 blocks, 2 running -> 16.5
        MigrationOrder("r2", "a", "c", "drain"),  # c: 33 - 3 = 30 over 3 -> 10; b 15 is freer next
        MigrationOrder("r1", "a", "b", "drain"),
    ]


def test_a_drained_high_request_may_use_the_headroom_kept_for_high_requests():
    # b serves HIGH requests: 30 free blocks, all of them headroom (20) and more; c is full of normal work.
    # The normal request cannot go to b (10 blocks of room), the HIGH one can (it sees 30 free, 30 per request)
    views = [view("a", running=2, free_blocks=50, draining=True),
             view("b", running=1, free_blocks=30, high_priority=1),
             view("c", running=8, free_blocks=10)]
    candidates = {"a": [cand("n", 11, order=1), cand("h", 11, priority=Priority.HIGH, order=2)]}
    assert plan(views, candidates, settings=LlumnixSettings(headroom_blocks=20), max_in_flight=3) == [
        MigrationOrder("h", "a", "b", "drain"),
    ]


def test_never_to_a_draining_or_unhealthy_destination_nor_from_an_unhealthy_source():
    views = [view("a", running=10, free_blocks=20), view("b", free_blocks=100, draining=True),
             view("c", free_blocks=100, healthy=False), view("u", running=10, free_blocks=0, healthy=False)]
    assert plan(views, {"a": [cand("a1", 1)], "u": [cand("u1", 1)]}) == []


def test_in_flight_limits_sources_and_destinations():
    views = [view("a", running=10, free_blocks=20), view("b", running=10, free_blocks=30),
             view("c", running=1, free_blocks=90)]
    candidates = {"a": [cand("a1", 1)], "b": [cand("b1", 1)]}
    # c already has one migration in flight: no destination left
    assert plan(views, candidates, in_flight={"c": 1}) == []
    # a is busy: b (the next least free) pairs with c
    assert plan(views, candidates, in_flight={"a": 1}) == [MigrationOrder("b1", "b", "c", "load")]


def test_candidates_are_read_only_for_sources():
    class Strict(dict):
        def __getitem__(self, key):
            raise AssertionError(f"read {key}")

        def get(self, key, default=None):
            if key != "a":
                raise AssertionError(f"read {key}")
            return [cand("a1", 1)]

    views = [view("a", running=10, free_blocks=20), view("c", running=1, free_blocks=90)]
    assert plan(views, Strict()) == [MigrationOrder("a1", "a", "c", "load")]


def test_settings_are_validated_and_the_config_section_builds_them():
    with pytest.raises(ValueError, match="destination_freeness"):
        LlumnixSettings(source_freeness=10, destination_freeness=5)
    with pytest.raises(ValueError, match="max_in_flight"):
        LlumnixMigrationPolicy(max_in_flight=0)
    with pytest.raises(ValueError, match="headroom_fraction"):
        LlumnixSettings(headroom_fraction=1.5)
    with pytest.raises(ValueError, match="unknown llumnix migration rule"):
        LlumnixMigrationPolicy(rules=("drain", "spread"))
    with pytest.raises(ConfigError, match="plugins.llumnix.headroom_fraction"):
        load_config(None, {"plugins.llumnix.headroom_fraction": -0.1})
    config = load_config(None, {"plugins.llumnix.headroom_blocks": 8})
    assert config.plugin_settings() == {"llumnix": LlumnixSettings(headroom_blocks=8)}
    with pytest.raises(ConfigError, match="plugins.llumnix.headroom: unknown key"):
        load_config(None, {"plugins.llumnix.headroom": 8})


def test_the_none_policy_only_drains_and_asks_only_draining_instances():
    views = [view("a", running=10, free_blocks=20, draining=True), view("b", running=8, free_blocks=5),
             view("c", running=1, free_blocks=300), view("d", draining=True)]
    candidates = {"a": [cand("r1", 2)], "b": [cand("b1", 1)]}
    none = build_migration_policy("none", {}, 2)
    assert none.sources(views) == ["a"]  # d drains but holds nothing
    assert none.plan(views, candidates, {}) == [MigrationOrder("r1", "a", "c", "drain")]
    full = build_migration_policy("llumnix", {}, 2)
    assert full.sources(views) == ["a", "b", "c"]
    assert full.plan(views, candidates, {}) == [MigrationOrder("r1", "a", "c", "drain"),
                                                MigrationOrder("b1", "b", "c", "load")]
    assert full.instance_info(views[2]) == {"freeness": (300 - 0) / 1}
    assert full.instance_info(views[0]) == {"freeness": None}
    with pytest.raises(ConfigError, match="unknown migration policy 'x'"):
        build_migration_policy("x", {}, 1)
