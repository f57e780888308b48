"""GPU specifications for the roofline latency model.

Peak figures are the vendor datasheets' dense (no structured sparsity) FP16/BF16 tensor-core
throughput and memory bandwidth; the datasheets print the sparse figure, twice the dense one, with
an asterisk. Memory capacity is the datasheet figure in GiB (the CUDA-visible amount is slightly
less, e.g. nvidia-smi shows 81,559 MiB on an 80 GB H100; `kv_capacity_blocks` leaves headroom
with its `memory_utilization`).

No kernel reaches the peaks. The default efficiencies are assumptions, to be calibrated against a
profile where one exists:
- compute 0.6: large prefill GEMMs in vLLM/TensorRT-LLM typically reach 50-70% of dense peak
  (model FLOPs utilisation), less for small batches;
- bandwidth 0.8: decode kernels stream weights at 60-85% of peak bandwidth ("MBU", as defined in
  Databricks' "LLM Inference Performance Engineering: Best Practices", 2023), about what a STREAM
  copy reaches on HBM;
- per-step overhead 2 ms: scheduling, input preparation, kernel launches and sampling that do not
  overlap the forward pass (vLLM's CPU time per step is of this order without CUDA graphs; with
  them it is lower).
"""

from __future__ import annotations

from dataclasses import dataclass

from flotilla.errors import ConfigError

TERA = 1e12
GIB = 2**30

DEFAULT_COMPUTE_EFFICIENCY = 0.6
DEFAULT_BANDWIDTH_EFFICIENCY = 0.8
DEFAULT_STEP_OVERHEAD_S = 2e-3


@dataclass(frozen=True)
class GPUSpec:
    """One accelerator.

    peak_flops: dense FP16/BF16 tensor-core FLOP/s. memory_bandwidth: bytes/s. memory_bytes: capacity.
    compute_efficiency, bandwidth_efficiency: fractions of the peaks a serving engine reaches.
    step_overhead_s: fixed time of every step besides the forward pass.
    """

    name: str
    peak_flops: float
    memory_bandwidth: float
    memory_bytes: int
    compute_efficiency: float = DEFAULT_COMPUTE_EFFICIENCY
    bandwidth_efficiency: float = DEFAULT_BANDWIDTH_EFFICIENCY
    step_overhead_s: float = DEFAULT_STEP_OVERHEAD_S

    def __post_init__(self) -> None:
        for field in ("peak_flops", "memory_bandwidth", "memory_bytes"):
            if not getattr(self, field) > 0:
                raise ConfigError(f"GPU {self.name!r}: {field} must be > 0, got {getattr(self, field)}")
        for field in ("compute_efficiency", "bandwidth_efficiency"):
            if not 0 < getattr(self, field) <= 1:
                raise ConfigError(f"GPU {self.name!r}: {field} must be in (0, 1], got {getattr(self, field)}")
        if not self.step_overhead_s >= 0:
            raise ConfigError(f"GPU {self.name!r}: step_overhead_s must be >= 0, got {self.step_overhead_s}")

    @property
    def effective_flops(self) -> float:
        return self.peak_flops * self.compute_efficiency

    @property
    def effective_bandwidth(self) -> float:
        return self.memory_bandwidth * self.bandwidth_efficiency


GPUS: dict[str, GPUSpec] = {
    spec.name.lower(): spec
    for spec in (
        # NVIDIA A10 Tensor Core GPU datasheet: FP16/BF16 tensor 125 TFLOPS (250 with sparsity),
        # 24 GB GDDR6, 600 GB/s.
        GPUSpec("A10", peak_flops=125 * TERA, memory_bandwidth=600e9, memory_bytes=24 * GIB),
        # NVIDIA A100 Tensor Core GPU datasheet, A100 80GB SXM: FP16/BF16 tensor 312 TFLOPS (624 with
        # sparsity), 80 GB HBM2e, 2,039 GB/s (the PCIe card: 1,935 GB/s).
        GPUSpec("A100-80GB", peak_flops=312 * TERA, memory_bandwidth=2039e9, memory_bytes=80 * GIB),
        # NVIDIA H100 Tensor Core GPU datasheet, H100 SXM: FP16/BF16 tensor 1,979 TFLOPS with sparsity,
        # so 989.5 dense; 80 GB HBM3, 3.35 TB/s.
        GPUSpec("H100", peak_flops=989.5 * TERA, memory_bandwidth=3.35e12, memory_bytes=80 * GIB),
        # NVIDIA H200 Tensor Core GPU datasheet, H200 SXM: FP16/BF16 tensor 1,979 TFLOPS with sparsity
        # (the H100's compute), so 989.5 dense; 141 GB HBM3e, 4.8 TB/s.
        GPUSpec("H200", peak_flops=989.5 * TERA, memory_bandwidth=4.8e12, memory_bytes=141 * GIB),
    )
}


def gpu_spec(name: str) -> GPUSpec:
    """The GPU called `name` (case-insensitive); ConfigError listing the known names otherwise."""
    spec = GPUS.get(name.lower())
    if spec is None:
        known = ", ".join(s.name for s in GPUS.values())
        raise ConfigError(f"unknown GPU {name!r}; known GPUs: {known}")
    return spec
