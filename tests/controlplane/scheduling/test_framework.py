import random
from collections.abc import Sequence

import pytest

from controlplane.scheduling.framework import (
    NamedFilter,
    Profile,
    SchedulingFramework,
    WeightedScorer,
    clamp_score,
)
from controlplane.scheduling.plugins.healthy import HealthyFilter
from controlplane.scheduling.plugins.power_of_two import PowerOfTwoPicker
from controlplane.scheduling.types import InstanceView, RequestView
from flotilla.errors import ConfigError, NoCapacity
from tests.controlplane.scheduling.helpers import REQ, view


class FixedScorer:
    """Returns the given scores verbatim (test plugin, exercising the framework's clamping).

    Candidates missing from `scores` get no score, so the list comes back short."""

    def __init__(self, scores: dict[str, float]) -> None:
        self.scores = scores
        self.seen: list[str] = []

    def score(self, req: RequestView, cands: Sequence[InstanceView]) -> list[float]:
        self.seen = [c.instance_id for c in cands]
        return [self.scores[c.instance_id] for c in cands if c.instance_id in self.scores]


class RecordingPicker:
    """Remembers what it was given and picks the highest total (first on ties)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, float]] = []

    def pick(
        self, cands: Sequence[InstanceView], totals: Sequence[float], rng: random.Random
    ) -> InstanceView:
        self.seen = [(c.instance_id, t) for c, t in zip(cands, totals, strict=True)]
        return cands[totals.index(max(totals))]


def _framework(scorers, picker):
    filters = (NamedFilter("healthy", HealthyFilter()),)
    return SchedulingFramework({"p": Profile("p", filters, tuple(scorers), picker)})


def test_weighted_sum_of_scores():
    picker = RecordingPicker()
    fw = _framework(
        [
            WeightedScorer("x", FixedScorer({"a": 1.0, "b": 0.0}), 1.0),
            WeightedScorer("y", FixedScorer({"a": 0.0, "b": 1.0}), 3.0),
        ],
        picker,
    )
    chosen = fw.schedule("p", REQ, [view("a"), view("b")], random.Random(0))
    assert chosen.instance_id == "b"
    assert picker.seen == [("a", 1.0), ("b", 3.0)]


def test_zero_weight_scorer_has_no_effect():
    picker = RecordingPicker()
    fw = _framework([WeightedScorer("x", FixedScorer({"a": 1.0, "b": 0.0}), 0.0)], picker)
    fw.schedule("p", REQ, [view("a"), view("b")], random.Random(0))
    assert picker.seen == [("a", 0.0), ("b", 0.0)]


def test_scores_are_clamped_to_unit_interval():
    picker = RecordingPicker()
    fw = _framework([WeightedScorer("x", FixedScorer({"a": 7.0, "b": -3.0, "c": float("nan")}), 2.0)], picker)
    fw.schedule("p", REQ, [view("a"), view("b"), view("c")], random.Random(0))
    assert picker.seen == [("a", 2.0), ("b", 0.0), ("c", 0.0)]


def test_clamp_score():
    assert [clamp_score(v) for v in (-0.1, 0.0, 0.4, 1.0, 1.5, float("inf"), float("nan"))] == [
        0.0,
        0.0,
        0.4,
        1.0,
        1.0,
        1.0,
        0.0,
    ]


def test_clamping_also_after_the_first_scorer():
    picker = RecordingPicker()
    fw = _framework(
        [
            WeightedScorer("x", FixedScorer({"a": 0.5, "b": 0.5, "c": 0.5}), 1.0),
            WeightedScorer("y", FixedScorer({"a": 7.0, "b": -3.0, "c": float("nan")}), 0.5),
        ],
        picker,
    )
    fw.schedule("p", REQ, [view("a"), view("b"), view("c")], random.Random(0))
    assert picker.seen == [("a", 1.0), ("b", 0.5), ("c", 0.5)]


def test_no_scorers_gives_zero_totals():
    picker = RecordingPicker()
    _framework([], picker).schedule("p", REQ, [view("b"), view("a")], random.Random(0))
    assert picker.seen == [("a", 0.0), ("b", 0.0)]


def test_scorers_and_picker_see_candidates_in_instance_id_order():
    scorer, picker = FixedScorer({i: 0.5 for i in "abc"}), RecordingPicker()
    _framework([WeightedScorer("x", scorer, 1.0)], picker).schedule(
        "p", REQ, [view("c"), view("a"), view("b")], random.Random(0)
    )
    assert scorer.seen == ["a", "b", "c"]
    assert [iid for iid, _ in picker.seen] == ["a", "b", "c"]


def test_wrong_number_of_scores_is_a_plugin_error():
    fw = _framework([WeightedScorer("x", FixedScorer({"a": 1.0}), 1.0)], RecordingPicker())
    with pytest.raises(ValueError, match="scorer 'x' returned 1 scores for 2 candidates"):
        fw.schedule("p", REQ, [view("a"), view("b")], random.Random(0))


def test_filters_run_before_scoring_and_picking():
    picker = RecordingPicker()
    fw = _framework([WeightedScorer("x", FixedScorer({"a": 0.0}), 1.0)], picker)
    assert fw.schedule("p", REQ, [view("a"), view("b", healthy=False)], random.Random(0)).instance_id == "a"
    assert picker.seen == [("a", 0.0)]


def test_deterministic_with_seeded_rng_and_independent_of_view_order():
    fw = _framework([WeightedScorer("x", FixedScorer({i: 0.5 for i in "abcdef"}), 1.0)], PowerOfTwoPicker())
    views = [view(i) for i in "abcdef"]

    def run(vs):
        rng = random.Random(42)
        return [fw.schedule("p", REQ, vs, rng).instance_id for _ in range(50)]

    first = run(views)
    assert run(views) == first
    assert run(list(reversed(views))) == first
    assert len(set(first)) > 1


def test_no_instances_raises_no_capacity():
    fw = _framework([], RecordingPicker())
    with pytest.raises(NoCapacity, match="no instances to schedule request r1 on"):
        fw.schedule("p", REQ, [], random.Random(0))


def test_filter_rejecting_all_names_itself():
    fw = _framework([], RecordingPicker())
    with pytest.raises(NoCapacity) as info:
        fw.schedule("p", REQ, [view("a", healthy=False), view("b", healthy=False)], random.Random(0))
    assert info.value.message == (
        "no instance can take request r1: filter 'healthy' of profile 'p' rejected all 2 candidates"
    )
    assert info.value.status_code == 503


def test_unknown_profile_is_config_error():
    fw = _framework([], RecordingPicker())
    with pytest.raises(ConfigError, match=r"unknown scheduling profile 'q' \(configured: p\)"):
        fw.schedule("q", REQ, [view("a")], random.Random(0))
