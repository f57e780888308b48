"""`llumnix` scorer: dispatch to the freest instance by Llumnix's freeness, with its two virtual usages.

Source: B. Sun et al., "Llumnix: Dynamic Scheduling for Large Language Model Serving", OSDI 2024
(arXiv:2406.03243), section 4.4. An instance's freeness is `(M - sum V) / B`: the KV memory left
after the *virtual usage* V of its requests, per request of its batch B. Virtual usages turn every
scheduling goal into load that dispatch and migration then even out:

- queued requests count with their real demand (de-fragmentation: a head-of-line request that
  does not fit makes its instance look loaded, so migration moves running requests away);
- an instance serving high-priority requests reserves a headroom (priority isolation: it looks
  less free to normal work, so normal work avoids it and migration moves normal work off it; the
  headroom is reserved *for* HIGH requests, so a HIGH request's dispatch does not count it, and
  HIGH requests gather on the instances already serving them, kept light by that headroom);
- a draining instance carries an infinitely large virtual request: its freeness is -inf.

Two readings, as Llumnix's own load calculator has (`dispatch` and `migrate` loads):

    migration: (free_blocks - head_demand_blocks - headroom) / max(1, running)
    dispatch:  (free_blocks - queued_blocks - pending_blocks - headroom)
                   / max(1, running + waiting + pending_requests)

where `queued_blocks = ceil(queued_prompt_tokens / block_size)` (every queued or still-prefilling
token) and `pending_*` are the gateway's dispatches the snapshot does not count yet. Migration
reads the head of the line only (what blocks admission now); dispatch reads the whole queue, or a
burst placed between two snapshots would all go to one instance whose freeness did not move.
`headroom = headroom_blocks + high_priority * headroom_fraction * total_blocks` when
`view.high_priority > 0`, else 0: with a fraction, each HIGH request reserves a share of its
instance (Llumnix's headroom is a virtual usage large enough to keep its instance's batch small).
The defaults and the trade-off they make (HIGH requests' speed against normal requests' capacity)
are measured in `docs/benchmarks.md`.

The scorer normalises dispatch freeness over the candidates, `(f - min_f) / (max_f - min_f)` with
finite values only: the freest scores 1, the least free 0, a draining instance 0; all equal: 1.
With the `max_score` picker a request goes to the freest instance (ties rotate).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from annotated_types import Ge, Gt, Le, Lt

from controlplane.scheduling.types import InstanceView, RequestView
from instances.types import Priority


@dataclass(frozen=True)
class LlumnixSettings:
    """Llumnix's settings: the options of the plugins named `llumnix` (the dispatch scorer here and
    the migration policy, `llumnix_migration.py`), so that dispatch and migration read one headroom.

    source_freeness / destination_freeness: migration thresholds in freeness units (KV blocks per
    running request): below the first an instance gives requests away, above the second it takes
    them. headroom_blocks: kept free on instances serving high-priority requests (about a thousand
    16-token slots by default); headroom_fraction: plus this share of the instance's blocks per
    HIGH request it serves.
    """

    source_freeness: Annotated[float, Gt(-math.inf), Lt(math.inf)] = 16.0
    destination_freeness: Annotated[float, Gt(-math.inf), Lt(math.inf)] = 16.0
    headroom_blocks: Annotated[int, Ge(0)] = 64
    headroom_fraction: Annotated[float, Ge(0.0), Le(1.0)] = 0.08

    def __post_init__(self) -> None:
        if not (math.isfinite(self.source_freeness) and math.isfinite(self.destination_freeness)):
            raise ValueError("migration freeness thresholds must be finite numbers")
        if self.destination_freeness < self.source_freeness:
            raise ValueError(f"destination_freeness ({self.destination_freeness}) must be >= "
                             f"source_freeness ({self.source_freeness})")
        if self.headroom_blocks < 0:
            raise ValueError(f"headroom_blocks must be >= 0, got {self.headroom_blocks}")
        if not 0.0 <= self.headroom_fraction <= 1.0:  # also refuses NaN
            raise ValueError(f"headroom_fraction must be within [0, 1], got {self.headroom_fraction}")


def headroom(
    view: InstanceView, headroom_blocks: int, headroom_fraction: float = 0.0, priority: int = Priority.NORMAL
) -> float:
    """Blocks `view` reserves for its HIGH requests, as a newcomer of `priority` sees them: none
    without any HIGH request, else `headroom_blocks` plus `headroom_fraction` of its blocks per HIGH
    request (a virtual usage that grows with the instance, so one serving HIGH requests looks loaded
    and keeps a small batch); none to a HIGH newcomer, for whom it is kept."""
    if view.high_priority <= 0 or priority == Priority.HIGH:
        return 0
    return headroom_blocks + view.high_priority * headroom_fraction * view.total_blocks


def _freeness(
    view: InstanceView, demand_blocks: int, batch: int, headroom_blocks: int, headroom_fraction: float, priority: int
) -> float:
    if view.draining:
        return -math.inf
    reserved = headroom(view, headroom_blocks, headroom_fraction, priority)
    return (view.free_blocks - demand_blocks - reserved) / max(1, batch)


def llumnix_freeness(
    view: InstanceView, headroom_blocks: int, headroom_fraction: float = 0.0, priority: int = Priority.NORMAL
) -> float:
    """Freeness as migration reads it (see the module docstring): KV blocks per running request,
    after the head-of-line queued request's demand and the high-priority headroom (as a request of
    `priority` sees it); -inf draining."""
    return _freeness(view, view.head_demand_blocks, view.running, headroom_blocks, headroom_fraction, priority)


def dispatch_freeness(
    view: InstanceView, headroom_blocks: int, headroom_fraction: float = 0.0, priority: int = Priority.NORMAL
) -> float:
    """Freeness as dispatch reads it for a request of `priority` (see the module docstring): every
    queued and pending token's blocks count, and every queued and pending request shares the rest;
    -inf draining."""
    demand = -(-(view.queued_prompt_tokens + view.pending_tokens) // view.block_size)
    batch = view.running + view.waiting + view.pending_requests
    return _freeness(view, demand, batch, headroom_blocks, headroom_fraction, priority)


class LlumnixScorer:
    """Scores candidates by normalised dispatch freeness (see the module docstring), with the
    headroom of `settings`."""

    def __init__(self, settings: LlumnixSettings | None = None) -> None:
        settings = settings or LlumnixSettings()
        self.headroom_blocks = settings.headroom_blocks
        self.headroom_fraction = settings.headroom_fraction

    def score(self, req: RequestView, cands: Sequence[InstanceView]) -> list[float]:
        values = [dispatch_freeness(c, self.headroom_blocks, self.headroom_fraction, req.priority) for c in cands]
        finite = [f for f in values if f != -math.inf]
        if not finite:
            return [0.0] * len(values)
        lowest, highest = min(finite), max(finite)
        span = highest - lowest
        return [0.0 if f == -math.inf else 1.0 if span <= 0 else (f - lowest) / span for f in values]
