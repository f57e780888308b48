import random

from controlplane.scheduling.plugins.random_picker import RandomPicker
from tests.controlplane.scheduling.helpers import view


def _cands(ids):
    return [view(i) for i in ids]


def test_exact_picks_for_a_seed():
    # random.Random(0).randrange(5) x 10 == 3, 3, 0, 2, 4, 3, 3, 2, 3, 2
    cands, rng = _cands("abcde"), random.Random(0)
    picks = [RandomPicker().pick(cands, [0.0] * 5, rng).instance_id for _ in range(10)]
    assert "".join(picks) == "ddaceddcdc"


def test_ignores_totals():
    cands = _cands("abc")
    low_first = [RandomPicker().pick(cands, [0.0, 0.5, 1.0], random.Random(s)) for s in range(20)]
    high_first = [RandomPicker().pick(cands, [1.0, 0.5, 0.0], random.Random(s)) for s in range(20)]
    assert low_first == high_first


def test_one_randrange_draw_per_pick_even_for_one_candidate():
    rng, reference = random.Random(9), random.Random(9)
    assert RandomPicker().pick(_cands("a"), [0.0], rng).instance_id == "a"
    reference.randrange(1)
    assert rng.random() == reference.random()


def test_roughly_uniform():
    cands, rng = _cands("abc"), random.Random(1)
    picks = [RandomPicker().pick(cands, [0.0] * 3, rng).instance_id for _ in range(3000)]
    assert [picks.count(i) for i in "abc"] == [972, 987, 1041]
