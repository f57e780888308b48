"""The in-process runtime: engine replicas stepped on the gateway's own event loop.

Implements `controlplane.runtime.base.Cluster` with no Ray: each replica's forward pass runs in a
worker thread of this process. It serves fast tests and single-process embedding; `flotilla serve`
uses the Ray runtime. Replicas share one loaded model (weights are read-only); each has its own KV
cache.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import torch

from controlplane.runtime.streams import StreamRouter
from controlplane.runtime.tasks import cancel_and_wait
from controlplane.scheduling.types import InstanceView
from flotilla.errors import InstanceUnavailable, InvalidRequest
from instances.engine.config import EngineConfig
from instances.models.loader import LoadedModel, load_model
from instances.replica import Replica, ReplicaSpec
from instances.step_loop import StepLoop
from instances.step_trace import trace_path
from instances.types import EngineRequest, GenerationChunk, InstanceStats


def view_of(stats: InstanceStats, role: str = "unified") -> InstanceView:
    """The scheduler's view of an instance snapshot."""
    return InstanceView(
        instance_id=stats.instance_id,
        healthy=stats.healthy,
        running=stats.running,
        waiting=stats.waiting,
        free_blocks=stats.free_blocks,
        total_blocks=stats.total_blocks,
        block_size=stats.block_size,
        tokens_in_flight=stats.tokens_in_flight,
        queued_prompt_tokens=stats.queued_prompt_tokens,
        role=role,
        draining=stats.draining,
        head_demand_blocks=stats.head_demand_blocks,
        high_priority=stats.high_priority,
    )


class LocalCluster:
    """`num_instances` replicas of one model in this process."""

    def __init__(self, loaded: LoadedModel, loops: dict[str, StepLoop], router: StreamRouter) -> None:
        self.loaded = loaded
        self.loops = loops
        self.router = router
        self._tasks: list[asyncio.Task] = []
        for iid, lp in loops.items():
            task = asyncio.get_running_loop().create_task(lp.run(), name=f"step-loop-{iid}")
            task.add_done_callback(lambda t, iid=iid: self._on_loop_exit(iid, t))
            self._tasks.append(task)

    def _on_loop_exit(self, instance_id: str, task: asyncio.Task) -> None:
        """A step loop only ends by cancellation; if it crashed, fail its streams and drop it."""
        if task.cancelled():
            return
        err = task.exception()
        self.loops.pop(instance_id, None)
        self.router.fail_instance(
            instance_id, InstanceUnavailable(f"instance {instance_id} failed ({err!r}); retry the request")
        )

    @classmethod
    async def create(
        cls, model: str, num_instances: int, engine: EngineConfig, *, dtype: str = "float32",
        loaded: LoadedModel | None = None, step_trace_dir: str | None = None,
    ) -> LocalCluster:
        """Load `model` once in `dtype` (unless `loaded` is given) and start `num_instances` replicas
        (each writing a step trace into `step_trace_dir` if given)."""
        loaded = loaded or await asyncio.to_thread(load_model, model, getattr(torch, dtype))
        router = StreamRouter()
        loops = {}
        for i in range(num_instances):
            spec = ReplicaSpec(instance_id=f"instance-{i}", model=model, engine=engine,
                               step_trace=trace_path(step_trace_dir, f"instance-{i}"))
            replica = Replica.build(spec, loaded)
            loops[spec.instance_id] = StepLoop(replica, router.deliver)
        return cls(loaded, loops, router)

    def views(self) -> list[InstanceView]:
        return [view_of(lp.stats()) for lp in self.loops.values()]

    def _loop(self, instance_id: str) -> StepLoop:
        lp = self.loops.get(instance_id)
        if lp is None:
            raise InstanceUnavailable(f"instance {instance_id!r} does not exist; list instances and retry")
        return lp

    async def generate(self, instance_id: str, request: EngineRequest) -> AsyncIterator[GenerationChunk]:
        lp = self._loop(instance_id)
        try:
            lp.submit(request)
        except ValueError as e:
            raise InvalidRequest(str(e)) from e
        # no await between submit and open: the replica cannot push a chunk before the stream exists
        self.router.open(request.request_id, instance_id)
        stream = self.router.stream(request.request_id, lambda: self.abort(instance_id, request.request_id))
        async with contextlib.aclosing(stream):  # closing us closes it at once: the abort is immediate
            async for chunk in stream:
                yield chunk

    async def abort(self, instance_id: str, request_id: str) -> None:
        self._loop(instance_id).abort(request_id)

    async def close(self) -> None:
        await cancel_and_wait(self._tasks)

