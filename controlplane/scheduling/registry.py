"""Plugin names -> factories: dispatch plugins, migration policies, and the settings of plugins.

- `FILTERS`, `SCORERS`, `PICKERS` build dispatch profiles (`ProfileConfig` -> `Profile`); every
  profile gets fresh plugin instances, so stateful plugins (round_robin's counter) are never shared.
- `MIGRATION_POLICIES` build the controller's migration policy by name
  (`controller.migration_policy`): `llumnix` (every Llumnix rule) and `none` (no migrations of
  its own: only drains, with Llumnix's drain rule).
- `PLUGIN_SETTINGS`: the settings type of every plugin name that has options (the config's
  `plugins` section). A name's settings apply wherever that name is used, so the `llumnix` scorer
  and the `llumnix` migration policy read one headroom.

Unknown names raise ConfigError naming the config key. Mechanism never looks at a policy's name:
it asks this registry for the object.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from annotated_types import Ge

from controlplane.scheduling.framework import (
    Filter,
    NamedFilter,
    Picker,
    Profile,
    SchedulingFramework,
    Scorer,
    WeightedScorer,
)
from controlplane.scheduling.llumnix_migration import LlumnixMigrationPolicy
from controlplane.scheduling.migration import MigrationPolicy
from controlplane.scheduling.plugins.free_kv import FreeKVScorer
from controlplane.scheduling.plugins.healthy import HealthyFilter
from controlplane.scheduling.plugins.infaas import InfaasScorer
from controlplane.scheduling.plugins.least_requests import LeastRequestsScorer
from controlplane.scheduling.plugins.llumnix import LlumnixScorer, LlumnixSettings
from controlplane.scheduling.plugins.load import LoadScorer
from controlplane.scheduling.plugins.max_score import MaxScorePicker
from controlplane.scheduling.plugins.power_of_two import PowerOfTwoPicker
from controlplane.scheduling.plugins.random_picker import RandomPicker
from controlplane.scheduling.plugins.round_robin import RoundRobinPicker
from flotilla.errors import ConfigError

PluginSettings = Mapping[str, Any]
"""Settings of plugins by plugin name (an instance of `PLUGIN_SETTINGS[name]`; absent: defaults)."""

PLUGIN_SETTINGS: dict[str, type] = {"llumnix": LlumnixSettings}


def settings_of(name: str, plugins: PluginSettings | None) -> Any:
    """The settings of plugin `name`: the given ones, else its type's defaults."""
    given = (plugins or {}).get(name)
    return given if given is not None else PLUGIN_SETTINGS[name]()


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
MIGRATION_POLICIES: dict[str, Callable[[PluginSettings | None, int], MigrationPolicy]] = {
    "none": lambda plugins, max_in_flight: LlumnixMigrationPolicy(
        settings_of("llumnix", plugins), max_in_flight, rules=("drain",)),
    "llumnix": lambda plugins, max_in_flight: LlumnixMigrationPolicy(settings_of("llumnix", plugins), max_in_flight),
}


@dataclass(frozen=True)
class ProfileConfig:
    """A scheduling profile by plugin names: filters in order, scorer name -> weight, one picker."""

    filters: tuple[str, ...] = ("healthy",)
    scorers: dict[str, Annotated[float, Ge(0.0)]] = field(default_factory=dict)
    picker: str = "power_of_two"


LLUMNIX_PROFILE = ProfileConfig(filters=("healthy",), scorers={"llumnix": 1.0}, picker="max_score")
"""Llumnix's dispatch (the freest instance); with `controller.migration_policy: llumnix` the whole
llumnix policy."""


def default_profiles() -> dict[str, ProfileConfig]:
    """The profiles every config has unless it changes them: `default` and `llumnix`."""
    return {
        "default": ProfileConfig(filters=("healthy",), scorers={"load": 1.0, "free_kv": 0.5}, picker="power_of_two"),
        "llumnix": LLUMNIX_PROFILE,
    }


T = TypeVar("T")


def _make(kind: str, name: str, factories: Mapping[str, Callable[..., T]], key: str,
          plugins: PluginSettings | None = None) -> T:
    try:
        factory = factories[name]
    except KeyError:
        raise ConfigError(
            f"config error: {key}: unknown {kind} {name!r} (known: {', '.join(sorted(factories))})"
        ) from None
    return factory(settings_of(name, plugins)) if name in PLUGIN_SETTINGS else factory()


def build_profile(name: str, spec: ProfileConfig, plugins: PluginSettings | None = None) -> Profile:
    """Instantiate the plugins `spec` names, each with its settings in `plugins`. Raises
    ConfigError for an unknown plugin name."""
    key = f"scheduling.profiles.{name}"
    filters = tuple(NamedFilter(f, _make("filter", f, FILTERS, f"{key}.filters")) for f in spec.filters)
    scorers = tuple(
        WeightedScorer(s, _make("scorer", s, SCORERS, f"{key}.scorers", plugins), weight)
        for s, weight in spec.scorers.items()
    )
    picker = _make("picker", spec.picker, PICKERS, f"{key}.picker")
    return Profile(name=name, filters=filters, scorers=scorers, picker=picker)


def build_framework(profiles: Mapping[str, ProfileConfig], plugins: PluginSettings | None = None) -> SchedulingFramework:
    """A framework with one profile per entry of `profiles` (e.g. `config.scheduling.profiles`),
    its plugins built with their settings in `plugins`."""
    return SchedulingFramework({name: build_profile(name, spec, plugins) for name, spec in profiles.items()})


def build_migration_policy(name: str, plugins: PluginSettings | None, max_in_flight: int) -> MigrationPolicy:
    """The migration policy registered as `name`, with its plugins' settings and the bound on
    migrations per instance. ConfigError for an unknown name."""
    try:
        factory = MIGRATION_POLICIES[name]
    except KeyError:
        raise ConfigError(f"config error: controller.migration_policy: unknown migration policy {name!r} "
                          f"(known: {', '.join(sorted(MIGRATION_POLICIES))})") from None
    return factory(plugins, max_in_flight)
