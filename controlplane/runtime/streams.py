"""Gateway side of token streaming: per-request queues fed by instance pushes.

Instances push batches of chunks (one batch per engine step or per long-poll); the router hands each
chunk to the queue of its request in output order: duplicates are dropped, and a gap or an overlap
fails the stream (`ChunkSequencer`). A stream ends with the chunk that carries a finish reason, or
with an error when its instance is lost. Consumers of a `Cluster` therefore see each request's
chunks contiguous and exactly once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace

from controlplane.errors import FlotillaError, StreamBroken
from instances.types import GenerationChunk


class ChunkSequencer:
    """Keeps a request's chunks in output order.

    A chunk starting at the next expected index is passed on. A chunk wholly before it is a
    duplicate and dropped (only its finish reason, if any, is passed on, as an empty chunk).
    A chunk that starts past the next index (a gap) or straddles it raises StreamBroken.
    """

    def __init__(self) -> None:
        self.next_index = 0

    def accept(self, chunk: GenerationChunk) -> GenerationChunk | None:
        end = chunk.first_index + len(chunk.token_ids)
        if chunk.first_index > self.next_index:
            raise StreamBroken(
                f"request {chunk.request_id}: output tokens "
                f"{self.next_index}..{chunk.first_index - 1} are missing"
            )
        if chunk.first_index < self.next_index:
            if end > self.next_index:
                raise StreamBroken(
                    f"request {chunk.request_id}: chunk at {chunk.first_index}..{end - 1} overlaps "
                    f"tokens already relayed (next is {self.next_index})"
                )
            if chunk.finish_reason is None:
                return None
            return replace(chunk, first_index=self.next_index, token_ids=[], text="", logprobs=None)
        self.next_index = end
        return chunk


@dataclass
class _Stream:
    instance_id: str
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    sequencer: ChunkSequencer = field(default_factory=ChunkSequencer)
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
        """Hand pushed chunks to their streams in order; chunks of unknown (closed) requests are
        dropped, duplicates too, and a gap or overlap ends the stream with StreamBroken."""
        for chunk in chunks:
            st = self._streams.get(chunk.request_id)
            if st is None or st.finished:
                continue
            try:
                accepted = st.sequencer.accept(chunk)
            except StreamBroken as e:
                st.finished = True
                st.queue.put_nowait(e)
                continue
            if accepted is not None:
                st.finished = accepted.finish_reason is not None
                st.queue.put_nowait(accepted)

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
