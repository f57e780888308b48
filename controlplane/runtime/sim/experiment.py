"""The Python API for simulation experiments: one frozen `Experiment` in, results out.

    from controlplane.workload import WorkloadSpec
    from controlplane.runtime.sim.experiment import Experiment, run_experiment
    outcome = run_experiment(Experiment(WorkloadSpec(trace="azure-conv"), policy="infaas", instances=16))
    outcome.results["ttft"]["p99"]

Defaults are Llumnix's evaluation setting: A10 (24 GB) instances serving Llama-2-7B, priced by the
roofline model; give `latency_file` (DistServe-form coefficients, e.g. from `flotilla profile`)
to price steps by a fitted model instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from controlplane.observability.serving_metrics import SLO, RequestTimeline
from controlplane.runtime.sim.config import SimConfig
from controlplane.runtime.sim.loop import Progress, Simulation
from controlplane.runtime.sim.migration import MigrationModel
from controlplane.runtime.sim.results import results
from controlplane.runtime.sim.workload import SimWorkload
from controlplane.scheduling.policies import policy_migration, policy_profile
from controlplane.scheduling.registry import PluginSettings
from controlplane.workload import WorkloadSpec, build_workload
from instances.engine.config import DEFAULT_HIGH_PRIORITY_PREFILL_TOKENS, EngineConfig
from instances.latency import build_latency_model, gpu_spec, kv_capacity_blocks, model_spec


@dataclass(frozen=True)
class Experiment:
    """One simulated run. Engine sizes follow vLLM's defaults; `num_blocks` None means as many KV
    blocks as fit beside the weights on `gpu` (90% of its memory)."""

    workload: WorkloadSpec
    policy: str = "round-robin"
    instances: int = 16
    gpu: str = "A10"
    model: str = "llama-2-7b"
    latency_file: str | None = None
    block_size: int = 16
    num_blocks: int | None = None
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 2048
    max_model_len: int = 4096
    high_priority_prefill_tokens: int | None = DEFAULT_HIGH_PRIORITY_PREFILL_TOKENS
    seed: int = 0
    slo: SLO | None = None
    max_run_steps: int = 256  # see SimConfig: speed only, never the results
    # the settings of plugins by name (`registry.PLUGIN_SETTINGS`; absent: defaults), for the
    # policy's scorers and its migration policy alike (`llumnix`: one headroom for both)
    plugins: PluginSettings = field(default_factory=dict)
    # migration, for a policy that has one (`policies.MIGRATION_OF`): at most this many in flight
    # per instance, a controller tick every interval, and `MigrationModel`'s transfer model
    migration_max_in_flight: int = 1
    migration_interval_s: float = 0.05
    migration_bandwidth_bytes_s: float = 10e9
    migration_overhead_s: float = 0.005


@dataclass(frozen=True)
class Outcome:
    """`results` as `results.json` holds them; `timelines` per request, for plots, and each one's
    priority class (`instances.types.Priority`) in `priorities`."""

    results: dict[str, Any]
    timelines: list[RequestTimeline]
    priorities: list[int]


def engine_config(exp: Experiment) -> EngineConfig:
    """The simulated engine's sizes. Raises ConfigError for an unknown GPU or model, or when the
    model does not fit the GPU; ValueError for inconsistent sizes."""
    num_blocks = exp.num_blocks
    if num_blocks is None:
        num_blocks = kv_capacity_blocks(gpu_spec(exp.gpu), model_spec(exp.model), exp.block_size)
    return EngineConfig(
        block_size=exp.block_size,
        num_blocks=num_blocks,
        max_num_batched_tokens=exp.max_num_batched_tokens,
        max_num_seqs=exp.max_num_seqs,
        max_model_len=min(exp.max_model_len, num_blocks * exp.block_size),
        high_priority_prefill_tokens=exp.high_priority_prefill_tokens,
    )


def sim_config(exp: Experiment) -> SimConfig:
    """The `SimConfig` of `exp` (see `engine_config` for what it raises; ConfigError for an unknown
    policy)."""
    return SimConfig(
        instances=exp.instances,
        policy=exp.policy,
        profile=policy_profile(exp.policy),
        engine=engine_config(exp),
        latency=build_latency_model(exp.gpu, exp.model, exp.latency_file),
        seed=exp.seed,
        slo=exp.slo,
        max_run_steps=exp.max_run_steps,
        migration=migration_model(exp),
        plugins=exp.plugins,
    )


def migration_model(exp: Experiment) -> MigrationModel | None:
    """How `exp`'s policy migrates (None: it only dispatches); blocks are priced with the model's
    KV bytes per token."""
    policy = policy_migration(exp.policy, exp.plugins, exp.migration_max_in_flight)
    if policy is None:
        return None
    return MigrationModel(
        policy=policy,
        kv_bytes_per_block=exp.block_size * model_spec(exp.model).kv_bytes_per_token,
        interval_s=exp.migration_interval_s,
        bandwidth_bytes_s=exp.migration_bandwidth_bytes_s,
        overhead_s=exp.migration_overhead_s,
    )


def run_experiment(exp: Experiment, progress: Progress | None = None) -> Outcome:
    """Build the workload and the cluster of `exp`, simulate, and summarise.

    Raises FileNotFoundError / TraceFormatError for the trace, ConfigError for names and files."""
    config = sim_config(exp)
    workload = SimWorkload(build_workload(exp.workload), seed=exp.workload.seed, vocab=exp.workload.vocab)
    run = Simulation(config, workload).run(progress)
    timelines = run.recorder.timelines()
    summary = results(config, run, workload=exp.workload.describe(), timelines=timelines)
    return Outcome({**summary, "gpu": exp.gpu, "model": exp.model}, timelines, run.recorder.priorities())
