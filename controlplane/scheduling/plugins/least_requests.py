"""`least_requests` scorer: the fewer requests an instance holds, the higher it scores.

An instance's outstanding requests are `running + waiting` (from its last snapshot) plus
`pending_requests` (requests the gateway dispatched that the snapshot may not count yet). Scores
are `1 - n / max_n` over the candidates, so the busiest scores 0 and an idle one 1; when every
candidate is idle all score 1. With the `max_score` picker this is least-outstanding-requests
dispatch; with `power_of_two` it is power-of-two-choices on request counts.
"""

from __future__ import annotations

from collections.abc import Sequence

from controlplane.scheduling.types import InstanceView, RequestView


def outstanding_requests(view: InstanceView) -> int:
    """Requests running and queued on `view`, including the gateway's not-yet-counted dispatches."""
    return view.running + view.waiting + view.pending_requests


class LeastRequestsScorer:
    """Scores candidates by relative request count (see the module docstring)."""

    def score(self, req: RequestView, cands: Sequence[InstanceView]) -> list[float]:
        # outstanding_requests inlined (this runs once per decision over every candidate)
        counts = [c.running + c.waiting + c.pending_requests for c in cands]
        busiest = max(counts, default=0)
        if busiest <= 0:
            return [1.0] * len(counts)
        return [1.0 - n / busiest for n in counts]
