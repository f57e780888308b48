"""`LlumnixMigrationPolicy`: Llumnix's migration rules over instance snapshots (a `MigrationPolicy`).

Source: B. Sun et al., "Llumnix: Dynamic Scheduling for Large Language Model Serving", OSDI 2024,
sections 4.4-4.5. Every rule reads the migration freeness of `plugins/llumnix.py`
(`llumnix_freeness`: free blocks less the head-of-line demand and, on an instance serving
high-priority requests, the headroom, per running request; -inf when draining). Rules, in the order
they claim the per-instance in-flight budget:

1. `drain`: a healthy draining instance gives away everything, queued requests first, to the
   freest instances that can hold them.
2. `priority`: an instance serving HIGH requests whose headroom is eaten (freeness < 0: free blocks
   less the head-of-line demand are below its headroom: `headroom_blocks` plus `headroom_fraction`
   of its blocks per HIGH request) moves its other requests away.
3. `defrag`: an instance whose head-of-line request cannot fit (`head_demand_blocks >
   free_blocks`) moves a running request away: the cheapest that frees enough, else the largest.
4. `load`: sources (freeness < `source_freeness`, least free first) pair one-to-one with
   destinations (freeness > `destination_freeness`, freest first), as Llumnix pairs them; each pair
   moves one request, and only while that leaves the destination at least as free as the source.

Request choice on a source: lowest class first (OFFLINE, then LOW, NORMAL, HIGH), then the cheapest
to move (fewest KV blocks; a queued request has none), then the last admitted. Destinations are
healthy, not draining, not the source, and can hold the request's tokens without blocking their own
head-of-line request or eating their headroom; among them the freest (lowest id on ties). A HIGH
request (moved only by a drain, or by load once its source has nothing else) sees the headroom as
its own: it neither needs room beyond it nor counts it in freeness, as in dispatch. Each
order adds one to the in-flight count of both ends, and no instance goes over `max_in_flight`.
Planning updates the ends' free blocks and batch sizes as it orders, so one plan does not send
everything to the same destination. Pure: snapshots in, orders out; no clock, no randomness.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields

from controlplane.scheduling.migration import MigrationOrder
from controlplane.scheduling.plugins.llumnix import LlumnixSettings, headroom, llumnix_freeness
from controlplane.scheduling.types import InstanceView
from instances.types import MigrationCandidate, Priority

_VIEW_FIELDS = tuple(f.name for f in fields(InstanceView))


def _with(v: InstanceView, **changes: int) -> InstanceView:
    """A plain `InstanceView` equal to `v` but for `changes` (`v` may be a subclass computing its
    fields, such as the simulator's `DecodeRunView`, which `dataclasses.replace` cannot rebuild)."""
    return InstanceView(**{**{name: getattr(v, name) for name in _VIEW_FIELDS}, **changes})


def request_order(c: MigrationCandidate) -> tuple[int, int, int, str]:
    """Sort key of the requests a source gives away: lowest class, fewest blocks, last admitted."""
    return (-c.priority, c.num_blocks, -c.order, c.request_id)


class _Plan:
    """The orders of one `plan` call and the load they move (views updated as orders are made)."""

    def __init__(self, views: Sequence[InstanceView], in_flight: Mapping[str, int], s: LlumnixSettings,
                 max_in_flight: int):
        self.s = s
        self.max_in_flight = max_in_flight
        self.views = {v.instance_id: v for v in sorted(views, key=lambda v: v.instance_id)}
        self.in_flight = {i: in_flight.get(i, 0) for i in self.views}
        self.orders: list[MigrationOrder] = []
        self.moved: set[str] = set()

    def freeness(self, instance_id: str, priority: int = Priority.NORMAL) -> float:
        """Migration freeness as a request of `priority` sees it."""
        return llumnix_freeness(self.views[instance_id], self.s.headroom_blocks, self.s.headroom_fraction, priority)

    def has_budget(self, instance_id: str) -> bool:
        return self.in_flight[instance_id] < self.max_in_flight

    def room(self, v: InstanceView, priority: int) -> float:
        """Blocks a destination can give a newcomer of `priority` without blocking its queue or
        eating the headroom (which a HIGH newcomer does not see: it is kept for it)."""
        reserved = headroom(v, self.s.headroom_blocks, self.s.headroom_fraction, priority)
        return v.free_blocks - v.head_demand_blocks - reserved

    def destination(self, source: str, cand: MigrationCandidate, accept: Callable[[str], bool]) -> str | None:
        """The freest destination that can hold `cand` and that `accept` allows, or None."""
        need = -(-cand.num_tokens // self.views[source].block_size)
        prio, best, best_free = cand.priority, None, -math.inf
        for d, v in self.views.items():
            if (d != source and v.healthy and not v.draining and self.has_budget(d)
                    and self.room(v, prio) >= need and accept(d) and (f := self.freeness(d, prio)) > best_free):
                best, best_free = d, f
        return best

    def order(self, cand: MigrationCandidate, source: str, destination: str, reason: str) -> None:
        src, dst = self.views[source], self.views[destination]
        need = -(-cand.num_tokens // dst.block_size)
        self.views[source] = _with(src, free_blocks=src.free_blocks + cand.num_blocks,
                                     running=src.running - cand.running)
        self.views[destination] = _with(dst, free_blocks=dst.free_blocks - need, running=dst.running + 1,
                                          high_priority=dst.high_priority + (cand.priority == Priority.HIGH))
        self.in_flight[source] += 1
        self.in_flight[destination] += 1
        self.moved.add(cand.request_id)
        self.orders.append(MigrationOrder(cand.request_id, source, destination, reason))

    def movable(self, cands: Sequence[MigrationCandidate], key=request_order) -> list[MigrationCandidate]:
        return sorted((c for c in cands if c.request_id not in self.moved), key=key)


RULES = ("drain", "priority", "defrag", "load")
"""Every rule, in the order they claim the in-flight budget."""


class LlumnixMigrationPolicy:
    """Plans Llumnix's migrations (see the module docstring); implements `MigrationPolicy`.

    `rules` are the rules it runs (all of `RULES` by default; the registry's `none` policy runs the
    drain rule alone). At most `max_in_flight` migrations touch an instance at once."""

    def __init__(self, settings: LlumnixSettings | None = None, max_in_flight: int = 1,
                 rules: Sequence[str] = RULES) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        unknown = set(rules) - set(RULES)
        if unknown:
            raise ValueError(f"unknown llumnix migration rule(s) {sorted(unknown)} (known: {', '.join(RULES)})")
        self.settings = settings or LlumnixSettings()
        self.max_in_flight = max_in_flight
        self.rules = tuple(r for r in RULES if r in rules)

    def sources(self, views: Sequence[InstanceView]) -> list[str]:
        """The instances whose candidates `plan` may read: every healthy instance with work, or
        with the drain rule alone the draining ones."""
        drain_only = self.rules == ("drain",)
        return [v.instance_id for v in views
                if v.healthy and (v.running or v.waiting) and (v.draining or not drain_only)]

    def instance_info(self, view: InstanceView) -> dict[str, float | None]:
        """What the admin API shows of an instance: its migration freeness (null when draining)."""
        f = llumnix_freeness(view, self.settings.headroom_blocks, self.settings.headroom_fraction)
        return {"freeness": f if math.isfinite(f) else None}

    def plan(
        self,
        views: Sequence[InstanceView],
        candidates: Mapping[str, Sequence[MigrationCandidate]],
        in_flight: Mapping[str, int],
    ) -> list[MigrationOrder]:
        """The migrations to start now (see `MigrationPolicy.plan`). Reads `candidates` only for
        the instances some rule makes a source."""
        p = _Plan(views, in_flight, self.settings, self.max_in_flight)
        live = [i for i, v in p.views.items() if v.healthy]
        self._drain(p, [i for i in live if p.views[i].draining], candidates)
        serving = [i for i in live if not p.views[i].draining]
        if "priority" in self.rules:
            self._priority(p, [i for i in serving if p.views[i].high_priority and p.freeness(i) < 0], candidates)
        if "defrag" in self.rules:
            self._defrag(p, [i for i in serving if p.views[i].head_demand_blocks > p.views[i].free_blocks],
                         candidates)
        if "load" in self.rules:
            self._load(p, serving, candidates)
        return p.orders

    def _drain(self, p: _Plan, sources: list[str], candidates: Mapping[str, Sequence[MigrationCandidate]]) -> None:
        def queued_first(c: MigrationCandidate) -> tuple[bool, tuple[int, int, int, str]]:
            return (c.running, request_order(c))

        for src in sources:
            for cand in p.movable(candidates.get(src, ()), queued_first):
                if not p.has_budget(src):
                    break
                dst = p.destination(src, cand, lambda d: True)
                if dst is not None:
                    p.order(cand, src, dst, "drain")

    def _priority(self, p: _Plan, sources: list[str], candidates: Mapping[str, Sequence[MigrationCandidate]]) -> None:
        threshold = self.settings.destination_freeness
        for src in sources:
            for cand in p.movable(candidates.get(src, ())):
                if not p.has_budget(src) or cand.priority == Priority.HIGH:
                    break  # HIGH requests come last in request order: none left to move
                dst = p.destination(src, cand, lambda d: p.freeness(d) > threshold)
                if dst is not None:
                    p.order(cand, src, dst, "priority")

    def _defrag(self, p: _Plan, sources: list[str], candidates: Mapping[str, Sequence[MigrationCandidate]]) -> None:
        threshold = self.settings.destination_freeness
        for src in sources:
            if not p.has_budget(src):
                continue
            v = p.views[src]
            deficit = v.head_demand_blocks - v.free_blocks

            def frees_enough_cheapest(c: MigrationCandidate, deficit: int = deficit) -> tuple[int, int, int, int]:
                covers = c.num_blocks >= deficit
                return (-c.priority, 0 if covers else 1, c.num_blocks if covers else -c.num_blocks, -c.order)

            for cand in p.movable([c for c in candidates.get(src, ()) if c.running], frees_enough_cheapest):
                dst = p.destination(src, cand, lambda d: p.freeness(d) > threshold)
                if dst is not None:
                    p.order(cand, src, dst, "defrag")
                    break

    def _load(self, p: _Plan, serving: list[str], candidates: Mapping[str, Sequence[MigrationCandidate]]) -> None:
        s = self.settings
        sources = sorted((i for i in serving if p.has_budget(i) and p.freeness(i) < s.source_freeness),
                         key=lambda i: (p.freeness(i), i))
        dests = sorted((i for i in serving if p.has_budget(i) and p.freeness(i) > s.destination_freeness),
                       key=lambda i: (-p.freeness(i), i))
        for src, dst in zip(sources, dests):
            for cand in p.movable(candidates.get(src, ())):
                if p.destination(src, cand, lambda d, dst=dst: d == dst) is None:
                    continue
                if self._balances(p, cand, src, dst):
                    p.order(cand, src, dst, "load")
                    break

    def _balances(self, p: _Plan, cand: MigrationCandidate, src: str, dst: str) -> bool:
        """Whether after moving `cand` the destination is still at least as free as the source."""
        s, d = p.views[src], p.views[dst]
        need = -(-cand.num_tokens // d.block_size)
        after_src = _with(s, free_blocks=s.free_blocks + cand.num_blocks, running=s.running - cand.running)
        after_dst = _with(d, free_blocks=d.free_blocks - need, running=d.running + 1)
        h, f = self.settings.headroom_blocks, self.settings.headroom_fraction
        return llumnix_freeness(after_dst, h, f) >= llumnix_freeness(after_src, h, f)
