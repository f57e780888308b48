"""The measuring core of `benchmarks/migration.py`: live migrations of one long request between two
instance actors, with other requests decoding on both.

For each length L a request `r` whose sequence reaches about L tokens (an L - `lead` token prompt;
the longest length is capped by the model's positions) runs on instance A while `others` short
requests decode on A and on B. Once `r` decodes it is migrated A -> B -> A ... `repeats` times.
Before each migration `r` gets `settle` tokens, then a baseline window of `window` tokens on its
instance with nothing migrating. Recorded: every token's arrival time at the gateway, both
instances' step traces, and (the migrator's clock is `time.perf_counter`, the outcome's
`suspended_at` and `downtime_s`) when the suspend was sent and the commit answered. `benchmarks/migration_analysis.py` turns these into the figures of a row:
- `downtime_s`: r in no running batch, source's last step with it to destination's first (traces;
  the steps after the suspend was sent are searched, so another request ending during the copy is
  not taken for r leaving);
- `gateway_downtime_s`: r's last token before the suspend to its first from the destination
  (the source's last token travels in the payload and arrives at the commit), minus as many
  normal inter-token times (the median in the baseline window);
- `stall_s`: the same from r's last token before the migration began (pre-copy stages included);
- `source_step_s`: the source's median decode step in the baseline window (the interval between
  the ends of its consecutive steps, from its trace): the target's unit, "at most one step";
- `source_slowdown` / `destination_slowdown`: per-token time of the instance's other requests (its
  step interval) from the migration's start to the suspend (while the batch still holds r, as in
  the baseline window) over the baseline window's;
- `source_blocked_share`: the time the source's loop spent between two steps with work in that
  window (serving the migration's calls), as a share of the window: the migration's direct cost
  to the others, which the per-token ratio also holds beside the machine's noise;
- `source_blocked_s`: the longest time the source's loop spent between two steps in the window.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchmarks.migration_analysis import (
    excess,
    first_from,
    last_before,
    loop_blocked,
    median_gap,
    median_step,
    no_batch_gap,
    per_token,
    step_slowdown,
)
from controlplane.runtime.ray_cluster import RayCluster
from controlplane.scheduling.migration import MigrationOrder
from controlplane.transfer.protocol import TransferOutcome
from instances.step_trace import read_trace
from instances.types import EngineRequest, SamplingParams

WAIT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class RunShape:
    """What one run measures (see the module docstring)."""

    lengths: tuple[int, ...]
    repeats: int = 3
    others: int = 3
    other_prompt: int = 128
    other_max_tokens: int = 1024
    lead: int = 32  # r's prompt is L - lead tokens (at most max_model_len - max_output: room for the repeats)
    max_output: int = 512
    settle: int = 1
    window: int = 24
    seed: int = 0


@dataclass
class Stream:
    """One request streamed through the gateway: every token with its arrival time."""

    req: EngineRequest
    instance: str
    submitted: float = 0.0
    times: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    task: asyncio.Task | None = None

    async def consume(self, cluster: RayCluster) -> None:
        self.submitted = time.perf_counter()
        async for chunk in cluster.generate(self.instance, self.req):
            now = time.perf_counter()
            self.tokens.extend(chunk.token_ids)
            self.times.extend([now] * len(chunk.token_ids))

    async def wait_for(self, n: int, timeout_s: float = WAIT_TIMEOUT_S) -> None:
        """Until `n` tokens have arrived (RuntimeError if the stream ends or fails first)."""
        deadline = time.perf_counter() + timeout_s
        while len(self.times) < n:
            if self.task is not None and self.task.done():
                self.task.result()  # raises its error, if any
                raise RuntimeError(f"{self.req.request_id} ended after {len(self.times)} of {n} tokens")
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{self.req.request_id}: {len(self.times)} of {n} tokens in {timeout_s} s")
            await asyncio.sleep(0.005)

    async def wait_past(self, t: float) -> None:
        """Until a token has arrived after time `t`."""
        while not self.times or self.times[-1] <= t:
            await self.wait_for(len(self.times) + 1)


def start(cluster: RayCluster, stream: Stream) -> Stream:
    stream.task = asyncio.get_running_loop().create_task(stream.consume(cluster))
    return stream


async def stop(streams: Sequence[Stream]) -> None:
    for s in streams:
        if s.task is not None:
            s.task.cancel()
    await asyncio.gather(*(s.task for s in streams if s.task is not None), return_exceptions=True)


# ---- the run ----------------------------------------------------------------------------------
def _prompt(rng: random.Random, n: int) -> list[int]:
    return [rng.randrange(3, 250) for _ in range(n)]


def _greedy(max_tokens: int) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)


def target_request(shape: RunShape, length: int, max_model_len: int) -> EngineRequest:
    """The request migrated at `length`: greedy, EOS ignored, a random prompt."""
    prompt = min(length - shape.lead, max_model_len - shape.max_output)
    rng = random.Random(f"r-{shape.seed}-{length}")
    return EngineRequest(f"r{length}", _prompt(rng, prompt), _greedy(min(shape.max_output, max_model_len - prompt)))


@dataclass
class Probe:
    """What a run watches: the instances' step traces (`None`: no traces); `wall` turns the
    migrator's clock (`time.perf_counter` during a run) into the traces' wall time."""

    traces: dict[str, Path] | None
    wall_offset: float = field(default_factory=lambda: time.time() - time.perf_counter())

    def steps(self, iid: str) -> list:
        return read_trace(self.traces[iid]) if self.traces else []

    def wall(self, t: float) -> float:
        return t + self.wall_offset


async def migrate_once(
    cluster: RayCluster, probe: Probe, r: Stream, others: dict[str, list[Stream]], src: str, dst: str,
    shape: RunShape, length: int, index: int,
) -> dict:
    """Baseline window on `src`, then one migration of `r` to `dst`; one row of measurements."""
    await r.wait_for(len(r.times) + shape.settle)
    w0 = len(r.times) - 1
    await r.wait_for(w0 + 1 + shape.window)
    base = (r.times[w0], r.times[w0 + shape.window])
    tpot = median_gap(r.times, w0, w0 + shape.window)
    t_start = time.perf_counter()
    outcome: TransferOutcome = await cluster.migrate(MigrationOrder(r.req.request_id, src, dst, "bench"))
    t_end = time.perf_counter()
    row = {"length": length, "repeat": index, "source": src, "destination": dst, "result": outcome.result,
           "detail": outcome.detail, "stages": outcome.stages, "blocks": outcome.blocks, "bytes": outcome.bytes,
           "migrator_downtime_s": outcome.downtime_s, "migration_s": t_end - t_start, "tpot_s": tpot}
    if not outcome.committed or outcome.suspended_at is None:
        return row
    t_susp = outcome.suspended_at
    t_commit = t_susp + outcome.downtime_s
    await r.wait_past(t_commit + tpot)
    for o in others[src] + others[dst]:
        await o.wait_past(t_commit)
    p, b = last_before(r.times, t_susp), last_before(r.times, t_start)
    q = first_from(r.times, t_commit + 0.5 * tpot)
    row.update(
        seq_tokens=len(r.req.prompt_token_ids) + (q if q is not None else len(r.times)),
        suspend_s=t_susp - t_start, commit_s=t_commit - t_start,
        gateway_downtime_s=excess(r.times, p, q, tpot), stall_s=excess(r.times, b, q, tpot),
        source_slowdown_gateway=_mean_ratio(others[src], base, (t_start, t_susp)),
    )
    if probe.traces:
        s_steps, d_steps = probe.steps(src), probe.steps(dst)
        w = probe.wall
        wbase, wmig, wcopy = (w(base[0]), w(base[1])), (w(t_start), w(t_commit)), (w(t_start), w(t_susp))
        blocked, blocked_total = loop_blocked(s_steps, *wmig)
        row.update(
            downtime_s=no_batch_gap(s_steps, d_steps, w(t_susp), len(r.req.prompt_token_ids) // 2),
            source_step_s=median_step(s_steps, *wbase),
            source_slowdown=step_slowdown(s_steps, wbase, wcopy),
            destination_slowdown=step_slowdown(d_steps, wbase, wcopy),
            source_blocked_s=blocked, source_blocked_total_s=blocked_total,
            source_blocked_share=loop_blocked(s_steps, *wcopy)[1] / max(t_susp - t_start, 1e-9),
            destination_blocked_s=loop_blocked(d_steps, *wmig)[0],
        )
    return row


def _mean_ratio(others: Sequence[Stream], base: tuple[float, float], during: tuple[float, float]) -> float | None:
    """Mean over `others` of their per-token time at the gateway during / in the baseline window."""
    ratios = [d / b for o in others if (b := per_token(o.times, *base)) and (d := per_token(o.times, *during))]
    return statistics.fmean(ratios) if ratios else None


async def measure_length(
    cluster: RayCluster, ids: tuple[str, str], probe: Probe, shape: RunShape, length: int, max_model_len: int,
    progress: Callable[[str], None] = lambda line: None,
) -> tuple[dict, list[dict]]:
    """Serve r of about `length` tokens and migrate it `shape.repeats` times; (summary, rows)."""
    rng = random.Random(f"o-{shape.seed}-{length}")
    cluster.migrator.clock = time.perf_counter
    others = {iid: [start(cluster, Stream(EngineRequest(f"o{length}-{iid}-{k}", _prompt(rng, shape.other_prompt),
                                                        _greedy(shape.other_max_tokens)), iid))
                    for k in range(shape.others)] for iid in ids}
    everyone = [o for group in others.values() for o in group]
    r = Stream(target_request(shape, length, max_model_len), ids[0])
    prompt = len(r.req.prompt_token_ids)
    try:
        for o in everyone:
            await o.wait_for(2)
        start(cluster, r)
        await r.wait_for(1)
        ttft = r.times[0] - r.submitted
        progress(f"L={length}: prefill of {prompt} tokens {ttft:.2f} s")
        rows, here = [], 0
        for i in range(shape.repeats):
            src, dst = ids[here], ids[1 - here]
            try:
                row = await migrate_once(cluster, probe, r, others, src, dst, shape, length, i)
            except RuntimeError as e:  # r ran out of tokens: fewer repeats at this length
                progress(f"L={length}: stopped after {i} migrations ({e})")
                break
            rows.append(row)
            progress(f"L={length} #{i}: {row['result']}, downtime {_ms(row.get('downtime_s'))} (gateway "
                     f"{_ms(row.get('gateway_downtime_s'))}, migrator {_ms(row['migrator_downtime_s'])}), "
                     f"stall {_ms(row.get('stall_s'))}, {row['stages']} stages, {row['bytes'] / 1e6:.1f} MB, "
                     f"source blocked {_ms(row.get('source_blocked_s'))}, source others "
                     f"x{row.get('source_slowdown') or float('nan'):.2f}")
            if row["result"] == "committed":
                here = 1 - here
    finally:
        cluster.migrator.clock = time.monotonic
        await stop([r, *everyone])
    return summarize(length, prompt, ttft, rows, r.tokens), rows


SUMMARY_KEYS = ("seq_tokens", "downtime_s", "source_step_s", "gateway_downtime_s", "migrator_downtime_s", "stall_s",
                "tpot_s",
                "stages", "blocks", "bytes", "migration_s", "source_slowdown", "destination_slowdown",
                "source_slowdown_gateway", "source_blocked_s", "source_blocked_total_s", "source_blocked_share",
                "destination_blocked_s")


def summarize(length: int, prompt: int, ttft: float, rows: list[dict], tokens: list[int]) -> dict:
    """Medians over the committed migrations of one length."""
    ok = [r for r in rows if r["result"] == "committed"]

    def med(key: str) -> float | None:
        vals = [r[key] for r in ok if r.get(key) is not None]
        return statistics.median(vals) if vals else None

    return {"length": length, "prompt_tokens": prompt, "prefill_s": ttft, "migrations": len(rows),
            "committed": len(ok), **{k: med(k) for k in SUMMARY_KEYS}, "tokens": tokens}


async def run(
    cluster: RayCluster, ids: tuple[str, str], probe: Probe, shape: RunShape, max_model_len: int,
    progress: Callable[[str], None] = lambda line: None,
) -> dict:
    """Every length of `shape` in turn (after an untimed warm-up migration); the run's results."""
    warm = RunShape(lengths=(), repeats=2, others=1, other_prompt=16, other_max_tokens=64, lead=16, max_output=64,
                    settle=1, window=2)
    await measure_length(cluster, ids, probe, warm, min(shape.lengths[0], 96), max_model_len)
    summaries, rows = [], []
    for length in shape.lengths:
        s, rs = await measure_length(cluster, ids, probe, shape, length, max_model_len, progress)
        summaries.append(s)
        rows.extend(rs)
    return {"shape": asdict(shape), "lengths": summaries, "migrations": rows}


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{1000 * v:.0f} ms"
