"""`load` scorer: the less token work an instance holds, the higher it scores.

An instance's load is `tokens_in_flight` (prompt and generated tokens of its running and waiting
requests) plus `pending_tokens` (tokens the gateway dispatched that its snapshot may not count yet).
Scores are proportional to the headroom below the busiest candidate: `1 - load / max_load`, so the
busiest candidate scores 0 and an idle one 1; when every candidate is idle all score 1.
"""

from __future__ import annotations

from collections.abc import Sequence

from controlplane.scheduling.types import InstanceView, RequestView


def instance_load(view: InstanceView) -> int:
    """Tokens queued and running on `view`, including the gateway's not-yet-counted dispatches."""
    return view.tokens_in_flight + view.pending_tokens


class LoadScorer:
    """Scores candidates by relative token load (see the module docstring)."""

    def score(self, req: RequestView, cands: Sequence[InstanceView]) -> list[float]:
        # instance_load inlined (this runs once per decision over every candidate)
        loads = [c.tokens_in_flight + c.pending_tokens for c in cands]
        busiest = max(loads, default=0)
        if busiest <= 0:
            return [1.0] * len(loads)
        return [1.0 - load / busiest for load in loads]
