"""Named baseline dispatch policies, each a scheduling profile made of registered plugins.

These are the comparison points of the simulator's experiments (and can be copied into the serving
config's `scheduling.profiles`). Every policy drops unhealthy instances first.

| policy | scorers | picker |
|---|---|---|
| `round-robin` | none | `round_robin` |
| `random` | none | `random` |
| `least-requests` | `least_requests` | `max_score` |
| `power-of-two` | `least_requests` | `power_of_two` |
| `infaas` | `infaas` (INFaaS++ of the Llumnix paper) | `max_score` |
"""

from __future__ import annotations

from controlplane.config import ProfileConfig
from controlplane.errors import ConfigError

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


def policy_profile(name: str) -> ProfileConfig:
    """A copy of baseline policy `name`'s profile; raises ConfigError listing the known policies."""
    try:
        return BASELINE_POLICIES[name].model_copy(deep=True)
    except KeyError:
        raise ConfigError(
            f"unknown dispatch policy {name!r} (known: {', '.join(sorted(BASELINE_POLICIES))})"
        ) from None
