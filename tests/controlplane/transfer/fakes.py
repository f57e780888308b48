"""`FakeEndpoint`: an engine's transfer verbs in memory, with faults to inject (a test double of
`controlplane.transfer.endpoint.TransferEndpoint`, the protocol `instances/replica.py` implements).

A request has tokens, computed tokens and blocks of `block_size`; a source request decodes
`decode_per_call` tokens before each verb runs on its engine (the steps between the calls). Pages
are `(request_id, first, [block contents])`: a block's content is the number of tokens it holds,
so a test can check what arrived. `faults[verb]` makes a verb raise an exception, or `HANG` never
answer (until cancelled)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from flotilla.errors import InstanceUnavailable, TransferRefused
from instances.replica import StageAck
from instances.types import MigrationCandidate, Priority

HANG = "hang"


@dataclass
class FakeRequest:
    request_id: str
    tokens: int
    computed: int
    state: str = "running"  # running | waiting | suspended
    blocks: list[int] = field(default_factory=list)  # per block, the tokens whose K/V it holds


class FakeEndpoint:
    def __init__(self, name: str, *, block_size: int = 4, decode_per_call: int = 0, model: str = "m",
                 faults: dict[str, Any] | None = None) -> None:
        self.name = name
        self.block_size = block_size
        self.decode_per_call = decode_per_call
        self.model = model
        self.faults = dict(faults or {})
        self.requests: dict[str, FakeRequest] = {}
        self.reservations: dict[str, list[int]] = {}  # request id -> pages written
        self.holds: set[str] = set()
        self.calls: list[str] = []
        self.draining = False

    # ---- set-up and inspection ---------------------------------------------------------------
    def add(self, request_id: str, tokens: int, *, running: bool = True) -> FakeRequest:
        req = FakeRequest(request_id, tokens, tokens - 1 if running else 0, "running" if running else "waiting")
        self._fill(req)
        self.requests[request_id] = req
        return req

    def _fill(self, req: FakeRequest) -> None:
        bs = self.block_size
        full, part = divmod(req.computed, bs)
        req.blocks = [bs] * full + ([part] if part else [])

    def _decode(self) -> None:
        for req in self.requests.values():
            if req.state == "running":
                req.tokens += self.decode_per_call
                req.computed += self.decode_per_call
                self._fill(req)

    async def _enter(self, verb: str) -> None:
        self.calls.append(verb)
        fault = self.faults.get(verb)
        if fault == HANG:
            await asyncio.Event().wait()
        if isinstance(fault, BaseException):
            raise fault
        self._decode()

    def _get(self, request_id: str) -> FakeRequest:
        req = self.requests.get(request_id)
        if req is None or req.state == "finished":
            raise TransferRefused("finished", f"{request_id} is not on {self.name}")
        return req

    # ---- source verbs ------------------------------------------------------------------------
    async def describe(self, request_id: str) -> MigrationCandidate:
        await self._enter("describe")
        req = self._get(request_id)
        return MigrationCandidate(request_id, Priority.NORMAL, req.tokens, len(req.blocks), req.state == "running", 1)

    def export_stage(self, request_id: str, first_block: int, max_blocks: int) -> Any:
        return self._export(request_id, first_block, max_blocks)

    async def _export(self, request_id: str, first: int, max_blocks: int) -> tuple:
        await self._enter("export_stage")
        req = self._get(request_id)
        if req.state == "waiting":
            raise TransferRefused("preempted", f"{request_id} was preempted")
        held = len(req.blocks)
        return request_id, first, req.blocks[first:min(held, first + max_blocks)], req.computed, held

    def suspend(self, request_id: str, first_block: int) -> Any:
        return self._suspend(request_id, first_block)

    async def _suspend(self, request_id: str, first: int) -> tuple:
        await self._enter("suspend")
        req = self._get(request_id)
        req.state = "suspended"
        return request_id, first, req.blocks[first:], req.computed, len(req.blocks), req.tokens

    async def release(self, request_id: str) -> bool:
        await self._enter("release")
        req = self.requests.get(request_id)
        if req is None or req.state != "suspended":
            return False
        del self.requests[request_id]
        return True

    async def resume(self, request_id: str) -> bool:
        await self._enter("resume")
        req = self.requests.get(request_id)
        if req is None or req.state != "suspended":
            return False
        req.state = "running"
        return True

    # ---- destination verbs -------------------------------------------------------------------
    async def reserve(self, request_id: str, model: str, num_tokens: int) -> None:
        await self._enter("reserve")
        if model != self.model:
            raise TransferRefused("wrong_model", f"{self.name} serves {self.model}")
        if self.draining:
            raise TransferRefused("draining", f"{self.name} is draining")
        if request_id in self.reservations or request_id in self.requests:
            raise TransferRefused("duplicate", f"{request_id} is already on {self.name}")
        self.reservations[request_id] = []

    async def import_stage(self, pages: Any) -> StageAck:
        rid, first, blocks, computed, held = await pages
        await self._enter("import_stage")
        self._write(rid, first, blocks)
        return StageAck(first, len(blocks), computed // self.block_size, len(blocks) * 100, held)

    def _write(self, rid: str, first: int, blocks: list[int]) -> None:
        if rid not in self.reservations:
            raise TransferRefused("expired", f"no reservation for {rid} on {self.name}")
        written = self.reservations[rid]
        del written[first:]
        written.extend(blocks)

    async def hold(self, request_id: str, seconds: float) -> None:
        await self._enter("hold")
        self.holds.add(request_id)

    async def commit(self, payload: Any) -> StageAck | None:
        rid, first, blocks, computed, held, tokens = await payload
        await self._enter("commit")
        self.holds.discard(rid)
        if self.draining:
            raise TransferRefused("draining", f"{self.name} is draining")
        if computed:
            if rid not in self.reservations:  # queued when the transfer began, running since
                self.reservations[rid] = []
            self._write(rid, first, blocks)
        written = self.reservations.pop(rid, [])
        req = FakeRequest(rid, tokens, computed, "running" if computed else "waiting", written)
        self.requests[rid] = req
        return StageAck(first, len(blocks), computed // self.block_size, len(blocks) * 100, held) if computed else None

    async def abandon(self, request_id: str) -> None:
        await self._enter("abandon")
        self.holds.discard(request_id)
        self.reservations.pop(request_id, None)
        self.requests.pop(request_id, None)

    async def abort(self, request_id: str) -> None:
        await self._enter("abort")
        self.requests.pop(request_id, None)


def dead(name: str) -> InstanceUnavailable:
    return InstanceUnavailable(f"instance {name} died")
