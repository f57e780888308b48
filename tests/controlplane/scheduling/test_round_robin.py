import random

from controlplane.scheduling.plugins.round_robin import RoundRobinPicker
from tests.controlplane.scheduling.helpers import view


def _cands(ids):
    return [view(i) for i in ids]


def test_cycles_in_the_given_order_ignoring_totals():
    picker = RoundRobinPicker()
    rng = random.Random(0)
    cands = _cands("abc")
    picks = [picker.pick(cands, [0.0, 1.0, 0.5], rng).instance_id for _ in range(5)]
    assert picks == ["a", "b", "c", "a", "b"]


def test_does_not_reorder_what_it_is_given():
    # the framework sorts by instance id; the picker trusts that order
    picker = RoundRobinPicker()
    rng = random.Random(0)
    assert [picker.pick(_cands("cab"), [0.0] * 3, rng).instance_id for _ in range(3)] == ["c", "a", "b"]


def test_counter_continues_when_candidates_change():
    picker = RoundRobinPicker()
    rng = random.Random(0)
    assert picker.pick(_cands("ab"), [0.0, 0.0], rng).instance_id == "a"
    assert picker.pick(_cands("abc"), [0.0] * 3, rng).instance_id == "b"
    assert picker.pick(_cands("abc"), [0.0] * 3, rng).instance_id == "c"


def test_does_not_draw_from_rng():
    rng = random.Random(5)
    RoundRobinPicker().pick(_cands("ab"), [0.0, 0.0], rng)
    assert rng.random() == random.Random(5).random()
