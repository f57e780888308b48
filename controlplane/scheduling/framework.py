"""The scheduling framework: filters, then weighted scorers, then a picker, per named profile.

Shaped after the Gateway API inference extension / llm-d router: the framework is a small runner
and every opinion lives in a plugin. A decision is a pure function of its inputs (the request view,
the instance views, the profile and a seeded `random.Random`) plus the pickers' own documented state;
nothing here reads a clock or does I/O.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from controlplane.errors import ConfigError, NoCapacity
from controlplane.scheduling.types import InstanceId, InstanceView, RequestView, Scored


class Filter(Protocol):
    """Drops candidates that cannot take the request. Returns a sub-list, order kept; never mutates."""

    def filter(self, req: RequestView, cands: Sequence[InstanceView]) -> list[InstanceView]: ...


class Scorer(Protocol):
    """Rates candidates: a score per candidate's instance id, higher is better.

    Scores should lie in [0, 1]; the framework clamps whatever comes back (NaN counts as 0).
    Every candidate must get a score.
    """

    def score(self, req: RequestView, cands: Sequence[InstanceView]) -> dict[InstanceId, float]: ...


class Picker(Protocol):
    """Chooses one instance from a non-empty list of scored candidates, using only `rng` for chance."""

    def pick(self, scored: Sequence[Scored], rng: random.Random) -> InstanceView: ...


@dataclass(frozen=True)
class NamedFilter:
    """A filter with the name it was configured under (used in NoCapacity messages)."""

    name: str
    plugin: Filter


@dataclass(frozen=True)
class WeightedScorer:
    """A scorer with its configured name and weight (>= 0)."""

    name: str
    plugin: Scorer
    weight: float


@dataclass(frozen=True)
class Profile:
    """One way of placing a request: filters run in order, scores are summed by weight, one pick."""

    name: str
    filters: tuple[NamedFilter, ...]
    scorers: tuple[WeightedScorer, ...]
    picker: Picker


def clamp_score(value: float) -> float:
    """Clamp a plugin's score into [0, 1]; NaN becomes 0."""
    if math.isnan(value):
        return 0.0
    return min(1.0, max(0.0, value))


class SchedulingFramework:
    """Runs a named profile over a snapshot of instances."""

    def __init__(self, profiles: Mapping[str, Profile]) -> None:
        self._profiles = dict(profiles)

    @property
    def profile_names(self) -> list[str]:
        return sorted(self._profiles)

    def profile(self, name: str) -> Profile:
        """The profile called `name`; raises ConfigError when there is none."""
        try:
            return self._profiles[name]
        except KeyError:
            raise ConfigError(
                f"unknown scheduling profile {name!r} (configured: {', '.join(self.profile_names)})"
            ) from None

    def schedule(
        self,
        profile_name: str,
        req: RequestView,
        views: Sequence[InstanceView],
        rng: random.Random,
    ) -> InstanceView:
        """Place `req` on one of `views` using profile `profile_name`.

        Candidates are considered in instance-id order, so the result does not depend on the order
        of `views`. Each candidate's total is the weighted sum of its clamped scores.
        Raises NoCapacity naming the filter that left no candidate (or saying there were no
        instances), and ConfigError for an unknown profile.
        """
        profile = self.profile(profile_name)
        cands = sorted(views, key=lambda v: v.instance_id)
        if not cands:
            raise NoCapacity(f"no instances to schedule request {req.request_id} on")
        for named in profile.filters:
            before = len(cands)
            cands = named.plugin.filter(req, cands)
            if not cands:
                raise NoCapacity(
                    f"no instance can take request {req.request_id}: filter {named.name!r} of "
                    f"profile {profile.name!r} rejected all {before} candidates"
                )
        totals = {c.instance_id: 0.0 for c in cands}
        for weighted in profile.scorers:
            scores = weighted.plugin.score(req, cands)
            for iid in totals:
                if iid not in scores:
                    raise ValueError(f"scorer {weighted.name!r} returned no score for instance {iid!r}")
                totals[iid] += weighted.weight * clamp_score(scores[iid])
        return profile.picker.pick([Scored(c, totals[c.instance_id]) for c in cands], rng)
