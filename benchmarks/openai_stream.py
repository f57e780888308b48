"""One streaming `/v1/completions` call, timed the way vLLM's benchmark client times it.

Every `data:` event that carries a non-empty `choices` list is a token chunk and is timestamped
on arrival; a `usage` object (OpenAI's `stream_options.include_usage`) gives the output token
count, and without one the count is the number of token chunks. Other SSE fields and comment
lines are ignored; `data: [DONE]` ends the stream. The HTTP client is aiohttp (as in vLLM's
benchmark client): it costs a fraction of httpx's CPU per request, which matters when the load
generator shares a machine with the server it measures.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from controlplane.observability.serving_metrics import RequestTimeline

_ERROR_BODY_CHARS = 300
_PREVIEW_CHARS = 80


class StreamError(Exception):
    """The server answered 200 but the stream broke the protocol or reported an error."""


@dataclass(frozen=True)
class StreamOutcome:
    """The request's timeline and whether its token count came from the server's usage."""

    timeline: RequestTimeline
    usage_reported: bool


async def stream_completion(
    session: aiohttp.ClientSession,
    url: str,
    payload: dict[str, object],
    prompt_len: int,
    clock: Callable[[], float],
) -> StreamOutcome:
    """POST `payload` to `url` with `session` and read its SSE stream to the end.

    `clock()` gives the benchmark time in seconds; the send time is read just before the request
    goes out (so a wait for a free connection in `session`'s pool counts as latency). Never raises
    for what the server or network does: an HTTP status other than 200, a transport error
    (aiohttp.ClientError, or asyncio.TimeoutError from the session's timeout), a malformed event
    or an `error` event yields an unsuccessful timeline whose `error` says what happened. A stream
    with no token chunk is unsuccessful too.

    Connection reuse: a non-200 body is read whole, and after `data: [DONE]` the rest of the body
    is read and discarded, so the connection goes back to `session`'s pool. A stream that breaks
    the protocol is abandoned instead, which closes its connection.
    """
    events = _StreamEvents(clock)
    send_s = clock()
    try:
        async with session.post(url, json=payload) as response:
            if response.status != 200:
                body = (await response.read()).decode("utf-8", "replace")[:_ERROR_BODY_CHARS]
                return _failed(prompt_len, send_s, events.chunks, f"HTTP {response.status}: {body}")
            pending = b""  # the unfinished last line of what has arrived so far
            async for data in response.content.iter_any():
                lines = (pending + data).split(b"\n")
                pending = lines.pop()
                if events.take(lines):
                    break
            else:
                events.take([pending])  # the body ended; its last line may lack a newline
            await response.content.read()  # to the end of the body, so the connection is reusable
    except (aiohttp.ClientError, TimeoutError, StreamError) as exc:
        return _failed(prompt_len, send_s, events.chunks, _describe(exc))
    if not events.chunks:
        return _failed(prompt_len, send_s, events.chunks, "the stream ended without a token chunk")
    usage_tokens = events.usage_tokens
    output_tokens = len(events.chunks) if usage_tokens is None else usage_tokens
    timeline = RequestTimeline(prompt_len, output_tokens, send_s, tuple(events.chunks), success=True)
    return StreamOutcome(timeline, usage_reported=usage_tokens is not None)


class _StreamEvents:
    """What a stream's `data:` lines said so far: token-chunk arrival times and the usage count."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.chunks: list[float] = []
        self.usage_tokens: int | None = None

    def take(self, lines: list[bytes]) -> bool:
        """Handle complete lines in order; True at `data: [DONE]` (the lines after it are ignored).

        A token chunk is timestamped when handled. Raises StreamError as `_parse_event` does.
        """
        for line in lines:
            event = _data_event(line)
            if event is None:
                continue
            if event == b"[DONE]":
                return True
            has_choice, usage = _parse_event(event)
            if has_choice:
                self.chunks.append(self._clock())
            if usage is not None:
                self.usage_tokens = usage
        return False


def _data_event(line: bytes) -> bytes | None:
    """The payload of an SSE `data:` line (surrounding whitespace removed), or None for any other line."""
    if not line.startswith(b"data:"):
        return None
    return line[len(b"data:") :].strip()


def _parse_event(event: bytes) -> tuple[bool, int | None]:
    """(whether the event carries a choice, its usage completion_tokens if any).

    Raises StreamError for invalid JSON or UTF-8, a non-object, an `error` event or a malformed usage.
    """
    try:
        data = json.loads(event)
    except json.JSONDecodeError as exc:
        raise StreamError(f"invalid JSON event ({exc.msg}): {_preview(event)}") from None
    except UnicodeDecodeError:
        raise StreamError(f"event is not valid UTF-8: {_preview(event)}") from None
    if not isinstance(data, dict):
        raise StreamError(f"expected a JSON object event, got {_preview(event)}")
    if "error" in data:
        raise StreamError(f"server error event: {json.dumps(data['error'])[:_ERROR_BODY_CHARS]}")
    usage = data.get("usage")
    tokens = None
    if usage is not None:
        tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
        if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 0:
            raise StreamError(f"malformed usage: {json.dumps(usage)[:_PREVIEW_CHARS]}")
    choices = data.get("choices")
    return isinstance(choices, list) and len(choices) > 0, tokens


def _preview(event: bytes) -> str:
    """The start of an event, quoted, for an error message."""
    return repr(event[:_PREVIEW_CHARS].decode("utf-8", "replace"))


def _describe(exc: Exception) -> str:
    """`"TypeName: message"`; a bare timeout (aiohttp's total timeout) gets a message of its own."""
    if isinstance(exc, TimeoutError) and not str(exc):
        return f"{type(exc).__name__}: the request timed out"
    return f"{type(exc).__name__}: {exc}"


def _failed(prompt_len: int, send_s: float, chunks: list[float], error: str) -> StreamOutcome:
    timeline = RequestTimeline(prompt_len, len(chunks), send_s, tuple(chunks), False, error)
    return StreamOutcome(timeline, usage_reported=False)
