"""The controller's settings: the one declaration of the `controller` config keys."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

from annotated_types import Gt


@dataclass(frozen=True)
class ControllerSettings:
    """migration_policy: the migration policy the controller plans with every `interval_s`, by its
    name in `controlplane/scheduling/registry.py` (`none`: only drains and operators' migrations;
    `llumnix`: load balance, defragmentation and priority isolation too). max_in_flight: migrations
    at once per instance, as source or destination (the policy plans within it, the migrator
    enforces it)."""

    migration_policy: str = "none"
    interval_s: Annotated[float, Gt(0)] = 0.5
    max_in_flight: Annotated[int, Gt(0)] = 2

    def __post_init__(self) -> None:
        if not (math.isfinite(self.interval_s) and self.interval_s > 0):
            raise ValueError(f"controller.interval_s must be a finite number > 0, got {self.interval_s}")
        if self.max_in_flight < 1:
            raise ValueError(f"controller.max_in_flight must be >= 1, got {self.max_in_flight}")
