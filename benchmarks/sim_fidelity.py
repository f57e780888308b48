"""Simulator fidelity: one workload on the real local cluster and in the simulator, compared.

    python -m benchmarks.sim_fidelity [--instances 2] [--latency FILE] [--rate R | --load 0.7] [--quick]

In one run:
1. profile: `flotilla profile`'s default grid on this machine (the real `Engine.step`, one torch
   thread per instance as served) and its DistServe fit, written next to `--out`; or `--latency FILE`;
2. start `flotilla serve --model MODEL --instances N [--set ...]` (Ray runtime) and warm it up;
3. serving overheads, from lone requests (one at a time): the median E2E of one-token requests and
   the median TPOT of `--probe-output`-token requests, less the latency model's prefill and decode
   steps (`fidelity_report.ServingOverheads`);
4. capacity: a Poisson rate sweep of the workload ending with all requests at once; the capacity is
   the highest completed requests/s; the measured run's rate is `--load` x capacity (or `--rate`);
5. the measured run: `--num-requests` requests of the scaled Azure conversation trace, Poisson at
   that rate, through `benchmarks.loadgen` (streaming, `ignore_eos`, outputs of the trace's length),
   with the CPU time of the server's processes, of this client and of the whole machine, and the
   run-queue wait of each instance's step thread (`/proc/.../schedstat`); a calibration run of the
   same size, rate and trace with another seed goes just before it and another just after
   (`fidelity_calibration`); the instances write step traces (`cluster.step_trace_dir`) throughout;
6. the same `WorkloadSpec` in the simulator with the same instance count, engine sizes
   (the serving config's, `--set` included) and scheduling profile (`gateway.default_profile`):
   "calibrated" (the headline: the fitted step times with the step noise the instances' step traces
   recorded during the calibration runs, and the dispatch delays the calibration runs' TTFT still
   needed; nothing from the measured run), and for comparison "profile only" (the fitted step times
   alone); "+ overheads" (with the serving overheads of lone requests); "+ host" (also a
   `HostModel` of this machine, its CPUs shared by the instances' steps and the background CPU of
   the serving path, which is the CPU per request the capacity sweep (or, with `--rate`, the
   warm-up) spent outside the instances' step threads, at the measured run's rate); and
   "+ CPU wait", a diagnostic that stretches every engine step by the step threads' measured
   (CPU + run-queue wait) / CPU of this very run (an attribution of the error, not a prediction);
7. a Markdown table on stdout, `--out` (JSON) and `--plot` (TTFT and TPOT CDFs).
Progress goes to stderr. Exit status: 0 when every measured request succeeded, 1 otherwise, 2 for a
bad flag or config.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import math
import os
import platform
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.cpu_usage import cpu_delta_by_role, session_cpu
from benchmarks.fidelity_calibration import Calibration, window_traces
from benchmarks.fidelity_report import (
    BURST_GAP_S,
    TOLERANCE,
    BatchProbe,
    ScaledLatency,
    ServingOverheads,
    SweepPoint,
    ThreadWait,
    burst_share,
    busiest_threads,
    capacity,
    compare,
    format_table,
    parse_schedstat,
    plot_cdfs,
    single_burst_share,
    verdict,
)
from benchmarks.loadgen import BenchmarkConfig, BenchmarkResult, run_benchmark
from benchmarks.serve_process import ServeProcess
from controlplane.config import FlotillaConfig, load_config, parse_overrides
from controlplane.observability.serving_metrics import BenchmarkMetrics, RequestTimeline
from controlplane.runtime.sim.config import SimConfig
from controlplane.runtime.sim.host import HostModel
from controlplane.runtime.sim.loop import Simulation
from controlplane.runtime.sim.noise import StepNoise
from controlplane.runtime.sim.results import results, run_metrics
from controlplane.runtime.sim.workload import SimWorkload
from controlplane.scheduling.registry import ProfileConfig
from controlplane.serve import engine_config
from controlplane.workload import WorkloadSpec, build_workload
from flotilla.errors import ConfigError
from instances.engine.config import EngineConfig
from instances.latency.base import LatencyModel
from instances.latency.distserve import DistServeModel, FitResult, fit
from instances.latency.rows import write_rows
from instances.models.loader import load_frontend
from instances.profiling.profile import DEFAULT_GRID, DEFAULT_REPEATS, QUICK_GRID, profile

NOISE = "calibrated"
HEADLINE = NOISE


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"sim_fidelity: error: {message}\n")


def parse_rates(text: str) -> tuple[float, ...]:
    """`"20,40,inf"` -> `(20.0, 40.0, inf)`. ValueError unless every item is a number > 0 (inf allowed)."""
    try:
        rates = tuple(float(item) for item in text.split(","))
    except ValueError:
        raise ValueError(f"--sweep-rates takes comma-separated numbers, got {text!r}") from None
    if not all(r > 0 for r in rates):  # NaN fails too
        raise ValueError(f"every --sweep-rates value must be > 0, got {text!r}")
    return rates


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse and check the flags (`--quick` fills the unset sizes with small ones); exits 2 with
    one line on stderr for a bad flag."""
    p = _Parser(prog="python -m benchmarks.sim_fidelity", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny-llama")
    p.add_argument("--instances", type=int, default=2)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for the server, also read by the simulator (repeatable)")
    p.add_argument("--latency", type=Path, help="DistServe coefficients JSON; skips profiling")
    p.add_argument("--repeats", type=int, help=f"profile: timed steps per point (default {DEFAULT_REPEATS})")
    p.add_argument("--trace", default="azure-conv")
    p.add_argument("--num-requests", type=int, help="measured run (default 300)")
    p.add_argument("--length-scale", type=float, help="trace lengths x this (default 0.5; --quick 0.1)")
    p.add_argument("--max-input-len", type=int, help="prompt cap after scaling (default 1024; --quick 512)")
    p.add_argument("--max-output-len", type=int, help="output cap after scaling (default 256; --quick 128)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--load", type=float, default=0.7, help="measured run's rate as a fraction of capacity")
    p.add_argument("--rate", type=float, help="req/s of the measured run; skips the capacity sweep")
    p.add_argument("--sweep-rates", help="Poisson rates of the capacity sweep, inf = all at once "
                   "(default 2,4,8,16)")
    p.add_argument("--sweep-requests", type=int, help="requests per sweep point (default 100)")
    p.add_argument("--probe-requests", type=int, help="lone requests per overhead probe (default 30)")
    p.add_argument("--probe-prompt", type=int, default=64, help="prompt tokens of the probes")
    p.add_argument("--probe-output", type=int, default=64, help="output tokens of the TPOT probe")
    p.add_argument("--probe-concurrency", type=int,
                   help="requests at a time in the batch probe (default 4 per instance)")
    p.add_argument("--warmup-requests", type=int, help="discarded before measuring (default 100)")
    p.add_argument("--quick", action="store_true", help="small profile grid and few requests (a smoke run)")
    p.add_argument("--out", type=Path, help="results JSON (default results/sim_fidelity.json)")
    p.add_argument("--plot", type=Path, help="CDF plot (default docs/img/sim_fidelity.png)")
    args = p.parse_args(argv)
    quick = args.quick
    defaults: dict[str, Any] = {
        "repeats": 3 if quick else DEFAULT_REPEATS, "num_requests": 120 if quick else 300,
        "sweep_rates": "inf" if quick else "2,4,8,16", "sweep_requests": 80 if quick else 100,
        "probe_requests": 5 if quick else 30, "warmup_requests": 20 if quick else 100,
        "length_scale": 0.1 if quick else 0.5, "max_input_len": 512 if quick else 1024,
        "max_output_len": 128 if quick else 256,
        "out": Path("results/sim_fidelity_quick.json" if quick else "results/sim_fidelity.json"),
        "plot": Path("results/sim_fidelity_quick.png" if quick else "docs/img/sim_fidelity.png"),
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    try:
        args.rates = parse_rates(args.sweep_rates)
    except ValueError as exc:
        p.error(str(exc))
    for flag in ("instances", "repeats", "num_requests", "sweep_requests", "probe_requests", "warmup_requests"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be >= 1")
    if args.probe_concurrency is None:
        args.probe_concurrency = 4 * args.instances
    if args.probe_concurrency < args.instances or args.probe_concurrency % args.instances:
        p.error(f"--probe-concurrency must be a multiple of --instances ({args.instances})")
    if args.probe_prompt < 2 or args.probe_output < 2:
        p.error("--probe-prompt and --probe-output must be >= 2")
    if not 0 < args.load <= 1:
        p.error(f"--load must be in (0, 1], got {args.load}")
    if args.rate is not None and not (args.rate > 0 and math.isfinite(args.rate)):
        p.error(f"--rate must be a finite number > 0, got {args.rate}")
    if not (args.length_scale > 0 and math.isfinite(args.length_scale)):
        p.error(f"--length-scale must be a finite number > 0, got {args.length_scale}")
    return args


def _say(message: str) -> None:
    print(f"sim_fidelity: {message}", file=sys.stderr, flush=True)


def serving_config(args: argparse.Namespace) -> FlotillaConfig:
    """The config `flotilla serve` runs with these flags (ConfigError when invalid)."""
    overrides = parse_overrides(args.set)
    overrides.update({"model.name_or_path": args.model, "cluster.instances": args.instances})
    return load_config(overrides=overrides)


def workload(args: argparse.Namespace, rate: float, num_requests: int, seed: int) -> WorkloadSpec:
    return WorkloadSpec(trace=args.trace, num_requests=num_requests, request_rate=rate,
                        length_scale=args.length_scale, max_input_len=args.max_input_len,
                        max_output_len=args.max_output_len, seed=seed)


# ---- step 1: the latency model -------------------------------------------------------------------
def latency_model(args: argparse.Namespace, threads: int) -> tuple[DistServeModel, FitResult | None]:
    if args.latency is not None:
        _say(f"latency model: {args.latency}")
        return DistServeModel.load(args.latency), None
    grid = QUICK_GRID if args.quick else DEFAULT_GRID
    colocated = args.instances - 1
    _say(f"profiling {args.model} ({len(grid.points())} grid points, {args.repeats} repeats, {threads} thread(s), "
         f"{colocated} co-located engine(s) as the cluster runs)")
    rows = profile(args.model, grid=grid, repeats=args.repeats, threads=threads, progress=sys.stderr,
                   colocated=colocated)
    source = (f"benchmarks.sim_fidelity: flotilla profile grid{' (quick)' if args.quick else ''}, {args.model}, "
              f"{threads} thread(s), {args.repeats} repeats, {colocated} co-located, "
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    result = fit(rows, source=source)
    csv_path, json_path = args.out.with_name(args.out.stem + "_profile.csv"), args.out.with_name(
        args.out.stem + "_profile.json")
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    write_rows(csv_path, rows)
    result.save(json_path)
    _say(f"fit: prefill R^2 {result.prefill.r2:.3f} (max error {result.prefill.max_rel_error:.0%}), decode R^2 "
         f"{result.decode.r2:.3f} (max error {result.decode.max_rel_error:.0%}); {csv_path}, {json_path}")
    return result.model, result


# ---- steps 2-5: the real cluster -----------------------------------------------------------------
def _thread_schedstats(pids: Sequence[int]) -> dict[int, dict[int, tuple[int, int]]]:
    out: dict[int, dict[int, tuple[int, int]]] = {}
    for pid in pids:
        threads = {}
        for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
            try:
                threads[int(path.split("/")[-2])] = parse_schedstat(Path(path).read_text())
            except (FileNotFoundError, ProcessLookupError, ValueError):
                continue
        out[pid] = threads
    return out


def _machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (not idle or waiting on I/O), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Measured:
    overheads: ServingOverheads
    batch_probe: BatchProbe
    probe_waits: dict[int, ThreadWait]
    sweep: list[SweepPoint]
    capacity_rps: float | None
    rate: float
    result: BenchmarkResult
    wall_s: float
    cpu_s: dict[str, float]
    step_waits: dict[int, ThreadWait]  # instance pid -> its step thread
    gateway_wait: ThreadWait  # the gateway's busiest thread (its event loop)
    background: BackgroundCpu  # from the sweep (or the warm-up), not from the measured run
    gateway_means_s: dict[str, float]  # the gateway's own mean TTFT / TPOT / E2E over the measured run
    sweep_results: list[BenchmarkResult]  # each sweep point's requests, in order
    windows: dict[str, tuple[float, float]]  # wall-clock (time.time()) start and end of each phase
    calibration: tuple[BenchmarkResult, BenchmarkResult]  # before and after: same trace and rate, other seeds


@dataclass(frozen=True)
class BackgroundCpu:
    """CPU the host spends outside the instances' step threads (gateway, client, the actors' event
    loops, Ray, other tenants), measured at some request rates: `points` of (completed req/s,
    background cores), from the capacity sweep (or the warm-up alone with `--rate`)."""

    points: tuple[tuple[float, float], ...]
    source: str

    def cores_at(self, rate: float) -> float:
        """Background cores at `rate` req/s: the least-squares line through the points (a part that
        does not depend on the rate, such as polling, and a part per request), or the one point's
        cores per request x `rate`; never below 0."""
        rates = np.array([r for r, _ in self.points])
        cores = np.array([c for _, c in self.points])
        if len(set(rates.tolist())) < 2:
            return max(0.0, float(cores.sum() / rates.sum() * rate)) if rates.sum() > 0 else 0.0
        slope, intercept = np.polyfit(rates, cores, 1)
        return max(0.0, float(intercept + slope * rate))


class _CpuMeter:
    """Machine busy CPU and the instances' step-thread CPU between `start()` and `stop()`."""

    def __init__(self, instance_pids: Sequence[int]) -> None:
        self.pids = instance_pids

    def start(self) -> None:
        self._machine, self._sched, self._t0 = _machine_busy_s(), _thread_schedstats(self.pids), time.perf_counter()

    def stop(self) -> float:
        """Cores the machine kept busy outside the step threads since `start()` (CPU s / wall s)."""
        steps = busiest_threads(self._sched, _thread_schedstats(self.pids))
        cpu = _machine_busy_s() - self._machine - sum(w.cpu_s for w in steps.values())
        return max(0.0, cpu) / (time.perf_counter() - self._t0)


_GATEWAY_LATENCIES = ("ttft", "tpot", "e2e")


async def gateway_latency_sums(url: str) -> dict[str, tuple[float, float]]:
    """(sum, count) of the gateway's `flotilla_request_{ttft,tpot,e2e}_seconds` histograms, from
    its `/metrics`: the latencies as the gateway sees them, from a request's arrival at its HTTP
    handler to the tokens it relays."""
    def fetch() -> str:
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
            return response.read().decode()

    sums: dict[str, list[float]] = {name: [0.0, 0.0] for name in _GATEWAY_LATENCIES}
    for family in text_string_to_metric_families(await asyncio.to_thread(fetch)):
        for name in _GATEWAY_LATENCIES:
            if family.name == f"flotilla_request_{name}_seconds":
                for sample in family.samples:
                    if sample.name.endswith("_sum"):
                        sums[name][0] += sample.value
                    elif sample.name.endswith("_count"):
                        sums[name][1] += sample.value
    return {name: (v[0], v[1]) for name, v in sums.items()}


def mean_deltas(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Mean of each histogram over the observations between the two readings (0 with none)."""
    out = {}
    for name, (total, count) in after.items():
        d_total, d_count = total - before[name][0], count - before[name][1]
        out[name] = d_total / d_count if d_count > 0 else 0.0
    return out


async def _lone(url: str, model: str, prompt: int, output: int, n: int, seed: int) -> BenchmarkMetrics:
    spec = WorkloadSpec(input_len=prompt, output_len=output, num_requests=n, request_rate=math.inf, seed=seed)
    result = await run_benchmark(BenchmarkConfig(base_url=url, model=model, workload=spec, max_concurrency=1))
    if result.metrics.completed == 0:
        raise RuntimeError(f"every probe request failed: {result.records[0].outcome.timeline.error}")
    return result.metrics


async def measure(args: argparse.Namespace, server: ServeProcess, model: LatencyModel) -> Measured:
    url = server.base_url
    instance_pids = sorted(pid for pid, p in session_cpu(server.pid).items() if p.role == "instances")
    meter = _CpuMeter(instance_pids)
    _say(f"warm-up: {args.warmup_requests} requests")
    meter.start()
    warm = await run_benchmark(BenchmarkConfig(url, args.model, workload(args, 20.0, args.warmup_requests,
                                                                         args.seed + 1)))
    background = BackgroundCpu(((warm.metrics.request_throughput, meter.stop()),), "warm-up")
    _say(f"serving overheads: {args.probe_requests} lone requests of {args.probe_prompt} tokens -> 1, then -> "
         f"{args.probe_output}")
    one = await _lone(url, args.model, args.probe_prompt, 1, args.probe_requests, args.seed + 2)
    before = _thread_schedstats(instance_pids)
    lone = await _lone(url, args.model, args.probe_prompt, args.probe_output, args.probe_requests, args.seed + 3)
    probe_waits = busiest_threads(before, _thread_schedstats(instance_pids))
    overheads = ServingOverheads.measure(model, args.probe_prompt, args.probe_output, one.e2el.median_ms / 1e3,
                                         lone.tpot.median_ms / 1e3)
    _say(f"lone E2E {one.e2el.median_ms:.2f} ms, lone TPOT {lone.tpot.median_ms:.3f} ms -> step overhead "
         f"{overheads.step_overhead_s * 1e3:.3f} ms, dispatch delay {overheads.dispatch_delay_s * 1e3:.3f} ms")
    c = args.probe_concurrency
    _say(f"batch probe: {4 * c} requests of {args.probe_prompt} -> {args.probe_output} tokens, {c} at a time")
    meter.start()
    spec = WorkloadSpec(input_len=args.probe_prompt, output_len=args.probe_output, num_requests=4 * c,
                        request_rate=math.inf, seed=args.seed + 5)
    batched = await run_benchmark(BenchmarkConfig(url, args.model, spec, max_concurrency=c))
    probe_host = HostModel(float(os.cpu_count() or 1), meter.stop())
    batch_probe = BatchProbe.measure(model, overheads, c, args.instances, batched.metrics.tpot.median_ms / 1e3,
                                     probe_host)
    _say(f"batch TPOT {batch_probe.tpot_s * 1e3:.3f} ms with {probe_host.background_cores:.2f} background cores "
         f"-> {batch_probe.per_seq_s * 1e3:.3f} ms per sequence per step")
    sweep: list[SweepPoint] = []
    sweep_results: list[BenchmarkResult] = []
    windows: dict[str, tuple[float, float]] = {}
    cap = None
    rate = args.rate
    if rate is None:
        points = []
        for offered in args.rates:
            _say(f"capacity sweep: {args.sweep_requests} requests at {offered:g} req/s")
            meter.start()
            t_start = time.time()
            res = await run_benchmark(BenchmarkConfig(url, args.model, workload(args, offered, args.sweep_requests,
                                                                                args.seed + 4)))
            windows[f"sweep {offered:g}"] = (t_start, time.time())
            points.append((res.metrics.request_throughput, meter.stop()))
            sweep.append(SweepPoint.of(offered, res.metrics))
            sweep_results.append(res)
            _say(f"  -> {res.metrics.request_throughput:.1f} req/s completed, median TTFT "
                 f"{res.metrics.ttft.median_ms:.1f} ms, TPOT {res.metrics.tpot.median_ms:.2f} ms")
        background = BackgroundCpu(tuple(points), "capacity sweep")
        cap = capacity(sweep)
        rate = args.load * cap
        _say(f"capacity {cap:.1f} req/s; measured run at {args.load:.0%} of it: {rate:.1f} req/s")
    async def calibration_run(seed: int, name: str) -> BenchmarkResult:
        _say(f"{name}: {args.num_requests} requests, Poisson {rate:.1f} req/s (seed {seed})")
        start = time.time()
        res = await run_benchmark(BenchmarkConfig(url, args.model, workload(args, rate, args.num_requests, seed)),
                                  progress=sys.stderr)
        windows[name] = (start, time.time())
        return res

    before = await calibration_run(args.seed + 6, "calibration before")
    spec = workload(args, rate, args.num_requests, args.seed)
    _say(f"measured run: {args.num_requests} requests, Poisson {rate:.1f} req/s")
    watched = [*instance_pids, server.pid]
    gateway_before = await gateway_latency_sums(url)
    cpu_before, client_before = session_cpu(server.pid), time.process_time()
    machine_before, sched_before, t0 = _machine_busy_s(), _thread_schedstats(watched), time.perf_counter()
    t_start = time.time()
    result = await run_benchmark(BenchmarkConfig(url, args.model, spec), progress=sys.stderr)
    wall = time.perf_counter() - t0
    windows["measured"] = (t_start, time.time())
    waits = busiest_threads(sched_before, _thread_schedstats(watched))
    gateway_wait = waits.pop(server.pid, ThreadWait(0.0, 0.0))
    step_waits = waits
    cpu_s = cpu_delta_by_role(cpu_before, session_cpu(server.pid))
    cpu_s["client"] = time.process_time() - client_before
    cpu_s["machine"] = _machine_busy_s() - machine_before
    cpu_s["other"] = max(0.0, cpu_s["machine"] - sum(cpu_s[k] for k in ("gateway", "instances", "ray", "client")))
    gateway_means = mean_deltas(gateway_before, await gateway_latency_sums(url))
    calibration = (before, await calibration_run(args.seed + 7, "calibration after"))
    return Measured(overheads, batch_probe, probe_waits, sweep, cap, rate, result, wall, cpu_s, step_waits, gateway_wait,
                    background, gateway_means, sweep_results, windows, calibration)


def step_trace_dir(args: argparse.Namespace) -> Path:
    """Where the served instances write their step traces (next to `--out`)."""
    return args.out.with_name(args.out.stem + "_steps")


# ---- step 6: the simulator -----------------------------------------------------------------------
@dataclass(frozen=True)
class Simulated:
    metrics: BenchmarkMetrics
    timelines: list[RequestTimeline]
    results: dict[str, Any]


def simulate(spec: WorkloadSpec, instances: int, policy: str, profile_config: ProfileConfig, engine: EngineConfig,
             latency: LatencyModel, seed: int, dispatch_delay_s: float = 0.0,
             step_overhead_s: float = 0.0, host: HostModel | None = None,
             step_overhead_per_seq_s: float = 0.0, noise: StepNoise | None = None,
             dispatch_delays_s: tuple[float, ...] = ()) -> Simulated:
    """Simulate `spec` on `instances` engines of `engine` sizes placed by `profile_config`."""
    config = SimConfig(instances=instances, policy=policy, profile=profile_config, engine=engine, latency=latency,
                       seed=seed, dispatch_delay_s=dispatch_delay_s, step_overhead_s=step_overhead_s, host=host,
                       step_overhead_per_seq_s=step_overhead_per_seq_s, noise=noise,
                       dispatch_delays_s=dispatch_delays_s)
    run = Simulation(config, SimWorkload(build_workload(spec), seed=spec.seed, vocab=spec.vocab)).run()
    return Simulated(run_metrics(config, run), run.recorder.timelines(), results(config, run, spec.describe()))


def mean_stretch(waits: dict[int, ThreadWait]) -> float:
    """(CPU + run-queue wait) / CPU over the given threads together (1 when they used no CPU)."""
    cpu = sum(w.cpu_s for w in waits.values())
    return (cpu + sum(w.wait_s for w in waits.values())) / cpu if cpu > 0 else 1.0


def calibrate(args: argparse.Namespace, config: FlotillaConfig, engine: EngineConfig, model: LatencyModel,
              m: Measured) -> Calibration:
    """Step noise and dispatch delays from the calibration run (`fidelity_calibration`)."""
    policy = config.gateway.default_profile
    profile_config = config.scheduling.profiles[policy]

    def run(noise: StepNoise) -> list[list[RequestTimeline]]:
        return [simulate(c.config.workload, args.instances, policy, profile_config, engine, model, args.seed,
                         m.overheads.dispatch_delay_s, noise=noise).timelines for c in m.calibration]

    traces = window_traces(step_trace_dir(args), m.windows["calibration before"], m.windows["calibration after"])
    return Calibration.measure(traces, model, m.overheads.dispatch_delay_s,
                               [[r.outcome.timeline for r in c.records] for c in m.calibration], run)


def variants(args: argparse.Namespace, config: FlotillaConfig, engine: EngineConfig, model: LatencyModel,
             m: Measured, cal: Calibration) -> dict[str, Simulated]:
    policy = config.gateway.default_profile
    profile_config = config.scheduling.profiles[policy]
    spec = m.result.config.workload
    o = m.overheads

    def run(latency: LatencyModel, overheads: bool, host: HostModel | None = None) -> Simulated:
        return simulate(spec, args.instances, policy, profile_config, engine, latency, args.seed,
                        o.dispatch_delay_s if overheads else 0.0, o.step_overhead_s if overheads else 0.0, host,
                        m.batch_probe.per_seq_s if host is not None else 0.0)

    return {
        "profile only": run(model, False),
        "+ overheads": run(model, True),
        "+ host": run(model, True, host_model(m)),
        "+ CPU wait": run(ScaledLatency(model, mean_stretch(m.step_waits)), True),
        NOISE: simulate(spec, args.instances, policy, profile_config, engine, model, args.seed,
                        noise=cal.noise, dispatch_delays_s=cal.dispatch_delays_s),
    }


def host_model(m: Measured) -> HostModel:
    """This machine's CPUs, shared by the instances' steps and the background CPU the calibration
    requests cost, at the measured run's request rate."""
    return HostModel(cores=float(os.cpu_count() or 1), background_cores=m.background.cores_at(m.rate))


# ---- step 7: report ------------------------------------------------------------------------------
def _latencies(timelines: Sequence[RequestTimeline]) -> dict[str, list[float]]:
    ok = [t for t in timelines if t.success]
    return {"ttft_s": [round(t.ttft_s, 6) for t in ok],
            "tpot_s": [round(v, 6) for t in ok if (v := t.tpot_s) is not None]}


def _json_rate(rate: float) -> float | str:
    return "inf" if math.isinf(rate) else rate


def payload(args: argparse.Namespace, settings: dict[str, Any], engine: EngineConfig, model: DistServeModel,
            fitted: FitResult | None, m: Measured, sims: dict[str, Simulated],
            cal: Calibration) -> dict[str, Any]:
    wall = m.wall_s
    comparisons = {name: [{**asdict(c), "rel_error": c.rel_error, "checked": c.checked, "within": c.within}
                          for c in compare(m.result.metrics, s.metrics)] for name, s in sims.items()}
    within, checked = verdict(compare(m.result.metrics, sims[HEADLINE].metrics))
    return {
        "settings": settings,
        "engine": asdict(engine),
        "latency_model": model.describe(),
        "profile_fit": None if fitted is None else {"prefill": asdict(fitted.prefill), "decode": asdict(fitted.decode)},
        "serving_overheads": asdict(m.overheads),
        "batch_probe": asdict(m.batch_probe),
        "probe_step_thread_stretch": mean_stretch(m.probe_waits),
        "background_cpu": {**asdict(m.background), "host": asdict(host_model(m))},
        "sweep": [{**asdict(p), "offered_rps": _json_rate(p.offered_rps)} for p in m.sweep],
        "windows": m.windows,
        "calibration": {"runs": [{"workload": c.config.workload.describe(), "metrics": asdict(c.metrics)}
                                 for c in m.calibration], **cal.describe()},
        "sweep_requests": [{"workload": r.config.workload.describe(),
                            **_latencies([x.outcome.timeline for x in r.records])} for r in m.sweep_results],
        "capacity_rps": m.capacity_rps,
        "rate_rps": m.rate,
        "workload": m.result.config.workload.describe(),
        "measured": {"metrics": asdict(m.result.metrics), "wall_s": wall,
                     "cpu_cores": {k: v / wall for k, v in m.cpu_s.items()},
                     "step_threads": {str(pid): {**asdict(w), "stretch": w.stretch} for pid, w in m.step_waits.items()},
                     "step_thread_stretch": mean_stretch(m.step_waits),
                     "gateway_thread": {**asdict(m.gateway_wait), "stretch": m.gateway_wait.stretch},
                     "gateway_means_s": m.gateway_means_s,
                     "burst_share": burst_share([r.outcome.timeline for r in m.result.records]),
                     "single_burst_share": single_burst_share([r.outcome.timeline for r in m.result.records]),
                     **_latencies([r.outcome.timeline for r in m.result.records])},
        "simulated": {name: {"metrics": asdict(s.metrics), "results": s.results, **_latencies(s.timelines)}
                      for name, s in sims.items()},
        "comparison": comparisons,
        "headline": HEADLINE,
        "tolerance": TOLERANCE,
        "checked_within": within,
        "checked": checked,
    }


def summary(m: Measured, fitted: FitResult | None, sims: dict[str, Simulated], cal: Calibration) -> str:
    """The text printed before the table: sweep, overheads, CPU."""
    lines = []
    if m.sweep:
        lines += ["| offered req/s | completed req/s | median TTFT ms | median TPOT ms | median E2E ms |",
                  "|---:|---:|---:|---:|---:|"]
        lines += [f"| {p.offered_rps:g} | {p.achieved_rps:.1f} | {p.ttft_median_ms:.1f} | {p.tpot_median_ms:.2f} | "
                  f"{p.e2e_median_ms:.1f} |" for p in m.sweep]
        lines.append(f"\ncapacity {m.capacity_rps:.1f} req/s; measured run at {m.rate:.1f} req/s\n")
    if fitted is not None:
        lines.append(f"profile fit: prefill R^2 {fitted.prefill.r2:.3f} (max error {fitted.prefill.max_rel_error:.0%}), "
                     f"decode R^2 {fitted.decode.r2:.3f} (max error {fitted.decode.max_rel_error:.0%})")
    o = m.overheads
    lines.append(f"serving overheads (lone requests): E2E of {o.prompt_len} -> 1 tokens {o.one_token_e2e_s * 1e3:.2f} ms "
                 f"(model prefill {o.predicted_prefill_s * 1e3:.2f} ms), TPOT of {o.prompt_len} -> {o.output_len} "
                 f"{o.lone_tpot_s * 1e3:.3f} ms (model decode {o.predicted_decode_s * 1e3:.3f} ms): step overhead "
                 f"{o.step_overhead_s * 1e3:.3f} ms, dispatch delay {o.dispatch_delay_s * 1e3:.3f} ms"
                 + (f" (clamped at 0: {', '.join(o.clamped)})" if o.clamped else ""))
    b = m.batch_probe
    lines.append(f"batch probe: {b.concurrency} at a time over {b.instances} instances, TPOT {b.tpot_s * 1e3:.3f} ms "
                 f"with {b.background_cores:.2f} background cores (step rate {b.rate:.2f}; model decode "
                 f"{b.predicted_decode_s * 1e3:.3f} ms): {b.per_seq_s * 1e3:.3f} ms per sequence per step")
    cores = {k: v / m.wall_s for k, v in m.cpu_s.items()}
    lines.append("measured run CPU (cores): " + ", ".join(f"{k} {v:.2f}" for k, v in cores.items())
                 + f"; (CPU + run-queue wait) / CPU of the instances' step threads {mean_stretch(m.step_waits):.2f} "
                 f"(lone-request probe: {mean_stretch(m.probe_waits):.2f}), of the gateway's event loop "
                 f"{m.gateway_wait.stretch:.2f}")
    met = m.result.metrics
    gw, sim = m.gateway_means_s, sims[HEADLINE].metrics
    lines.append(f"means (ms) at the client / at the gateway / simulated '{HEADLINE}': TTFT {met.ttft.mean_ms:.1f} / "
                 f"{gw['ttft'] * 1e3:.1f} / {sim.ttft.mean_ms:.1f}, TPOT {met.tpot.mean_ms:.2f} / {gw['tpot'] * 1e3:.2f} / "
                 f"{sim.tpot.mean_ms:.2f}, E2E {met.e2el.mean_ms:.1f} / {gw['e2e'] * 1e3:.1f} / {sim.e2el.mean_ms:.1f}")
    timelines = [r.outcome.timeline for r in m.result.records]
    lines.append(f"measured inter-token gaps under {BURST_GAP_S * 1e3:g} ms (tokens of several steps in one burst): "
                 f"{burst_share(timelines):.0%}; requests whose whole output came in one burst: "
                 f"{single_burst_share(timelines):.0%}")
    host = host_model(m)
    points = ", ".join(f"{c:.2f} at {r:.1f} req/s" for r, c in m.background.points)
    lines.append(f"host model: {host.cores:g} cores, background {host.background_cores:.2f} cores at {m.rate:.1f} "
                 f"req/s (CPU outside the step threads, {m.background.source}: {points})")
    c = cal.describe()
    noise, delay = c["step_noise"], c["dispatch_delay_ms"]
    lines.append(f"calibration runs (before and after, {sum(c.metrics.completed for c in m.calibration)} requests, same "
                 f"rate, other seeds): step noise "
                 f"over {noise['steps']} steps, mean stretch {noise['mean_stretch']:.2f} x the profile, mean gap "
                 f"{noise['mean_gap_s'] * 1e3:.2f} ms; dispatch delays P10/P50/P90 {delay['p10']:.1f} / "
                 f"{delay['p50']:.1f} / {delay['p90']:.1f} ms")
    busy = {name: s.results["busy_fraction"] for name, s in sims.items()}
    lines.append("simulated busy fraction: " + ", ".join(f"{k} {v:.2f}" for k, v in busy.items()))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (see the module docstring); returns the exit status."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        config = serving_config(args)
        engine = engine_config(config, load_frontend(args.model).config)
    except ConfigError as exc:
        print(f"sim_fidelity: error: {exc}", file=sys.stderr)
        return 2
    settings = {
        "command": "python -m benchmarks.sim_fidelity " + " ".join(sys.argv[1:] if argv is None else argv),
        "model": args.model, "instances": args.instances, "set": args.set, "runtime": config.cluster.runtime,
        "scheduling_profile": {config.gateway.default_profile: asdict(config.scheduling.profiles[
            config.gateway.default_profile])},
        "sweep_rates": [_json_rate(r) for r in args.rates], "load": args.load, "quick": args.quick,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpus": os.cpu_count(),
        "platform": platform.platform(), "python": platform.python_version(),
        "loadavg_at_start": list(os.getloadavg()),
    }
    threads = max(1, int(config.cluster.num_cpus_per_instance))
    started = time.perf_counter()
    model, fitted = latency_model(args, threads)
    _say(f"starting flotilla serve --model {args.model} --instances {args.instances} {' '.join(args.set)}")
    serve_args = ["--model", args.model, "--instances", str(args.instances),
                  "--set", f"cluster.step_trace_dir={step_trace_dir(args)}"]
    for old in step_trace_dir(args).glob("*.csv"):
        old.unlink()
    for item in args.set:
        serve_args += ["--set", item]
    with ServeProcess(*serve_args) as server:
        measured = asyncio.run(measure(args, server, model))
    settings["loadavg_at_end"] = list(os.getloadavg())
    _say("simulating the same workload")
    calibration = calibrate(args, config, engine, model, measured)
    sims = variants(args, config, engine, model, measured, calibration)
    settings["wall_s"] = time.perf_counter() - started
    print(summary(measured, fitted, sims, calibration))
    print()
    print(format_table(measured.result.metrics, {k: s.metrics for k, s in sims.items()}, HEADLINE))
    within, checked = verdict(compare(measured.result.metrics, sims[HEADLINE].metrics))
    print(f"\n{within} of {checked} checked figures (TTFT and TPOT at P50 and P90, simulated '{HEADLINE}') are within "
          f"{TOLERANCE:.0%} of measured")
    data = payload(args, settings, engine, model, fitted, measured, sims, calibration)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, allow_nan=False) + "\n")
    w = measured.result.config.workload
    title = (f"{args.model}, {args.instances} instances (Ray) on {os.cpu_count()} CPUs: {w.trace} x{w.length_scale:g} "
             f"lengths, Poisson {measured.rate:.1f} req/s, {w.num_requests} requests")
    plot_cdfs([r.outcome.timeline for r in measured.result.records],
              {k: s.timelines for k, s in sims.items()}, title, args.plot)
    print(f"results: {args.out}\nplot: {args.plot}")
    return 0 if measured.result.metrics.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
