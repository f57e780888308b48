import random

import pytest

from controlplane.config import FlotillaConfig
from controlplane.scheduling.plugins.free_kv import FreeKVScorer
from controlplane.scheduling.plugins.healthy import HealthyFilter
from controlplane.scheduling.plugins.infaas import InfaasScorer
from controlplane.scheduling.plugins.least_requests import LeastRequestsScorer
from controlplane.scheduling.plugins.load import LoadScorer
from controlplane.scheduling.plugins.max_score import MaxScorePicker
from controlplane.scheduling.plugins.power_of_two import PowerOfTwoPicker
from controlplane.scheduling.plugins.random_picker import RandomPicker
from controlplane.scheduling.plugins.round_robin import RoundRobinPicker
from controlplane.scheduling.registry import ProfileConfig, build_framework, build_profile
from flotilla.errors import ConfigError
from tests.controlplane.scheduling.helpers import REQ, view


def test_default_profile_from_default_config():
    fw = build_framework(FlotillaConfig().scheduling.profiles)
    profile = fw.profile("default")
    assert [(f.name, type(f.plugin)) for f in profile.filters] == [("healthy", HealthyFilter)]
    assert [(s.name, type(s.plugin), s.weight) for s in profile.scorers] == [
        ("load", LoadScorer, 1.0),
        ("free_kv", FreeKVScorer, 0.5),
    ]
    assert isinstance(profile.picker, PowerOfTwoPicker)


@pytest.mark.parametrize(
    ("scorers", "picker", "types"),
    [
        ({"least_requests": 1.0}, "max_score", (LeastRequestsScorer, MaxScorePicker)),
        ({"infaas": 2.0}, "random", (InfaasScorer, RandomPicker)),
    ],
)
def test_baseline_plugins_are_registered(scorers, picker, types):
    profile = build_profile("p", ProfileConfig(scorers=scorers, picker=picker))
    assert (type(profile.scorers[0].plugin), type(profile.picker)) == types


def test_default_profile_prefers_idle_instance():
    fw = build_framework(FlotillaConfig().scheduling.profiles)
    views = [view("busy", tokens_in_flight=900, free_blocks=10), view("idle")]
    assert fw.schedule("default", REQ, views, random.Random(0)).instance_id == "idle"


def test_each_profile_gets_its_own_plugin_instances():
    spec = ProfileConfig(filters=(), scorers={}, picker="round_robin")
    fw = build_framework({"one": spec, "two": spec})
    assert isinstance(fw.profile("one").picker, RoundRobinPicker)
    assert fw.profile("one").picker is not fw.profile("two").picker
    views = [view("a"), view("b")]
    rng = random.Random(0)
    assert fw.schedule("one", REQ, views, rng).instance_id == "a"
    assert fw.schedule("two", REQ, views, rng).instance_id == "a"
    assert fw.schedule("one", REQ, views, rng).instance_id == "b"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            ProfileConfig(filters=("healty",)),
            "config error: scheduling.profiles.p.filters: unknown filter 'healty' (known: healthy)",
        ),
        (
            ProfileConfig(scorers={"lod": 1.0}),
            (
                "config error: scheduling.profiles.p.scorers: unknown scorer 'lod' "
                "(known: free_kv, infaas, least_requests, llumnix, load)"
            ),
        ),
        (
            ProfileConfig(picker="randm"),
            (
                "config error: scheduling.profiles.p.picker: unknown picker 'randm' "
                "(known: max_score, power_of_two, random, round_robin)"
            ),
        ),
    ],
)
def test_unknown_plugin_names(spec, message):
    with pytest.raises(ConfigError) as info:
        build_profile("p", spec)
    assert info.value.message == message


def test_default_profile_decisions_match_the_dict_based_framework():
    """30 decisions over 20 shuffled views, recorded with the framework before scores became lists."""
    g = random.Random(11)
    views = [
        view(
            f"i{k:02d}",
            healthy=k % 7 != 3,
            running=g.randint(0, 8),
            waiting=g.randint(0, 4),
            free_blocks=g.randint(0, 100),
            tokens_in_flight=g.randint(0, 3000),
            queued_prompt_tokens=g.randint(0, 400),
            pending_requests=g.randint(0, 2),
            pending_tokens=g.choice((0, g.randint(1, 200))),
        )
        for k in range(20)
    ]
    g.shuffle(views)
    fw = build_framework(FlotillaConfig().scheduling.profiles)
    rng = random.Random(7)
    picks = " ".join(fw.schedule("default", REQ, views, rng).instance_id[1:] for _ in range(30))
    assert (
        picks == "12 14 04 13 07 01 15 08 15 04 08 14 08 05 05 11 06 07 04 07 15 12 13 08 06 11 18 12 11 15"
    )


def test_the_llumnix_scorer_takes_the_configured_headroom():
    config = FlotillaConfig.model_validate({"plugins": {"llumnix": {"headroom_blocks": 0, "headroom_fraction": 0.5}}})
    fw = build_framework(config.scheduling.profiles, config.plugin_settings())
    scorer = fw.profile("llumnix").scorers[0].plugin
    assert (scorer.headroom_blocks, scorer.headroom_fraction) == (0, 0.5)
    assert build_framework(config.scheduling.profiles).profile("llumnix").scorers[0].plugin.headroom_blocks == 64
