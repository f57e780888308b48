"""What a gateway dispatched that its instance views do not count yet.

A view is an instance's snapshot after its latest step; a request dispatched now reaches the
instance a moment later and is counted by the snapshot taken after the step that admits it. Until
then the gateway adds it to the view itself (`pending_requests`, `pending_tokens`), so that a burst
of arrivals between two snapshots spreads instead of every request seeing the same numbers.

A dispatch recorded against a view of `steps` S counts until a view of the instance has
`steps >= S + 2` (the request arrived during step S + 1 at the latest and the next step admitted
it), or `steps >= S + 1` when the view it was recorded against was idle (an idle instance wakes on
the request and admits it before its first step). Pure bookkeeping over views: no clock, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from controlplane.scheduling.types import InstanceView


@dataclass
class _Dispatch:
    counted_at: int  # the view's steps from which the snapshot counts it
    tokens: int


class PendingDispatches:
    """The dispatches of one gateway not yet in its instances' views."""

    def __init__(self) -> None:
        self._by_instance: dict[str, list[_Dispatch]] = {}

    def record(self, view: InstanceView, num_tokens: int) -> None:
        """A request of `num_tokens` prompt tokens was dispatched to `view`'s instance."""
        idle = view.running + view.waiting == 0
        self._by_instance.setdefault(view.instance_id, []).append(
            _Dispatch(view.steps + (1 if idle else 2), num_tokens))

    def apply(self, views: list[InstanceView]) -> list[InstanceView]:
        """`views` with this gateway's uncounted dispatches added (and those now counted dropped)."""
        out = []
        for v in views:
            entries = self._by_instance.get(v.instance_id)
            if entries:
                entries[:] = [d for d in entries if v.steps < d.counted_at]
            if not entries:
                self._by_instance.pop(v.instance_id, None)
                out.append(v)
                continue
            out.append(replace(v, pending_requests=v.pending_requests + len(entries),
                               pending_tokens=v.pending_tokens + sum(d.tokens for d in entries)))
        return out
