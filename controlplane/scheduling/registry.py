"""Plugin names -> factories, and profiles built from configuration.

Every profile gets fresh plugin instances, so stateful plugins (round_robin's counter) are never
shared between profiles. Unknown plugin names raise ConfigError naming the config key. `options`
gives a scorer's keyword arguments by its name (the `llumnix` scorer's headroom, from
`migration.llumnix`, so dispatch and migration read the same headroom).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from controlplane.config import ProfileConfig
from controlplane.scheduling.framework import (
    Filter,
    NamedFilter,
    Picker,
    Profile,
    SchedulingFramework,
    Scorer,
    WeightedScorer,
)
from controlplane.scheduling.plugins.free_kv import FreeKVScorer
from controlplane.scheduling.plugins.healthy import HealthyFilter
from controlplane.scheduling.plugins.infaas import InfaasScorer
from controlplane.scheduling.plugins.least_requests import LeastRequestsScorer
from controlplane.scheduling.plugins.llumnix import LlumnixScorer
from controlplane.scheduling.plugins.load import LoadScorer
from controlplane.scheduling.plugins.max_score import MaxScorePicker
from controlplane.scheduling.plugins.power_of_two import PowerOfTwoPicker
from controlplane.scheduling.plugins.random_picker import RandomPicker
from controlplane.scheduling.plugins.round_robin import RoundRobinPicker
from flotilla.errors import ConfigError

FILTERS: dict[str, Callable[[], Filter]] = {"healthy": HealthyFilter}
SCORERS: dict[str, Callable[..., Scorer]] = {
    "load": LoadScorer,
    "free_kv": FreeKVScorer,
    "least_requests": LeastRequestsScorer,
    "infaas": InfaasScorer,
    "llumnix": LlumnixScorer,
}
PICKERS: dict[str, Callable[[], Picker]] = {
    "round_robin": RoundRobinPicker,
    "power_of_two": PowerOfTwoPicker,
    "random": RandomPicker,
    "max_score": MaxScorePicker,
}

T = TypeVar("T")

PluginOptions = Mapping[str, Mapping[str, Any]]
"""Keyword arguments of plugins by plugin name (absent: the plugin's defaults)."""


def _make(kind: str, name: str, factories: Mapping[str, Callable[..., T]], key: str,
          options: PluginOptions | None = None) -> T:
    try:
        factory = factories[name]
    except KeyError:
        raise ConfigError(
            f"config error: {key}: unknown {kind} {name!r} (known: {', '.join(sorted(factories))})"
        ) from None
    return factory(**(options or {}).get(name, {}))


def build_profile(name: str, spec: ProfileConfig, options: PluginOptions | None = None) -> Profile:
    """Instantiate the plugins `spec` names. Raises ConfigError for an unknown plugin name."""
    key = f"scheduling.profiles.{name}"
    filters = tuple(NamedFilter(f, _make("filter", f, FILTERS, f"{key}.filters")) for f in spec.filters)
    scorers = tuple(
        WeightedScorer(s, _make("scorer", s, SCORERS, f"{key}.scorers", options), weight)
        for s, weight in spec.scorers.items()
    )
    picker = _make("picker", spec.picker, PICKERS, f"{key}.picker")
    return Profile(name=name, filters=filters, scorers=scorers, picker=picker)


def build_framework(profiles: Mapping[str, ProfileConfig], options: PluginOptions | None = None) -> SchedulingFramework:
    """A framework with one profile per entry of `profiles` (e.g. `config.scheduling.profiles`),
    its scorers built with `options`."""
    return SchedulingFramework({name: build_profile(name, spec, options) for name, spec in profiles.items()})
