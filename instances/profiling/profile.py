"""`flotilla profile`: time the real engine's steps over a grid of batch shapes, fit DistServe
coefficients.

Each timed step is a real `Engine.step()` (local scheduler, torch `ModelRunner` forward pass over
the paged KV cache, sampling, scheduler update), built as `instances/replica.py` builds a serving
instance, with `torch.set_num_threads(threads)` (1 by default, what each serving instance uses).
The engine's executor is wrapped to record the shape of the batch it runs, so every row carries
the shape that was actually computed.

- prefill points (n, T): n prompts of T tokens from position 0, admitted and prefilled in one step
  (max_tokens 1, prefix caching off, so repeats do not hit the cache); `warmup` untimed steps, then
  `repeats` timed ones, each on a fresh set of prompts.
- decode points (B, C): B prompts prefilled together in one untimed step, `warmup` untimed decode
  steps, then `repeats` timed decode steps. Each decode step adds one token of context, so the
  prompt length is chosen to put the middle timed step at context C for every sequence (with 9
  repeats: C - 4, ..., C + 4).

One CSV row per grid point: the shape of its (middle) timed step and the median time of its timed
steps, so a step slowed down by another process on the machine does not move the row.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import torch

from flotilla.errors import ConfigError
from instances.latency.distserve import FitResult, fit
from instances.latency.rows import ProfileRow, write_rows
from instances.models.loader import LoadedModel, load_model
from instances.profiling.colocate import colocated_load
from instances.profiling.steps import StepTimer


@dataclass(frozen=True)
class ProfileGrid:
    """Shapes to time: single prompts of each `prefill_lens` length, (n, T) multi-prompt prefills,
    and every (batch, context) decode combination."""

    prefill_lens: tuple[int, ...]
    multi_prefills: tuple[tuple[int, int], ...]
    decode_batches: tuple[int, ...]
    decode_contexts: tuple[int, ...]

    def points(self) -> list[tuple[str, int, int]]:
        """(kind, num_seqs, tokens per sequence or context) in run order."""
        prefills = [("prefill", 1, t) for t in self.prefill_lens] + [("prefill", n, t) for n, t in self.multi_prefills]
        decodes = [("decode", b, c) for b in self.decode_batches for c in self.decode_contexts]
        return prefills + decodes


DEFAULT_GRID = ProfileGrid(
    prefill_lens=(16, 32, 64, 96, 128, 192, 256, 384, 512, 640, 768, 896, 1024),
    multi_prefills=((2, 64), (4, 64), (8, 64), (2, 256), (4, 256), (2, 512)),
    decode_batches=(1, 2, 4, 8, 16, 32, 64),
    decode_contexts=(16, 64, 128, 256, 512, 768, 1024),
)
DEFAULT_REPEATS = 9
QUICK_GRID = ProfileGrid(
    prefill_lens=(16, 64, 256), multi_prefills=((2, 64),), decode_batches=(1, 4, 16), decode_contexts=(16, 128)
)


def profile(
    model: str = "tiny-llama",
    *,
    grid: ProfileGrid = DEFAULT_GRID,
    repeats: int = DEFAULT_REPEATS,
    warmup: int = 1,
    threads: int = 1,
    progress: TextIO | None = None,
    loaded: LoadedModel | None = None,
    colocated: int = 0,
) -> list[ProfileRow]:
    """Time the grid's steps on the real engine of `model`: one row per grid point (see the module
    docstring). With `colocated` > 0, that many other engines step beside it the whole time
    (`colocate.colocated_load`), as other serving instances do on the same host.

    One line per grid point goes to `progress` (if given). ConfigError on bad arguments; ModelLoadError when
    the model cannot be loaded. The torch thread count is restored afterwards.
    """
    if repeats < 1 or warmup < 0 or threads < 1 or colocated < 0:
        raise ConfigError(f"profile needs repeats >= 1, warmup >= 0, threads >= 1, colocated >= 0; got {repeats}, "
                          f"{warmup}, {threads}, {colocated}")
    least = 3 + warmup + (repeats - 1) // 2  # a decode point's prompt needs 2 tokens (see `decode`)
    if min(grid.decode_contexts, default=least) < least:
        raise ConfigError(f"with {repeats} repeats and {warmup} warm-up steps, decode contexts must be >= "
                          f"{least}; the grid's smallest is {min(grid.decode_contexts)}; use fewer repeats")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        loaded = loaded or load_model(model)
        profiler = StepTimer(loaded, warmup, repeats)
        StepTimer(loaded, 2, 1).prefill(1, 16)
        StepTimer(loaded, 2, 1).decode(1, 16)  # first-call costs of torch, outside every grid point
        with colocated_load(model, colocated, threads, grid):
            return _measure(profiler, grid, progress)
    finally:
        torch.set_num_threads(previous)


def _measure(profiler: StepTimer, grid: ProfileGrid, progress: TextIO | None) -> list[ProfileRow]:
    points = grid.points()
    rows: list[ProfileRow] = []
    start = time.perf_counter()
    for i, (kind, n, size) in enumerate(points, 1):
        measure: Callable[[int, int], tuple[ProfileRow, list[float]]] = getattr(profiler, kind)
        row, times = measure(n, size)
        rows.append(row)
        if progress is not None:
            label = f"{n} x {size} tokens" if kind == "prefill" else f"batch {n}, context {size}"
            print(f"[profile] {i}/{len(points)} {kind} {label}: median {row.seconds * 1e3:.2f} ms "
                  f"(min {min(times) * 1e3:.2f}, max {max(times) * 1e3:.2f}) over {len(times)} steps, "
                  f"{time.perf_counter() - start:.0f} s", file=progress, flush=True)
    return rows


def _check_writable(path: Path) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ConfigError(f"cannot write {path}: directory {parent} does not exist")


def run_profile(model: str, out: str, fit_path: str, *, repeats: int = DEFAULT_REPEATS, threads: int = 1, quick: bool = False,
                progress: TextIO | None = None, colocated: int = 0) -> FitResult:
    """What `flotilla profile` does: profile, write the rows to `out` (CSV), fit, write the
    coefficients to `fit_path` (JSON). Output paths are checked before the minutes of measuring."""
    out_path, fit_file = Path(out), Path(fit_path)
    for path in (out_path, fit_file):
        _check_writable(path)
    grid = QUICK_GRID if quick else DEFAULT_GRID
    rows = profile(model, grid=grid, repeats=repeats, threads=threads, progress=progress, colocated=colocated)
    source = (f"flotilla profile --model {model}{' --quick' if quick else ''}: torch {torch.__version__} on "
              f"{platform.machine()} CPU, {threads} thread(s), {repeats} repeats, {colocated} co-located engine(s); "
              f"{len(rows)} rows in {out_path.name}")
    result = fit(rows, source=source)
    try:
        write_rows(out_path, rows)
        result.save(fit_file)
    except OSError as e:
        raise ConfigError(f"cannot write profile output: {e}") from e
    return result
