"""Gateway side of token streaming: per-request queues fed by instance pushes.

Instances push batches of chunks (one batch per engine step or per long-poll); the router hands each
chunk to the queue of its request in output order: duplicates are dropped, and a gap or an overlap
fails the stream (`ChunkSequencer`). A stream ends with the chunk that carries a finish reason, or
with an error when its instance is lost. Consumers of a `Cluster` therefore see each request's
chunks contiguous and exactly once.

A migrated request's chunks come from two instances, whose pushes race: the source's last ones may
arrive after the destination's first. After `moved`, a stream holds chunks that start past the
next index until the gap is filled (the migration protocol hands every token over exactly once,
so the gap always fills) and the gap is an error only if an instance that served it fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace

from flotilla.errors import FlotillaError, NotFound, StreamBroken
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
    served_by: set[str] = field(default_factory=set)  # earlier instances (after migrations)
    held: dict[int, GenerationChunk] = field(default_factory=dict)  # by first_index, past a gap

    def hold_or_accept(self, chunk: GenerationChunk) -> list[GenerationChunk]:
        """The chunks that can go out now, in order; after a migration, a chunk past a gap waits."""
        if self.served_by and chunk.first_index > self.sequencer.next_index:
            self.held[chunk.first_index] = chunk
            return []
        accepted = self.sequencer.accept(chunk)
        out = [] if accepted is None else [accepted]
        while self.held and self.sequencer.next_index in self.held:
            nxt = self.sequencer.accept(self.held.pop(self.sequencer.next_index))
            if nxt is not None:
                out.append(nxt)
        return out


class StreamRouter:
    """Routes pushed chunks to the requests this gateway owns."""

    def __init__(self) -> None:
        self._streams: dict[str, _Stream] = {}

    def open(self, request_id: str, instance_id: str, first_index: int = 0) -> None:
        """Expect `request_id`'s chunks from `instance_id`, from output token `first_index` on (a
        resumed request's earlier tokens were relayed before: a late copy of them is dropped)."""
        if request_id in self._streams:
            raise ValueError(f"request id {request_id!r} is already streaming")
        st = self._streams[request_id] = _Stream(instance_id)
        st.sequencer.next_index = first_index

    def instance_of(self, request_id: str) -> str | None:
        """The instance serving an open stream now (None when closed)."""
        st = self._streams.get(request_id)
        return None if st is None else st.instance_id

    def locate(self, request_id: str) -> str:
        """The instance serving an open stream now; NotFound when it is not in flight here."""
        iid = self.instance_of(request_id)
        if iid is None:
            raise NotFound(f"request {request_id!r} is not in flight through this gateway")
        return iid

    def moved(self, request_id: str, instance_id: str) -> None:
        """A migration committed: `request_id` now runs on `instance_id` (a no-op if closed)."""
        st = self._streams.get(request_id)
        if st is not None:
            st.served_by.add(st.instance_id)
            st.instance_id = instance_id

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
                ready = st.hold_or_accept(chunk)
            except StreamBroken as e:
                st.finished = True
                st.queue.put_nowait(e)
                continue
            for accepted in ready:
                st.finished = accepted.finish_reason is not None
                st.queue.put_nowait(accepted)

    def fail_instance(self, instance_id: str, error: FlotillaError) -> list[str]:
        """End every open stream served by `instance_id` with `error`, and every stream waiting for
        tokens past a gap that `instance_id` served before a migration; returns their ids."""
        failed = []
        for rid, st in self._streams.items():
            lost = st.instance_id == instance_id or (st.held and instance_id in st.served_by)
            if lost and not st.finished:
                st.finished = True
                st.queue.put_nowait(error)
                failed.append(rid)
        return failed

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
