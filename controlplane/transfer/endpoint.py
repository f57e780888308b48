"""`TransferEndpoint`: one engine's side of a transfer, as a driver (`driver.py`) calls it.

Implemented by `RayEndpoint` (an instance actor, `controlplane/runtime/ray_endpoint.py`),
`LoopEndpoint` (an in-process step loop, `controlplane/runtime/local.py`) and the tests' fakes;
the verbs mean what `instances/replica.py` says. Pages and payloads are opaque handles that the
source's verb returns and the destination's verb takes: Ray passes object refs, so the pages go
from source to destination without passing through the driver, and an error of the source's verb
surfaces when the destination's call is awaited.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from instances.replica import StageAck
    from instances.types import MigrationCandidate


class TransferEndpoint(Protocol):
    """One engine's transfer verbs (`instances/replica.py` has their meaning), called by a driver.
    Each runs between two of that engine's steps. Refusals raise `TransferRefused`; an engine that
    is gone or broken raises `InstanceUnavailable`."""

    async def describe(self, request_id: str) -> MigrationCandidate: ...

    async def reserve(self, request_id: str, model: str, num_tokens: int) -> None: ...

    def export_stage(self, request_id: str, first_block: int, max_blocks: int) -> Any:
        """The pages' handle, for the destination's `import_stage` (its errors surface there)."""
        ...

    async def import_stage(self, pages: Any) -> StageAck: ...

    async def hold(self, request_id: str, seconds: float) -> None:
        """Start no new step, from the next step boundary, until `request_id` is committed or
        abandoned here or `seconds` pass (the call returns once the hold is in place)."""
        ...

    def suspend(self, request_id: str, first_block: int) -> Any:
        """The payload's handle, for the destination's `commit` (its errors surface there)."""
        ...

    async def commit(self, payload: Any) -> StageAck | None: ...

    async def release(self, request_id: str) -> bool: ...

    async def resume(self, request_id: str) -> bool: ...

    async def abandon(self, request_id: str) -> None: ...

    async def abort(self, request_id: str) -> None: ...
