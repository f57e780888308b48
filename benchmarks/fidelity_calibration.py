"""Calibrating the simulator on one served run, for `benchmarks/sim_fidelity.py`.

Two calibration runs, one just before and one just after the measured run (so that a drift of
the shared host's speed over the benchmark does not fall on one side), serve the same trace at the
measured run's rate with other seeds (other requests, other arrival times). From them come:
- `StepNoise`: each instance's measured step-time deviations from the latency model, read from the
  instances' step traces (`cluster.step_trace_dir`) inside the runs' wall-clock windows;
- dispatch delays: the per-request TTFT the simulator still misses once it replays that noise,
  measured TTFT - simulated TTFT, on top of the lone-request dispatch delay (clamped at 0). They
  stand for the serving path's time under load (HTTP, the gateway, the Ray calls and the long poll
  of the first token), which the lone requests see without contention.
The measured run is then predicted from these, and compared; it never feeds the calibration.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from controlplane.observability.serving_metrics import RequestTimeline
from controlplane.runtime.sim.noise import StepNoise
from instances.latency.base import LatencyModel
from instances.step_trace import StepRecord, read_trace


def window_traces(trace_dir: Path, *windows: tuple[float, float]) -> list[list[StepRecord]]:
    """Each instance's step records that ended within one of the (start_s, end_s) wall-clock
    `windows` (bounds included), in step order, one list per trace file in name order.
    FileNotFoundError when the directory holds no trace."""
    paths = sorted(trace_dir.glob("*.csv"))
    if not paths:
        raise FileNotFoundError(f"no step traces in {trace_dir}: was the server started with "
                                f"cluster.step_trace_dir={trace_dir}?")
    return [[r for r in read_trace(p) if any(a <= r.end_s <= b for a, b in windows)] for p in paths]


@dataclass(frozen=True)
class Calibration:
    """What the simulator takes from the calibration run."""

    noise: StepNoise
    dispatch_delays_s: tuple[float, ...]
    residual_ms: dict[str, float]  # P10 / P50 / P90 of measured - simulated TTFT (before the base delay)

    @classmethod
    def measure(cls, traces: Sequence[Sequence[StepRecord]], model: LatencyModel, base_delay_s: float,
                measured: Sequence[Sequence[RequestTimeline]],
                simulate: Callable[[StepNoise], Sequence[Sequence[RequestTimeline]]]) -> Calibration:
        """`measured`: each calibration run's requests in order; `simulate(noise)` simulates the
        same workloads with that noise and the fixed `base_delay_s` (so requests keep their
        arrival order), returning each run's requests in order. Requests that failed on either
        side are left out. ValueError if none is left."""
        noise = StepNoise.measure(traces, model)
        simulated = simulate(noise)
        residuals = [m.ttft_s - s.ttft_s for run_m, run_s in zip(measured, simulated, strict=True)
                     for m, s in zip(run_m, run_s, strict=True) if m.success and s.success]
        if not residuals:
            raise ValueError("no request of the calibration run succeeded on both sides")
        p10, p50, p90 = np.percentile(residuals, [10, 50, 90]) * 1e3
        return cls(noise, tuple(max(0.0, base_delay_s + r) for r in residuals),
                   {"p10": float(p10), "p50": float(p50), "p90": float(p90)})

    def describe(self) -> dict[str, object]:
        delays = np.array(self.dispatch_delays_s) * 1e3
        return {"step_noise": self.noise.describe(), "ttft_residual_ms": self.residual_ms,
                "dispatch_delay_ms": {"p10": float(np.percentile(delays, 10)), "p50": float(np.median(delays)),
                                      "p90": float(np.percentile(delays, 90)), "samples": len(delays)}}
