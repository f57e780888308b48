"""Gateway side of token streaming: per-request queues fed by instance pushes.

Instances push batches of chunks (one batch per engine step or per long-poll); the router hands each
chunk to the queue of its request, dropping duplicates by output index and failing the stream on a
gap. A stream ends with the chunk that carries a finish reason, or with an error when its instance is
lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from controlplane.errors import FlotillaError, InstanceUnavailable
from instances.types import GenerationChunk


@dataclass
class _Stream:
    instance_id: str
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    next_index: int = 0
    finished: bool = False


class StreamRouter:
    """Routes pushed chunks to the requests this gateway owns."""

    def __init__(self) -> None:
        self._streams: dict[str, _Stream] = {}

    def open(self, request_id: str, instance_id: str) -> None:
        if request_id in self._streams:
            raise ValueError(f"request id {request_id!r} is already streaming")
        self._streams[request_id] = _Stream(instance_id)

    def discard(self, request_id: str) -> None:
        """Forget a stream that never started (its submission failed)."""
        self._streams.pop(request_id, None)

    def deliver(self, chunks: list[GenerationChunk]) -> None:
        """Hand pushed chunks to their streams; chunks of unknown (closed) requests are dropped."""
        for chunk in chunks:
            st = self._streams.get(chunk.request_id)
            if st is None or st.finished:
                continue
            end = chunk.first_index + len(chunk.token_ids)
            if end <= st.next_index and chunk.finish_reason is None:
                continue  # duplicate
            if chunk.first_index > st.next_index:
                st.queue.put_nowait(
                    InstanceUnavailable(
                        f"request {chunk.request_id}: tokens {st.next_index}..{chunk.first_index - 1} "
                        f"were lost on instance {st.instance_id}; retry the request"
                    )
                )
                st.finished = True
                continue
            skip = st.next_index - chunk.first_index
            if skip:
                chunk = GenerationChunk(
                    chunk.request_id, st.next_index, chunk.token_ids[skip:], chunk.text,
                    chunk.logprobs[skip:] if chunk.logprobs is not None else None,
                    chunk.finish_reason, chunk.num_prompt_tokens, chunk.num_cached_tokens,
                )
            st.next_index = max(st.next_index, end)
            st.finished = chunk.finish_reason is not None
            st.queue.put_nowait(chunk)

    def fail_instance(self, instance_id: str, error: FlotillaError) -> None:
        """End every open stream served by `instance_id` with `error`."""
        for st in self._streams.values():
            if st.instance_id == instance_id and not st.finished:
                st.finished = True
                st.queue.put_nowait(error)

    async def stream(
        self, request_id: str, abort: Callable[[], Awaitable[None]]
    ) -> AsyncIterator[GenerationChunk]:
        """Yield the request's chunks until its last; if the consumer stops early, `abort()`."""
        st = self._streams[request_id]
        done = False
        try:
            while True:
                item = await st.queue.get()
                if isinstance(item, Exception):
                    done = True
                    raise item
                done = item.finish_reason is not None
                yield item
                if done:
                    return
        finally:
            del self._streams[request_id]
            if not done:
                await abort()
