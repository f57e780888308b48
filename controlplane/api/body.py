"""Reading a request's JSON body: its declared type and its size first, then `errors.parse_body`."""

from __future__ import annotations

import anyio
from fastapi import Request

from controlplane.api.errors import M, parse_body
from flotilla.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType


def _check_json_type(content_type: str | None) -> None:
    if content_type is None:
        raise UnsupportedMediaType("the request body must be JSON: send Content-Type: application/json")
    if content_type.split(";", 1)[0].strip().lower() != "application/json":
        raise UnsupportedMediaType(
            f"the request body must be JSON: send Content-Type: application/json, not {content_type!r}"
        )


def _too_large(max_bytes: int, size: str) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the request body is {size} bytes; this gateway takes at most {max_bytes} (gateway.max_body_bytes)"
    )


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request's body, at most `max_bytes` of it: PayloadTooLarge (413) when its Content-Length
    says more, before anything is read, or, when it has none (a chunked upload), as soon as what
    has arrived passes the limit; nothing more is read then. InvalidRequest when Content-Length is
    not a number."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InvalidRequest(f"Content-Length is not a number of bytes: {declared!r}")
        if int(declared) > max_bytes:
            raise _too_large(max_bytes, declared)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes, f"more than {max_bytes}")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, model: type[M], max_bytes: int, limiter: anyio.CapacityLimiter) -> M:
    """The request's JSON body as `model`: UnsupportedMediaType (415) unless its Content-Type is
    application/json (parameters such as `; charset=utf-8` allowed), then `read_body`'s limit (413),
    then `parse_body` (400), in a worker thread of `limiter`: decoding and validating megabytes of
    JSON would hold the event loop for tens of milliseconds."""
    _check_json_type(request.headers.get("content-type"))
    raw = await read_body(request, max_bytes)
    return await anyio.to_thread.run_sync(parse_body, raw, model, limiter=limiter)
