"""The workload model: trace loaders, arrival processes, transforms and prompt token ids.

Product code: the simulator (`flotilla sim`) replays these workloads, and the benchmarks build
theirs with them. `build_workload(WorkloadSpec(...))` is the usual entry point; the pieces are
exported for callers that compose their own workloads (the simulator, engine benchmarks).
"""

from controlplane.workload.arrivals import arrival_times, with_arrivals
from controlplane.workload.loaders import (
    Trace,
    TraceFormatError,
    load_azure_csv,
    load_length_csv,
    load_mooncake_jsonl,
    load_trace_file,
)
from controlplane.workload.request import MOONCAKE_BLOCK_TOKENS, TraceRequest
from controlplane.workload.sources import (
    AZURE_CONV_RATE,
    TRACE_FILES,
    load_trace,
    resolve_trace,
    shared_data_dir,
)
from controlplane.workload.spec import WorkloadSpec, build_workload
from controlplane.workload.tokens import (
    DEFAULT_VOCAB,
    hash_block_token_ids,
    prefix_token_ids,
    prompt_token_ids,
    random_token_ids,
)
from controlplane.workload.transforms import cycle, head, scale_lengths, scale_rate

__all__ = [
    "AZURE_CONV_RATE",
    "DEFAULT_VOCAB",
    "MOONCAKE_BLOCK_TOKENS",
    "TRACE_FILES",
    "Trace",
    "TraceFormatError",
    "TraceRequest",
    "WorkloadSpec",
    "arrival_times",
    "build_workload",
    "cycle",
    "hash_block_token_ids",
    "head",
    "load_azure_csv",
    "load_length_csv",
    "load_mooncake_jsonl",
    "load_trace",
    "load_trace_file",
    "prefix_token_ids",
    "prompt_token_ids",
    "random_token_ids",
    "resolve_trace",
    "scale_lengths",
    "scale_rate",
    "shared_data_dir",
    "with_arrivals",
]
