"""`infaas` scorer: INFaaS++ dispatch, the freest instance by Llumnix's freeness metric.

Source: B. Sun et al., "Llumnix: Dynamic Scheduling for Large Language Model Serving", OSDI 2024
(arXiv:2406.03243). Its evaluation compares Llumnix against INFaaS++: INFaaS's load-aware dispatch
enhanced with Llumnix's own load metric, *freeness*, but without Llumnix's live migration. The
paper defines an instance's freeness as `(M - sum V) / B`: memory left after the virtual usage of
its requests (queued requests count with their memory demand), per request of its batch. Over an
`InstanceView` that is

    demand_blocks = ceil((queued_prompt_tokens + pending_tokens) / block_size)
    freeness      = (free_blocks - demand_blocks) / max(1, running + pending_requests)

i.e. free KV blocks less what the not-yet-prefilled prompts (the instance's queue and the gateway's
not-yet-counted dispatches) will take, shared among the running and just-dispatched requests.
Freeness may be negative (an overloaded queue). Scores are its min-max normalisation over the
candidates, `(f - min_f) / (max_f - min_f)`, so the freest candidate scores 1 and the least free 0;
when all are equally free all score 1. With the `max_score` picker a request goes to the freest
instance, as INFaaS++ dispatches.
"""

from __future__ import annotations

from collections.abc import Sequence

from controlplane.scheduling.types import InstanceView, RequestView


def freeness(view: InstanceView) -> float:
    """Llumnix freeness of `view` in KV blocks per batched request (see the module docstring)."""
    demand_blocks = -(-(view.queued_prompt_tokens + view.pending_tokens) // view.block_size)
    return (view.free_blocks - demand_blocks) / max(1, view.running + view.pending_requests)


class InfaasScorer:
    """Scores candidates by normalised freeness (see the module docstring)."""

    def score(self, req: RequestView, cands: Sequence[InstanceView]) -> list[float]:
        # freeness inlined (this runs once per decision over every candidate); the counts are never
        # negative, so `n or 1` is max(1, n) without a call
        values = [
            (c.free_blocks - -(-(c.queued_prompt_tokens + c.pending_tokens) // c.block_size))
            / (c.running + c.pending_requests or 1)
            for c in cands
        ]
        lowest, highest = min(values, default=0.0), max(values, default=0.0)
        if highest <= lowest:
            return [1.0] * len(values)
        span = highest - lowest
        return [(f - lowest) / span for f in values]
