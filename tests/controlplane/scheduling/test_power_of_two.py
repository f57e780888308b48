import random

from controlplane.scheduling.plugins.power_of_two import PowerOfTwoPicker
from tests.controlplane.scheduling.helpers import view


def _cands(*ids_totals):
    return [view(i) for i, _ in ids_totals], [t for _, t in ids_totals]


def test_single_candidate_without_rng():
    rng = random.Random(3)
    assert PowerOfTwoPicker().pick([view("a")], [0.0], rng).instance_id == "a"
    assert rng.random() == random.Random(3).random()


def test_of_two_candidates_always_the_better():
    cands, totals = _cands(("a", 0.2), ("b", 0.9))
    rng = random.Random(0)
    assert {PowerOfTwoPicker().pick(cands, totals, rng).instance_id for _ in range(20)} == {"b"}


def test_takes_the_higher_of_the_two_sampled():
    cands, totals = _cands(("a", 0.1), ("b", 0.5), ("c", 0.9), ("d", 0.3))
    for seed in range(30):
        i, j = random.Random(seed).sample(range(4), 2)
        expected = cands[i] if totals[i] >= totals[j] else cands[j]
        assert PowerOfTwoPicker().pick(cands, totals, random.Random(seed)) == expected


def test_tie_goes_to_first_sampled():
    cands, totals = _cands(("a", 0.5), ("b", 0.5), ("c", 0.5))
    for seed in range(10):
        first, _ = random.Random(seed).sample(range(3), 2)
        assert PowerOfTwoPicker().pick(cands, totals, random.Random(seed)) == cands[first]


def test_never_picks_the_worst_of_three():
    cands, totals = _cands(("a", 0.0), ("b", 0.5), ("c", 1.0))
    picks = {PowerOfTwoPicker().pick(cands, totals, random.Random(s)).instance_id for s in range(50)}
    assert picks == {"b", "c"}
