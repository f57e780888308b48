"""A per-instance log of engine steps, for profiling a serving instance in place.

With `cluster.step_trace_dir` set, every instance appends one CSV line per engine step to
`<dir>/<instance_id>.csv`: the wall-clock time the step ended (`time.time()`, so the files of
several processes share one clock), the step's measured time (`Engine.step`'s scheduling, forward
pass and sampling) and its `StepShape`. `benchmarks/sim_fidelity.py` reads these to compare the
steps of a loaded cluster with the latency model, and the gaps between steps with the serving
overheads it measured.

The file is line-buffered, so a line is complete as soon as its step is; a reader may read while
the instance runs.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from instances.latency.shape import StepShape

if TYPE_CHECKING:
    from instances.engine.scheduler import ScheduledBatch


@dataclass(frozen=True)
class StepRecord:
    """One engine step: it ended at wall time `end_s` and took `seconds`."""

    end_s: float
    seconds: float
    prefill_tokens: int
    prefill_attn: int
    num_prefills: int
    decode_batch: int
    decode_context: int

    @property
    def shape(self) -> StepShape:
        return StepShape(self.prefill_tokens, self.prefill_attn, self.num_prefills, self.decode_batch,
                         self.decode_context)


COLUMNS = tuple(f.name for f in fields(StepRecord))


class StepTrace:
    """Appends a `StepRecord` per step to `path` (created with its header if new). `record` has the
    signature of `Engine.on_step`. Call `close()` when done."""

    def __init__(self, path: str | Path, wall_clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._file = open(self.path, "a", newline="", buffering=1)  # noqa: SIM115 (closed by close())
        self._csv = csv.writer(self._file)
        self._wall = wall_clock
        if new:
            self._csv.writerow(COLUMNS)

    def record(self, batch: ScheduledBatch, seconds: float) -> None:
        s = StepShape.of(batch)
        self._csv.writerow((repr(self._wall()), repr(seconds), s.prefill_tokens, s.prefill_attn, s.num_prefills,
                            s.decode_batch, s.decode_context))

    def close(self) -> None:
        self._file.close()


def trace_path(trace_dir: str | None, instance_id: str) -> str | None:
    """Where instance `instance_id` writes its step trace in `trace_dir` (None: no trace)."""
    return None if trace_dir is None else str(Path(trace_dir) / f"{instance_id}.csv")


def read_trace(path: str | Path) -> list[StepRecord]:
    """The records of one trace file, in order. ValueError naming the file for a malformed one."""
    path = Path(path)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or tuple(rows[0]) != COLUMNS:
        raise ValueError(f"{path}: not a step trace (expected the header {','.join(COLUMNS)})")
    out = []
    for n, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        try:
            out.append(StepRecord(float(row[0]), float(row[1]), *(int(v) for v in row[2:])))
        except (ValueError, TypeError):
            raise ValueError(f"{path}:{n}: malformed step record {row!r}") from None
    return out
