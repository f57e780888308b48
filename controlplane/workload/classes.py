"""Request classes in a workload: a share of high-priority requests, and offline batch work.

Both draw from their own seeded generators, so adding classes never moves the online requests'
arrivals or lengths: a run with priorities compares request for request with one without.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from controlplane.workload.request import TraceRequest
from instances.types import Priority


def with_high_priority(requests: Sequence[TraceRequest], fraction: float, seed: int) -> list[TraceRequest]:
    """`requests` with each one made HIGH priority with probability `fraction` (independent draws
    from a generator seeded by `seed`); 0 changes nothing."""
    if fraction <= 0.0:
        return list(requests)
    draws = np.random.default_rng([seed, 1]).random(len(requests))
    return [replace(r, priority=Priority.HIGH) if d < fraction else r for r, d in zip(requests, draws, strict=True)]


def with_offline(requests: Sequence[TraceRequest], rate: float, seed: int) -> list[TraceRequest]:
    """`requests` plus OFFLINE ones arriving as a Poisson process of `rate` requests/s from 0 to the
    last online arrival, each with the lengths of an online request drawn uniformly (a generator
    seeded by `seed`), merged in arrival order (online first at equal times). 0 adds none."""
    if rate <= 0.0 or not requests:
        return list(requests)
    rng = np.random.default_rng([seed, 2])
    end = requests[-1].arrival_s
    count = int(rng.poisson(rate * end)) if end > 0 else 0
    times = np.sort(rng.uniform(0.0, end, count))
    picks = rng.integers(0, len(requests), count)
    offline = [
        TraceRequest(float(t), requests[i].prompt_len, requests[i].output_len, priority=Priority.OFFLINE)
        for t, i in zip(times, picks, strict=True)
    ]
    return sorted([*requests, *offline], key=lambda r: (r.arrival_s, r.priority == Priority.OFFLINE))
