import random
from collections.abc import Sequence

from controlplane.scheduling.framework import NamedFilter, Profile, SchedulingFramework, WeightedScorer
from controlplane.scheduling.plugins.healthy import HealthyFilter
from controlplane.scheduling.plugins.max_score import MaxScorePicker
from controlplane.scheduling.types import InstanceView, RequestView
from tests.controlplane.scheduling.helpers import REQ, view


class ByIdScorer:
    """Scores each candidate by a fixed score per instance id."""

    def __init__(self, scores: dict[str, float]) -> None:
        self.scores = scores

    def score(self, req: RequestView, cands: Sequence[InstanceView]) -> list[float]:
        return [self.scores[c.instance_id] for c in cands]


def test_highest_total_wins():
    cands = [view("a"), view("b"), view("c")]
    assert MaxScorePicker().pick(cands, [0.2, 0.9, 0.5], random.Random(0)).instance_id == "b"


def test_ties_rotate_over_the_tied_candidates():
    cands = [view("a"), view("b"), view("c"), view("d")]
    picker = MaxScorePicker()
    tied = [picker.pick(cands, [0.1, 0.7, 0.3, 0.7], random.Random(0)).instance_id for _ in range(3)]
    assert tied == ["b", "d", "b"]
    assert picker.pick(cands, [0.0, 0.0, 0.9, 0.0], random.Random(0)).instance_id == "c"  # no tie: no turn
    assert [picker.pick(cands, [0.0] * 4, random.Random(0)).instance_id for _ in range(5)] == ["d", "a", "b", "c", "d"]


def test_does_not_draw_from_rng():
    rng = random.Random(5)
    MaxScorePicker().pick([view("a"), view("b")], [0.0, 1.0], rng)
    assert rng.random() == random.Random(5).random()


def test_through_the_framework_the_first_tie_goes_to_the_lowest_instance_id_whatever_the_view_order():
    scorer = ByIdScorer({"x1": 0.4, "x2": 0.8, "x3": 0.8, "x4": 0.1})
    filters = (NamedFilter("healthy", HealthyFilter()),)
    fw = SchedulingFramework(
        {"p": Profile("p", filters, (WeightedScorer("s", scorer, 1.0),), MaxScorePicker())}
    )
    views = [view("x4"), view("x3"), view("x2"), view("x1")]
    assert fw.schedule("p", REQ, views, random.Random(0)).instance_id == "x2"
    assert fw.schedule("p", REQ, list(reversed(views)), random.Random(0)).instance_id == "x3"
