"""`RayEndpoint`: an instance actor as a `TransferEndpoint` (`controlplane/transfer/endpoint.py`).

Pages and payloads stay object refs: `export_stage` and `suspend` return the ref of the source's
answer without waiting for it, and the destination's `import_stage` / `commit` take it as their
argument, so Ray's object store hands the pages from one actor to the other and the driver never
holds them. An error of the source's verb surfaces when the destination's call is awaited. Ray's
errors become `InstanceUnavailable` (a refusal raised by the actor stays a `TransferRefused`).
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

import ray
from ray.exceptions import RayError

from flotilla.errors import InstanceUnavailable, TransferRefused
from instances.replica import StageAck
from instances.types import MigrationCandidate

T = TypeVar("T")

log = logging.getLogger(__name__)


class RayEndpoint:
    """The transfer verbs of one instance actor (`instances/actor.py`)."""

    def __init__(self, instance_id: str, handle: ray.actor.ActorHandle) -> None:
        self.instance_id = instance_id
        self.handle = handle

    async def _answer(self, ref: Any) -> Any:
        try:
            return await ref
        except TransferRefused:
            raise
        except RayError as e:  # its text (a remote traceback, pids, ids) goes to the log only
            log.warning("a transfer call to %s failed: %s", self.instance_id, e)
            raise InstanceUnavailable(f"instance {self.instance_id} failed ({type(e).__name__}); "
                                      "see the gateway log") from e

    async def describe(self, request_id: str) -> MigrationCandidate:
        return await self._answer(self.handle.describe.remote(request_id))

    async def reserve(self, request_id: str, model: str, num_tokens: int) -> None:
        await self._answer(self.handle.reserve.remote(request_id, model, num_tokens))

    def export_stage(self, request_id: str, first_block: int, max_blocks: int) -> Any:
        return self.handle.export_stage.remote(request_id, first_block, max_blocks)

    async def import_stage(self, pages: Any) -> StageAck:
        return await self._answer(self.handle.import_stage.remote(pages))

    async def hold(self, request_id: str, seconds: float) -> None:
        await self._answer(self.handle.hold.remote(request_id, seconds))

    def suspend(self, request_id: str, first_block: int) -> Any:
        return self.handle.suspend.remote(request_id, first_block)

    async def commit(self, payload: Any) -> StageAck | None:
        return await self._answer(self.handle.commit.remote(payload))

    async def release(self, request_id: str) -> bool:
        return await self._answer(self.handle.release_migrated.remote(request_id))

    async def resume(self, request_id: str) -> bool:
        return await self._answer(self.handle.resume.remote(request_id))

    async def abandon(self, request_id: str) -> None:
        await self._answer(self.handle.abandon.remote(request_id))

    async def abort(self, request_id: str) -> None:
        await self._answer(self.handle.abort.remote([request_id]))
