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

from collections.abc import Callable

from controlplane.config import LLUMNIX_PROFILE, ProfileConfig
from controlplane.scheduling.llumnix_migration import LlumnixMigrationPolicy
from controlplane.scheduling.migration import MigrationPolicy
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

MIGRATION_POLICIES: dict[str, Callable[[], MigrationPolicy]] = {"llumnix": LlumnixMigrationPolicy}
"""Policy name -> a fresh migration policy with default settings (policies without one: none)."""


def policy_profile(name: str) -> ProfileConfig:
    """A copy of policy `name`'s dispatch profile; raises ConfigError listing the known policies."""
    try:
        return POLICIES[name].model_copy(deep=True)
    except KeyError:
        raise ConfigError(f"unknown dispatch policy {name!r} (known: {', '.join(sorted(POLICIES))})") from None


def policy_migration(name: str) -> MigrationPolicy | None:
    """A fresh migration policy of policy `name`, or None when it only dispatches."""
    factory = MIGRATION_POLICIES.get(name)
    return None if factory is None else factory()
