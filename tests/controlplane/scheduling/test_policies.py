import dataclasses
import random
import re
from pathlib import Path

import pytest
import yaml

from controlplane.config import FlotillaConfig, SchedulingSection
from controlplane.scheduling.policies import BASELINE_POLICIES, policy_profile
from controlplane.scheduling.registry import build_framework
from flotilla.errors import ConfigError
from tests.controlplane.scheduling.helpers import REQ, view

# after the healthy filter the candidates are a, b, d (in that order)
VIEWS = [
    view("d", running=1, free_blocks=90),  # 1 request, freeness 90 / 1 = 90
    view("c", healthy=False),
    view("b", free_blocks=10),  # idle, freeness 10 / 1 = 10
    view("a", running=2, waiting=1, free_blocks=50),  # 3 requests, freeness 50 / 2 = 25
]


def _picks(policy: str, n: int = 6) -> str:
    fw = build_framework(BASELINE_POLICIES)
    rng = random.Random(0)
    return "".join(fw.schedule(policy, REQ, VIEWS, rng).instance_id for _ in range(n))


def test_the_five_baselines():
    assert sorted(BASELINE_POLICIES) == ["infaas", "least-requests", "power-of-two", "random", "round-robin"]


@pytest.mark.parametrize("name", sorted(BASELINE_POLICIES))
def test_every_policy_filters_unhealthy_first(name):
    assert policy_profile(name).filters[0] == "healthy"


def test_round_robin_cycles_over_healthy_instances_in_id_order():
    assert _picks("round-robin") == "abdabd"


def test_random_draws_randrange_over_healthy_instances():
    # random.Random(0).randrange(3) x 6 == 1, 1, 0, 1, 2, 1
    assert _picks("random") == "bbabdb"


def test_least_requests_goes_to_the_idle_instance():
    assert _picks("least-requests") == "bbbbbb"


def test_power_of_two_compares_request_counts_of_two_samples():
    # random.Random(0).sample(range(3), 2) x 6 == [1,2] [0,1] [2,1] [1,2] [1,2] [2,0];
    # least_requests scores a 0, b 1, d 2/3: only the last pair (d, a) leaves out b
    assert _picks("power-of-two") == "bbbbbd"


def test_infaas_goes_to_the_freest_instance():
    assert _picks("infaas") == "dddddd"


def test_unknown_policy_lists_the_known_ones():
    with pytest.raises(ConfigError) as info:
        policy_profile("least_requests")
    assert info.value.message == (
        "unknown dispatch policy 'least_requests' "
        "(known: infaas, least-requests, llumnix, power-of-two, random, round-robin)"
    )


def test_policies_are_valid_serving_config_profiles():
    cfg = FlotillaConfig.model_validate(
        {
            "gateway": {"default_profile": "infaas"},
            "scheduling": {"profiles": {n: dataclasses.asdict(p) for n, p in BASELINE_POLICIES.items()}},
        }
    )
    fw = build_framework(cfg.scheduling.profiles)
    assert fw.profile_names == sorted(BASELINE_POLICIES)
    assert fw.schedule(cfg.gateway.default_profile, REQ, VIEWS, random.Random(0)).instance_id == "d"


def test_policy_profile_returns_a_copy():
    policy_profile("infaas").scorers["load"] = 1.0
    assert policy_profile("infaas").scorers == {"infaas": 1.0}


def test_configuration_doc_lists_the_policies_as_they_are():
    doc = (Path(__file__).resolve().parents[3] / "docs" / "configuration.md").read_text()
    block = re.search(r"baseline dispatch policies.*?```yaml\n(.*?)```", doc, re.DOTALL).group(1)
    documented = SchedulingSection.model_validate(yaml.safe_load(block)["scheduling"]).profiles
    assert documented == BASELINE_POLICIES
