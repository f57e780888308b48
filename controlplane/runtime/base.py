"""The contract between the gateway and a cluster of engine instances, whatever runs them.

Implemented by the Ray runtime (instance actors) and by the in-process runtime (engines stepped on
the gateway's event loop, for fast tests and the simulator's shape). The gateway never sees how
instances are run: it reads instance views, streams a request's chunks, and aborts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from controlplane.scheduling.types import InstanceView
from instances.types import EngineRequest, GenerationChunk


class Cluster(Protocol):
    """A set of engine instances serving one model."""

    def views(self) -> list[InstanceView]:
        """Current snapshot of every instance, for a scheduling decision. Never blocks."""
        ...

    def generate(self, instance_id: str, request: EngineRequest) -> AsyncIterator[GenerationChunk]:
        """Submit `request` to `instance_id` and stream its chunks until one has a finish_reason.

        Chunks come in output order, contiguous and each token once (`first_index` of a chunk is
        the end of the previous one; the first is `request.first_index`, past the output a
        resumed request already had). A broken stream raises `StreamBroken`.

        Raises `flotilla.errors.InstanceUnavailable` if the instance is gone or is lost while it
        streams (the caller may resume the request elsewhere: `instances.types.Resumed`). Closing
        the iterator early (client disconnect) aborts the request on the instance and frees its
        blocks.
        """
        ...

    async def abort(self, instance_id: str, request_id: str) -> None:
        """Abort a request; a no-op if it already finished."""
        ...

    async def close(self) -> None:
        """Stop every instance and release resources."""
        ...
