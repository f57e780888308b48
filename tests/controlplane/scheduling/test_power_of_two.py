import random

from controlplane.scheduling.plugins.power_of_two import PowerOfTwoPicker
from controlplane.scheduling.types import Scored
from tests.controlplane.scheduling.helpers import view


def test_single_candidate_without_rng():
    rng = random.Random(3)
    assert PowerOfTwoPicker().pick([Scored(view("a"), 0.0)], rng).instance_id == "a"
    assert rng.random() == random.Random(3).random()


def test_of_two_candidates_always_the_better():
    scored = [Scored(view("a"), 0.2), Scored(view("b"), 0.9)]
    rng = random.Random(0)
    assert {PowerOfTwoPicker().pick(scored, rng).instance_id for _ in range(20)} == {"b"}


def test_takes_the_higher_of_the_two_sampled():
    scored = [Scored(view(i), s) for i, s in [("a", 0.1), ("b", 0.5), ("c", 0.9), ("d", 0.3)]]
    for seed in range(30):
        i, j = random.Random(seed).sample(range(4), 2)
        expected = max((scored[i], scored[j]), key=lambda s: s.score).instance.instance_id
        assert PowerOfTwoPicker().pick(scored, random.Random(seed)).instance_id == expected


def test_tie_goes_to_first_sampled():
    scored = [Scored(view(i), 0.5) for i in "abc"]
    for seed in range(10):
        first, _ = random.Random(seed).sample(range(3), 2)
        assert PowerOfTwoPicker().pick(scored, random.Random(seed)) == scored[first].instance


def test_never_picks_the_worst_of_three():
    scored = [Scored(view("a"), 0.0), Scored(view("b"), 0.5), Scored(view("c"), 1.0)]
    picks = {PowerOfTwoPicker().pick(scored, random.Random(s)).instance_id for s in range(50)}
    assert picks == {"b", "c"}
