"""A replica: an engine plus its output processor, the unit an instance actor serves.

`Replica` is synchronous; `StepLoop` (instances/step_loop.py) drives it from asyncio.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from flotilla.errors import TransferRefused
from instances.engine.config import EngineConfig
from instances.engine.engine import Engine
from instances.engine.executor import ModelRunner
from instances.engine.migration import SequenceState
from instances.engine.output import OutputProcessor
from instances.kv_transfer import KVPages, export_pages, import_pages
from instances.models.loader import LoadedModel, load_model
from instances.step_trace import StepTrace
from instances.types import EngineRequest, GenerationChunk, InstanceStats, MigrationCandidate, RequestBlocks


@dataclass
class MigrationPayload:
    """What the stop-and-copy step hands the destination: the request's state, its last pages
    (those written since the previous stage) and how much of its text was already sent. An
    instance actor adds the gateway that owns the request and the chunks it had not yet handed
    that gateway (the destination hands them out first)."""

    state: SequenceState
    pages: KVPages
    sent_chars: int
    owner: str = ""
    chunks: list[GenerationChunk] = field(default_factory=list)


@dataclass(frozen=True)
class StageAck:
    """A destination's answer to one copy: pages `first_block .. first_block + num_pages - 1` are
    in place; the source held K/V in `source_blocks` blocks when it read them (a stage copied in
    chunks goes on from `first_block + num_pages` while `remaining` is positive); `full_blocks`
    leading blocks were full on the source (the next copy starts there, re-sending a part-full
    last block); `nbytes` of pages were moved."""

    first_block: int
    num_pages: int
    full_blocks: int
    nbytes: int
    source_blocks: int

    @property
    def remaining(self) -> int:
        return self.source_blocks - self.first_block - self.num_pages


@dataclass(frozen=True)
class ReplicaSpec:
    """Everything needed to build a replica in any process (picklable)."""

    instance_id: str
    model: str
    engine: EngineConfig
    dtype: str = "float32"
    torch_threads: int = 1
    step_trace: str | None = None  # a CSV file to append a line per step to (instances/step_trace.py)


class Replica:
    """Engine + detokenizer: requests in, text chunks out."""

    def __init__(self, engine: Engine, output: OutputProcessor, model: str = "") -> None:
        self.engine = engine
        self.output = output
        self.model = model

    @classmethod
    def build(cls, spec: ReplicaSpec, loaded: LoadedModel | None = None) -> Replica:
        """Load the model (unless given) and assemble the engine of `spec`."""
        torch.set_num_threads(spec.torch_threads)
        loaded = loaded or load_model(spec.model, dtype=getattr(torch, spec.dtype))
        runner = ModelRunner(loaded.model, spec.engine)
        engine = Engine(spec.engine, runner, instance_id=spec.instance_id,
                        eos_token_ids=loaded.tokenizer.eos_token_ids, vocab_size=loaded.model.config.vocab_size)
        if spec.step_trace is not None:
            engine.on_step = StepTrace(spec.step_trace).record
        return cls(engine, OutputProcessor(loaded.tokenizer.backend), spec.model)

    def add(self, req: EngineRequest) -> None:
        """Queue a request; ValueError (user-facing message) if it can never run here. A resumed
        request's detokenizer starts where its text stopped (`Resumed`)."""
        self.engine.add_request(req)
        if req.resumed is None:
            self.output.add(req.request_id, req.sampling)
        else:
            r = req.resumed
            self.output.adopt(req.request_id, req.sampling, r.output_token_ids, r.sent_chars)

    def abort(self, request_id: str) -> None:
        self.engine.abort(request_id)

    def has_work(self) -> bool:
        return self.engine.has_unfinished()

    def step(self) -> list[GenerationChunk]:
        """One engine step; requests ended by a stop string are aborted in the engine."""
        chunks: list[GenerationChunk] = []
        for delta in self.engine.step().deltas:
            chunk, stopped = self.output.process(delta)
            if stopped:
                self.engine.release(delta.request_id)
            chunks.append(chunk)
        return chunks

    def stats(self) -> InstanceStats:
        return self.engine.stats()

    # ---- migration verbs (instances/engine/migration.py has the books; each runs between steps)
    @property
    def _kv_caches(self) -> list[torch.Tensor]:
        runner = self.engine.executor
        if not isinstance(runner, ModelRunner):
            raise TypeError("migration needs the torch executor's KV cache")
        return runner.kv_caches

    def _blocks(self, request_id: str) -> RequestBlocks:
        info = self.engine.request_blocks(request_id)
        if info is None:
            raise TransferRefused("finished", f"request {request_id!r} is not on this instance (finished?)")
        return info

    def describe(self, request_id: str) -> MigrationCandidate:
        """`request_id` as a migration candidate; TransferRefused (`finished`) if not movable here."""
        for cand in self.engine.migration_candidates():
            if cand.request_id == request_id:
                return cand
        raise TransferRefused("finished", f"request {request_id!r} is not running or queued on this instance")

    def export_stage(self, request_id: str, first_block: int, max_blocks: int | None = None) -> KVPages:
        """Source, while the request keeps running: its pages from table position `first_block`
        to the last block holding computed K/V (the last one part full is sent again later), at
        most `max_blocks` of them (the caller asks for the rest in later calls, so the steps of
        the source's other requests run between the copies). TransferRefused (`preempted`) once
        the request went back to the queue."""
        info = self._blocks(request_id)
        if info.state == "waiting":
            raise TransferRefused("preempted", f"request {request_id!r} was preempted on this instance")
        return self._pages(info, first_block, max_blocks)

    def _pages(self, info: RequestBlocks, first_block: int, max_blocks: int | None = None) -> KVPages:
        bs = self.engine.config.block_size
        held = -(-info.num_computed_tokens // bs)
        end = held if max_blocks is None else min(held, first_block + max_blocks)
        ids = info.block_ids[first_block:end]
        return export_pages(self._kv_caches, ids, info.request_id, first_block, info.num_computed_tokens, held)

    def suspend(self, request_id: str, first_block: int) -> MigrationPayload:
        """Source, stop-and-copy: take the request out of the batch (keeping its blocks) and
        hand over its state with the pages from `first_block` on. `resume` undoes it."""
        state = self.engine.suspend(request_id)
        pages = self._pages(self._blocks(request_id), min(first_block, state.num_kv_blocks))
        return MigrationPayload(state, pages, self.output.sent_chars(request_id))

    def resume(self, request_id: str) -> bool:
        """Source: a failed migration's request continues here."""
        return self.engine.resume(request_id)

    def release_migrated(self, request_id: str) -> bool:
        """Source: the request now runs elsewhere; free it. False if it was aborted meanwhile."""
        released = self.engine.release_migrated(request_id)
        self.output.remove(request_id)
        return released

    def reserve(self, request_id: str, model: str, num_tokens: int) -> list[int]:
        """Destination: hold blocks for an incoming request of `model` (refused for another)."""
        if model != self.model:
            raise TransferRefused("wrong_model", f"this instance serves {self.model!r}, not {model!r}")
        return self.engine.reserve(request_id, num_tokens)

    def import_stage(self, pages: KVPages) -> StageAck:
        """Destination: write a stage's pages into the reservation (grown as needed). Corrupt
        pages raise `CorruptPages`, writing nothing."""
        bs = self.engine.config.block_size
        end = pages.first_block + pages.num_pages
        blocks = self.engine.extend_reservation(pages.request_id, end * bs)
        import_pages(self._kv_caches, blocks[pages.first_block:end], pages)
        return StageAck(pages.first_block, pages.num_pages, pages.num_computed_tokens // bs, pages.nbytes,
                        pages.source_blocks)

    def commit(self, payload: MigrationPayload) -> StageAck | None:
        """Destination: write the last pages and make the request run here, its detokenizer
        rebuilt; it joins the next step. Returns the last stage's ack (None for a queued request)."""
        state = payload.state
        rid = state.request.request_id
        if state.num_computed_tokens > 0 and not self.engine.is_reserved(rid):
            # it was queued when the migration began and started running before the suspend
            self.engine.reserve(rid, state.num_tokens)
        ack = self.import_stage(payload.pages) if state.num_computed_tokens > 0 else None
        self.engine.commit(state)
        self.output.adopt(rid, state.request.sampling, state.output_token_ids, payload.sent_chars)
        return ack

    def cancel_reservation(self, request_id: str) -> bool:
        return self.engine.cancel_reservation(request_id)
