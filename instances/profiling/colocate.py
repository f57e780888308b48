"""Co-located profiling: time the engine while other engines on the same machine are busy too.

On a CPU host several serving instances run side by side, each on its own core but sharing caches,
memory bandwidth and (on a VM) the physical cores under the virtual ones; a step runs slower than it
does alone. `colocated_load(model, n)` starts `n` helper processes that step their own engines
over the profile grid, in a shuffled order, for as long as the block runs; the profile measured
inside it prices steps as they run beside `n` other instances. Helpers are spawned (no fork of a
process holding torch threads) and stopped, then joined, when the block exits, even on error.
"""

from __future__ import annotations

import multiprocessing as mp
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager

_READY_TIMEOUT_S = 120.0


@contextmanager
def colocated_load(model: str, helpers: int, threads: int, grid: object) -> Iterator[None]:
    """Run `helpers` busy engines of `model` (each with `threads` torch threads, stepping `grid`'s
    shapes) while the block runs. RuntimeError if a helper fails to start within two minutes."""
    if helpers < 1:
        yield
        return
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    ready = [ctx.Event() for _ in range(helpers)]
    procs = [ctx.Process(target=_busy, args=(model, threads, grid, k, ready[k], stop), daemon=True)
             for k in range(helpers)]
    for p in procs:
        p.start()
    try:
        deadline = time.monotonic() + _READY_TIMEOUT_S
        for k, (p, r) in enumerate(zip(procs, ready)):
            while not r.wait(0.2):
                if not p.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"co-located profile helper {k} did not start (exit code {p.exitcode}); "
                                       "run without --colocated to profile alone")
        yield
    finally:
        stop.set()
        for p in procs:
            p.join(10.0)
            if p.is_alive():
                p.terminate()
                p.join()


def _busy(model: str, threads: int, grid: object, seed: int, ready: object, stop: object) -> None:
    """A helper's body: step the grid's shapes in a shuffled order until `stop` is set."""
    import torch

    from instances.models.loader import load_model
    from instances.profiling.steps import StepTimer

    torch.set_num_threads(threads)
    profiler = StepTimer(load_model(model), 0, 1)
    points = grid.points()  # type: ignore[attr-defined]
    rng = random.Random(seed)
    ready.set()  # type: ignore[attr-defined]
    while not stop.is_set():  # type: ignore[attr-defined]
        kind, n, size = rng.choice(points)
        getattr(profiler, kind)(n, size)
