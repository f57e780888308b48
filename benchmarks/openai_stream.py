"""One streaming `/v1/completions` call, timed the way vLLM's benchmark client times it.

Every `data:` event that carries a non-empty `choices` list is a token chunk and is timestamped
on arrival; a `usage` object (OpenAI's `stream_options.include_usage`) gives the output token
count, and without one the count is the number of token chunks. Other SSE fields and comment
lines are ignored; `data: [DONE]` ends the stream.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from benchmarks.serving_metrics import RequestTimeline

_ERROR_BODY_CHARS = 300


class StreamError(Exception):
    """The server answered 200 but the stream broke the protocol or reported an error."""


@dataclass(frozen=True)
class StreamOutcome:
    """The request's timeline and whether its token count came from the server's usage."""

    timeline: RequestTimeline
    usage_reported: bool


async def stream_completion(
    client: httpx.AsyncClient,
    path: str,
    payload: dict[str, object],
    prompt_len: int,
    clock: Callable[[], float],
) -> StreamOutcome:
    """POST `payload` to `path` on `client` and read its SSE stream to the end.

    `clock()` gives the benchmark time in seconds; the send time is read just before the request
    goes out. Never raises for what the server or network does: an HTTP status other than 200, a
    transport error (httpx.HTTPError, timeouts included), a malformed event or an `error` event
    yields an unsuccessful timeline whose `error` says what happened. A stream with no token
    chunk is unsuccessful too.
    """
    chunks: list[float] = []
    usage_tokens: int | None = None
    send_s = clock()
    try:
        async with client.stream("POST", path, json=payload) as response:
            if response.status_code != 200:
                body = (await response.aread()).decode("utf-8", "replace")[:_ERROR_BODY_CHARS]
                return _failed(prompt_len, send_s, chunks, f"HTTP {response.status_code}: {body}")
            async for line in response.aiter_lines():
                event = _data_event(line)
                if event is None:
                    continue
                if event == "[DONE]":
                    break
                has_choice, usage = _parse_event(event)
                if has_choice:
                    chunks.append(clock())
                usage_tokens = usage if usage is not None else usage_tokens
    except (httpx.HTTPError, StreamError) as exc:
        return _failed(prompt_len, send_s, chunks, f"{type(exc).__name__}: {exc}")
    if not chunks:
        return _failed(prompt_len, send_s, chunks, "the stream ended without a token chunk")
    output_tokens = len(chunks) if usage_tokens is None else usage_tokens
    timeline = RequestTimeline(prompt_len, output_tokens, send_s, tuple(chunks), success=True)
    return StreamOutcome(timeline, usage_reported=usage_tokens is not None)


def _data_event(line: str) -> str | None:
    """The payload of an SSE `data:` line, or None for any other line."""
    if not line.startswith("data:"):
        return None
    return line[len("data:") :].strip()


def _parse_event(event: str) -> tuple[bool, int | None]:
    """(whether the event carries a choice, its usage completion_tokens if any).

    Raises StreamError for invalid JSON, a non-object, an `error` event or a malformed usage.
    """
    try:
        data = json.loads(event)
    except json.JSONDecodeError as exc:
        raise StreamError(f"invalid JSON event ({exc.msg}): {event[:80]!r}") from None
    if not isinstance(data, dict):
        raise StreamError(f"expected a JSON object event, got {event[:80]!r}")
    if "error" in data:
        raise StreamError(f"server error event: {json.dumps(data['error'])[:_ERROR_BODY_CHARS]}")
    usage = data.get("usage")
    tokens = None
    if usage is not None:
        tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
        if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 0:
            raise StreamError(f"malformed usage: {json.dumps(usage)[:80]}")
    choices = data.get("choices")
    return isinstance(choices, list) and len(choices) > 0, tokens


def _failed(prompt_len: int, send_s: float, chunks: list[float], error: str) -> StreamOutcome:
    timeline = RequestTimeline(prompt_len, len(chunks), send_s, tuple(chunks), False, error)
    return StreamOutcome(timeline, usage_reported=False)
