"""Admission control: a bound on the generation requests one gateway holds at once.

`Admission.slot()` counts a request for as long as its block runs, and raises `Overloaded` (429)
instead when `limit` are already counted. `AdmittedRoute` holds a slot around the route's whole
ASGI exchange, from the request's arrival (before its body is read) to the last byte of its
response (a stream's included), whatever ends it: the response sent, an error, the client gone.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi.routing import APIRoute
from starlette.types import Receive, Scope, Send

from flotilla.errors import Overloaded


class Admission:
    """At most `limit` requests in flight; `in_flight` is how many are now."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Count one request while the block runs; Overloaded if `limit` are counted already."""
        if self.in_flight >= self.limit:
            raise Overloaded(
                f"the gateway is serving as many requests as it admits ({self.limit}, "
                "gateway.max_queued_requests); retry after a moment"
            )
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1


class AdmittedRoute(APIRoute):
    """A route whose exchanges each hold a slot of the app's `state.gateway.admission`."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        admission: Admission = scope["app"].state.gateway.admission
        with admission.slot():
            await super().handle(scope, receive, send)
