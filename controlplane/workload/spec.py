"""A workload described by plain values, and the one function that builds it.

The same `WorkloadSpec` always builds the same requests, so a serving run and a simulator run can
share a workload by sharing its spec.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from controlplane.workload.arrivals import with_arrivals
from controlplane.workload.classes import with_high_priority, with_offline
from controlplane.workload.request import TraceRequest
from controlplane.workload.sources import load_trace
from controlplane.workload.tokens import DEFAULT_VOCAB, check_vocab
from controlplane.workload.transforms import check_cap, check_factor, cycle, head, scale_lengths, scale_rate

ARRIVALS = ("poisson", "gamma")


@dataclass(frozen=True)
class WorkloadSpec:
    """What to send and when.

    Source: `trace` (a name from `TRACE_FILES` or a file path) or, when `trace` is None, synthetic
    requests of exactly `input_len` / `output_len` tokens (`num_requests` required).
    Arrivals: a timed trace keeps its own timestamps unless `request_rate` is set; otherwise
    arrivals are drawn at `request_rate` (default inf: all at once, as in vLLM) by the `arrival`
    process with coefficient of variation `cv` (1 for poisson). Then, in this order: the first
    `num_requests` are kept (a shorter trace is repeated, see `transforms.cycle`), arrivals are
    divided by `rate_scale`, and lengths are multiplied by
    `length_scale` and clamped to [1, `max_input_len`] / [1, `max_output_len`].
    `seed` drives arrivals and prompt token ids; `vocab` is the prompt id range [lo, hi).
    Classes (`controlplane.workload.classes`), last: each request is HIGH priority with probability
    `high_priority_fraction`, and OFFLINE requests arrive beside them at `offline_rate` per second.
    Raises ValueError from the constructor on an inconsistent or out-of-range field, so building a
    valid spec can only fail on the trace file itself.
    """

    trace: str | None = None
    input_len: int | None = None
    output_len: int | None = None
    num_requests: int | None = None
    request_rate: float | None = None
    arrival: str = "poisson"
    cv: float = 1.0
    rate_scale: float = 1.0
    length_scale: float = 1.0
    max_input_len: int | None = None
    max_output_len: int | None = None
    seed: int = 0
    vocab: tuple[int, int] = DEFAULT_VOCAB
    high_priority_fraction: float = 0.0
    offline_rate: float = 0.0

    def __post_init__(self) -> None:
        synthetic = self.input_len is not None or self.output_len is not None
        if self.trace is not None and synthetic:
            raise ValueError("give either a trace or synthetic input/output lengths, not both")
        if self.trace is None:
            if self.input_len is None or self.output_len is None:
                raise ValueError("synthetic workloads need both input_len and output_len")
            if self.input_len < 1 or self.output_len < 1:
                raise ValueError("synthetic input_len and output_len must be >= 1")
            if self.num_requests is None:
                raise ValueError("synthetic workloads need num_requests")
        if self.num_requests is not None and self.num_requests < 1:
            raise ValueError(f"num_requests must be >= 1, got {self.num_requests}")
        if self.request_rate is not None and not self.request_rate > 0:
            raise ValueError(f"request rate must be > 0 (inf allowed), got {self.request_rate}")
        if self.arrival not in ARRIVALS:
            raise ValueError(f"arrival must be one of {ARRIVALS}, got {self.arrival!r}")
        if self.arrival == "poisson" and self.cv != 1.0:
            raise ValueError(f"a poisson process has cv 1; use arrival 'gamma' for cv {self.cv}")
        if not (self.cv > 0 and math.isfinite(self.cv)):
            raise ValueError(f"cv must be a positive number, got {self.cv}")
        check_factor("rate scale", self.rate_scale)
        check_factor("length scale", self.length_scale)
        check_cap("max_input_len", self.max_input_len)
        check_cap("max_output_len", self.max_output_len)
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        check_vocab(self.vocab)
        if not 0.0 <= self.high_priority_fraction <= 1.0:
            raise ValueError(f"high_priority_fraction must be in [0, 1], got {self.high_priority_fraction}")
        if not (self.offline_rate >= 0.0 and math.isfinite(self.offline_rate)):
            raise ValueError(f"offline_rate must be a finite number >= 0, got {self.offline_rate}")

    def describe(self) -> dict[str, object]:
        """The spec as JSON-ready values (an infinite rate is written as the string "inf")."""
        out = asdict(self)
        out["vocab"] = list(self.vocab)
        if self.request_rate is not None and math.isinf(self.request_rate):
            out["request_rate"] = "inf"
        return out


def build_workload(spec: WorkloadSpec, data_dir: Path | None = None) -> list[TraceRequest]:
    """The requests `spec` describes, in arrival order (see `WorkloadSpec` for the steps).

    Named traces are looked up in `data_dir` (default: the shared data directory). Raises
    FileNotFoundError for a missing trace file and TraceFormatError (a ValueError) for a malformed one.
    """
    if spec.trace is None:
        assert spec.input_len is not None and spec.output_len is not None  # checked by the spec
        requests = [TraceRequest(0.0, spec.input_len, spec.output_len)] * (spec.num_requests or 0)
        timed = False
    else:
        trace = load_trace(spec.trace, data_dir)
        requests, timed = list(trace.requests), trace.timed
    if spec.num_requests is not None:
        requests = head(requests, spec.num_requests) if spec.num_requests <= len(requests) else cycle(
            requests, spec.num_requests
        )
    if spec.request_rate is not None or not timed:
        rate = math.inf if spec.request_rate is None else spec.request_rate
        requests = with_arrivals(requests, rate, spec.cv, np.random.default_rng(spec.seed))
    requests = scale_rate(requests, spec.rate_scale)
    requests = scale_lengths(requests, spec.length_scale, spec.max_input_len, spec.max_output_len)
    requests = with_high_priority(requests, spec.high_priority_fraction, spec.seed)
    return with_offline(requests, spec.offline_rate, spec.seed)
