import random

from controlplane.scheduling.plugins.round_robin import RoundRobinPicker
from controlplane.scheduling.types import Scored
from tests.controlplane.scheduling.helpers import view


def _scored(*ids_scores):
    return [Scored(view(i), s) for i, s in ids_scores]


def test_cycles_in_instance_id_order_ignoring_scores():
    picker = RoundRobinPicker()
    rng = random.Random(0)
    scored = _scored(("c", 1.0), ("a", 0.0), ("b", 0.5))
    picks = [picker.pick(scored, rng).instance_id for _ in range(5)]
    assert picks == ["a", "b", "c", "a", "b"]


def test_counter_continues_when_candidates_change():
    picker = RoundRobinPicker()
    rng = random.Random(0)
    assert picker.pick(_scored(("a", 0), ("b", 0)), rng).instance_id == "a"
    assert picker.pick(_scored(("a", 0), ("b", 0), ("c", 0)), rng).instance_id == "b"
    assert picker.pick(_scored(("a", 0), ("b", 0), ("c", 0)), rng).instance_id == "c"


def test_does_not_draw_from_rng():
    rng = random.Random(5)
    RoundRobinPicker().pick(_scored(("a", 0), ("b", 0)), rng)
    assert rng.random() == random.Random(5).random()
