"""Pure readings of one migration for `benchmarks/migration.py`: token arrival times at the gateway
and the instances' step traces (`instances/step_trace.py`: the wall time each step ended, its
duration and shape).

- `no_batch_gap`: the downtime on the instances' side, the time the migrated request was in no
  running batch: from the end of the source's last step with it to the start of the destination's
  first step with it. Those steps are found by their shape: the summed decode context drops by
  about the request's length on the source when it leaves, and jumps by as much on the destination.
- `excess`: the downtime seen at the gateway, how much longer than the normal inter-token time the
  tokens across the migration took to arrive.
- `per_token` over step end times: every step decodes one token of every other running request, so
  the per-token time of the others over a window is the step interval covering it.
"""

from __future__ import annotations

import bisect
import statistics
from collections.abc import Sequence
from itertools import pairwise

from instances.step_trace import StepRecord


def last_before(times: Sequence[float], t: float) -> int | None:
    """Index of the last token that arrived strictly before `t` (None if none)."""
    i = bisect.bisect_left(times, t) - 1
    return i if i >= 0 else None


def first_from(times: Sequence[float], t: float) -> int | None:
    """Index of the last token of the first chunk that arrived at or after `t` (None if none)."""
    i = bisect.bisect_left(times, t)
    if i >= len(times):
        return None
    return bisect.bisect_right(times, times[i]) - 1


def per_token(times: Sequence[float], t0: float, t1: float) -> float | None:
    """Per-token time over the shortest run of tokens whose arrivals cover [t0, t1]."""
    i0, i1 = last_before(times, t0 + 1e-9), first_from(times, t1)
    if i0 is None or i1 is None or i1 <= i0:
        return None
    return (times[i1] - times[i0]) / (i1 - i0)


def median_gap(times: Sequence[float], i0: int, i1: int) -> float:
    """Median per-token time between consecutive chunk arrivals among tokens i0..i1 (a lone
    late poll, or a stall, moves it little)."""
    gaps, last = [], i0
    for i in range(i0 + 1, i1 + 1):
        if i == i1 or times[i + 1] != times[i]:  # the last token of a chunk
            gaps.append((times[i] - times[last]) / (i - last))
            last = i
    return statistics.median(gaps)


def excess(times: Sequence[float], p: int | None, q: int | None, tpot: float) -> float | None:
    """How much longer than `tpot` per token the tokens after `p` up to `q` took to arrive."""
    if p is None or q is None or q <= p:
        return None
    return times[q] - times[p] - (q - p) * tpot


def max_gap(times: Sequence[float], t0: float, t1: float) -> float | None:
    """Longest gap between consecutive arrivals over the tokens covering [t0, t1]."""
    i0, i1 = last_before(times, t0 + 1e-9), first_from(times, t1)
    if i0 is None or i1 is None or i1 <= i0:
        return None
    return max(b - a for a, b in zip(times[i0:i1], times[i0 + 1:i1 + 1]))


def no_batch_gap(src: Sequence[StepRecord], dst: Sequence[StepRecord], t0: float, min_drop: int) -> float | None:
    """Start of the destination's first step with the request minus the end of the source's last
    step with it (wall times); the steps after `t0` where the decode context falls / rises by at
    least `min_drop` tokens. None if either is not in the traces."""
    last_with = next((a for a, b in pairwise(src)
                      if b.end_s >= t0 and b.decode_context <= a.decode_context - min_drop), None)
    first_with = next((b for a, b in pairwise(dst)
                       if b.end_s >= t0 and b.decode_context >= a.decode_context + min_drop), None)
    if last_with is None or first_with is None:
        return None
    return (first_with.end_s - first_with.seconds) - last_with.end_s


def loop_blocked(steps: Sequence[StepRecord], t0: float, t1: float) -> tuple[float, float]:
    """(longest, total) time between two consecutive steps of an instance that both have work,
    for the gaps that start in [t0, t1]: its event loop busy with something else than steps."""
    gaps = [b.end_s - b.seconds - a.end_s for a, b in pairwise(steps) if t0 <= a.end_s <= t1]
    return (max(gaps, default=0.0), sum(gaps))


def step_slowdown(steps: Sequence[StepRecord], base: tuple[float, float], during: tuple[float, float]) -> float | None:
    """Per-token time of the instance's running requests during / before: step intervals."""
    ends = [s.end_s for s in steps]
    b, d = per_token(ends, *base), per_token(ends, *during)
    return d / b if b and d else None


def median_step(steps: Sequence[StepRecord], t0: float, t1: float) -> float | None:
    """Median interval between the ends of consecutive steps that both end in [t0, t1] (the
    instance's decode step while it serves its batch); None with fewer than two such steps."""
    ends = [s.end_s for s in steps if t0 <= s.end_s <= t1]
    gaps = [b - a for a, b in pairwise(ends)]
    return statistics.median(gaps) if gaps else None
