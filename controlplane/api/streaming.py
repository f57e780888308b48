"""Relaying a run to the client: as Server-Sent Events, or gathered into one body.

Streams are `data: {json}\n\n` events ending with `data: [DONE]\n\n`; an error after the response
started is sent as a `data: {"error": {...}}` event before `[DONE]`. Either way the run's chunks are
closed when the client goes away, which aborts the request on its instance and frees its blocks:
the streaming response always closes its body, and a non-streaming request races its work against
the client's `http.disconnect`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, Awaitable
from typing import Any, TypeVar

import anyio
from fastapi import Request
from pydantic import BaseModel
from starlette.requests import ClientDisconnect
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from controlplane.api.errors import flotilla_error_body, unexpected_error_body
from controlplane.api.formatting import ResponseFormat, usage_of
from controlplane.api.relay import Run, aclose_shielded
from flotilla.errors import FlotillaError
from instances.types import TokenLogprob

T = TypeVar("T")

log = logging.getLogger(__name__)

DONE_EVENT = "data: [DONE]\n\n"


def sse_event(payload: BaseModel | dict[str, Any]) -> str:
    data = payload.model_dump_json() if isinstance(payload, BaseModel) else json.dumps(payload)
    return f"data: {data}\n\n"


class ClosingStreamingResponse(StreamingResponse):
    """A StreamingResponse that always closes its body iterator.

    Starlette abandons the iterator when the client disconnects while a chunk is being sent; closing
    it here runs its `finally` now rather than whenever it is garbage-collected. A client that went
    away (`ClientDisconnect`, raised by Starlette under ASGI 2.4 servers) ends the response normally:
    there is no one left to report it to.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except ClientDisconnect:
            log.info("client left during the stream of %s %s", scope.get("method"), scope.get("path"))
        finally:
            await aclose_shielded(self.body_iterator)


async def sse_events(run: Run, fmt: ResponseFormat, include_usage: bool) -> AsyncGenerator[str, None]:
    """The run as SSE events: the format's opening, one event per chunk, usage if asked, [DONE]."""
    chunks = run.chunks()
    try:
        for event in fmt.opening():
            yield sse_event(event)
        async for chunk in chunks:
            event = fmt.chunk(chunk)
            if event is not None:
                yield sse_event(event)
        if include_usage:
            yield sse_event(fmt.usage_chunk(usage_of(run)))
    except FlotillaError as e:
        yield sse_event(flotilla_error_body(e))
    except Exception:
        yield sse_event(unexpected_error_body(f"stream of {run.request_id}"))
    finally:
        await aclose_shielded(chunks)
    yield DONE_EVENT


async def whole_body(run: Run, fmt: ResponseFormat) -> BaseModel:
    """Consume the run to its end and render the endpoint's full response."""
    text: list[str] = []
    logprobs: list[TokenLogprob] = []
    finish_reason: str | None = None
    chunks = run.chunks()
    try:
        async for chunk in chunks:
            text.append(chunk.text)
            logprobs.extend(chunk.logprobs or ())
            if chunk.finish_reason is not None:
                finish_reason = chunk.finish_reason.value
    finally:
        await aclose_shielded(chunks)
    return fmt.response("".join(text), logprobs, finish_reason, usage_of(run))


async def _client_disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T | None:
    """Await `work` (a request whose body has been read) unless the client disconnects first.

    On disconnect the work is cancelled and awaited to its end (so its `finally` clauses ran) and
    None is returned. Errors of the work propagate.
    """
    work_task = asyncio.ensure_future(work)
    watch_task = asyncio.ensure_future(_client_disconnected(request.receive))
    try:
        await asyncio.wait({work_task, watch_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        work_task.cancel()
        watch_task.cancel()
        with anyio.CancelScope(shield=True):
            await asyncio.wait({work_task, watch_task})
    if not work_task.cancelled():
        return work_task.result()
    error = None if watch_task.cancelled() else watch_task.exception()
    if error is not None:
        raise error
    return None
