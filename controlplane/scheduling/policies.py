"""Named scheduling policies: a dispatch profile made of registered plugins, plus, for `llumnix`, a
migration policy.

These are the comparison points of the simulator's experiments (the profiles can be copied into the
serving config's `scheduling.profiles`). Every policy drops unhealthy instances first.

| policy | scorers | picker | migration |
|---|---|---|---|
| `round-robin` | none | `round_robin` | none |
| `random` | none | `random` | none |
| `least-requests` | `least_requests` | `max_score` | none |
| `power-of-two` | `least_requests` | `power_of_two` | none |
| `infaas` | `infaas` (INFaaS++ of the Llumnix paper) | `max_score` | none |
| `llumnix` | `llumnix` (freeness with virtual usages) | `max_score` | `LlumnixMigrationPolicy` |

`BASELINE_POLICIES` are the dispatch-only baselines; `POLICIES` adds `llumnix`.
"""

from __future__ import annotations

import copy

from controlplane.scheduling.migration import MigrationPolicy
from controlplane.scheduling.registry import (
    LLUMNIX_PROFILE,
    PluginSettings,
    ProfileConfig,
    build_migration_policy,
)
from flotilla.errors import ConfigError

BASELINE_POLICIES: dict[str, ProfileConfig] = {
    "round-robin": ProfileConfig(filters=("healthy",), scorers={}, picker="round_robin"),
    "random": ProfileConfig(filters=("healthy",), scorers={}, picker="random"),
    "least-requests": ProfileConfig(
        filters=("healthy",), scorers={"least_requests": 1.0}, picker="max_score"
    ),
    "power-of-two": ProfileConfig(
        filters=("healthy",), scorers={"least_requests": 1.0}, picker="power_of_two"
    ),
    "infaas": ProfileConfig(filters=("healthy",), scorers={"infaas": 1.0}, picker="max_score"),
}

POLICIES: dict[str, ProfileConfig] = {
    **BASELINE_POLICIES,
    "llumnix": LLUMNIX_PROFILE,
}

MIGRATION_OF: dict[str, str] = {"llumnix": "llumnix"}
"""Policy name -> the name of its migration policy in `registry.MIGRATION_POLICIES` (policies that
only dispatch have none)."""


def policy_profile(name: str) -> ProfileConfig:
    """A copy of policy `name`'s dispatch profile; raises ConfigError listing the known policies."""
    try:
        return copy.deepcopy(POLICIES[name])
    except KeyError:
        raise ConfigError(f"unknown dispatch policy {name!r} (known: {', '.join(sorted(POLICIES))})") from None


def policy_migration(name: str, plugins: PluginSettings | None, max_in_flight: int) -> MigrationPolicy | None:
    """A fresh migration policy of policy `name` with its plugins' settings and the bound on
    migrations per instance, or None when it only dispatches."""
    migration = MIGRATION_OF.get(name)
    return None if migration is None else build_migration_policy(migration, plugins, max_in_flight)
