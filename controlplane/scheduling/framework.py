"""The scheduling framework: filters, then weighted scorers, then a picker, per named profile.

Shaped after the Gateway API inference extension / llm-d router: the framework is a small runner
and every opinion lives in a plugin. A decision is a pure function of its inputs (the request view,
the instance views, the profile and a seeded `random.Random`) plus the pickers' own documented state;
nothing here reads a clock or does I/O.

One decision is on the simulator's hot path (once per simulated request over up to hundreds of
instances), so scores travel as plain lists of floats aligned with the candidate list rather than
as per-instance mappings or objects; `benchmarks/scheduling_overhead.py` measures the cost.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Protocol

from controlplane.scheduling.types import InstanceView, RequestView
from flotilla.errors import ConfigError, NoCapacity

by_instance_id = attrgetter("instance_id")
"""Sort key of the candidate order every plugin sees: ascending instance id."""


class Filter(Protocol):
    """Drops candidates that cannot take the request. Returns a sub-list, order kept; never mutates."""

    def filter(self, req: RequestView, cands: Sequence[InstanceView]) -> list[InstanceView]: ...


class Scorer(Protocol):
    """Rates candidates, higher is better: one score per candidate, `scores[i]` rating `cands[i]`.

    `cands` is non-empty and in instance-id order. Scores should lie in [0, 1]; the framework clamps
    whatever comes back (NaN counts as 0) and raises ValueError when the number of scores differs
    from the number of candidates. Must not mutate `cands`.
    """

    def score(self, req: RequestView, cands: Sequence[InstanceView]) -> Sequence[float]: ...


class Picker(Protocol):
    """Chooses one of a non-empty list of candidates, using only `rng` for chance.

    `cands` is in instance-id order and `totals[i]` is the weighted total score of `cands[i]`
    (all 0.0 when the profile has no scorers). Must not mutate either list.
    """

    def pick(
        self, cands: Sequence[InstanceView], totals: Sequence[float], rng: random.Random
    ) -> InstanceView: ...


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
    """Clamp a plugin's score into [0, 1]; NaN becomes 0 (`SchedulingFramework.schedule` inlines this)."""
    return 0.0 if not value > 0.0 else min(1.0, value)


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
        instances), ConfigError for an unknown profile, and ValueError when a scorer returns a
        number of scores other than the number of candidates.
        """
        profile = self.profile(profile_name)
        cands = sorted(views, key=by_instance_id)
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
        n = len(cands)
        totals: list[float] | None = None
        for weighted in profile.scorers:
            scores = weighted.plugin.score(req, cands)
            if len(scores) != n:
                raise ValueError(f"scorer {weighted.name!r} returned {len(scores)} scores for {n} candidates")
            w = weighted.weight
            # clamp_score inlined (conditional expressions, not min/max calls, for speed):
            # one pass per scorer clamps, weighs and adds
            if totals is None and w == 1.0:  # the common first scorer: 0.0 + 1.0 * x == x exactly
                totals = [0.0 if not s > 0.0 else (1.0 if s > 1.0 else s) for s in scores]  # noqa: FURB136
            elif totals is None:
                totals = [w * (0.0 if not s > 0.0 else (1.0 if s > 1.0 else s)) for s in scores]  # noqa: FURB136
            else:
                totals = [
                    t + w * (0.0 if not s > 0.0 else (1.0 if s > 1.0 else s))  # noqa: FURB136
                    for t, s in zip(totals, scores, strict=True)
                ]
        return profile.picker.pick(cands, [0.0] * n if totals is None else totals, rng)
