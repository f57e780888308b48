"""`RooflineModel`: step time from FLOPs and bytes moved, for a named GPU and model.

    step_time = step_overhead + max(FLOPs / (peak_flops * compute_eff),
                                    bytes / (bandwidth * bandwidth_eff))

What is counted, for a step of shape s (see `StepShape`), with tokens = s.prefill_tokens + s.decode_batch:

FLOPs
- 2 * body_active_params * tokens: every new token through every layer (attention projections,
  norms, the dense MLP or the router, shared expert and `experts_per_token` routed experts);
- 2 * vocab * hidden * (s.num_prefills + s.decode_batch): LM-head logits for at most one row per
  scheduled sequence (engines compute logits only for the rows they sample from; a chunk that
  does not end its prompt samples nothing, so this is an upper bound);
- 4 * layers * heads * head_dim * (s.prefill_attn + s.decode_context): QK^T and PV, 2 FLOPs per
  multiply-add each, over every (query, key) pair, without halving for the causal mask.

Bytes
- weights read once per step: each layer's dense part, the final norm and the LM head (the few
  input-embedding rows the step gathers are not counted); for MoE, plus per layer the expected
  number of distinct routed experts the step's tokens touch, E * (1 - (1 - k/E) ** tokens) with
  uniform independent routing (k = experts_per_token, E = num_experts), times one expert's bytes;
- KV read: every decode reads its whole context (s.decode_context tokens); every prefill chunk reads
  its context once, estimated as s.num_prefills * s.prefill_attn / s.prefill_tokens tokens (the
  token-weighted mean context times the number of chunks: exact for one chunk or equal chunks);
- KV written: tokens new K/V entries;
  each KV token is kv_bytes_per_token (K and V in all layers). Activations are not counted.

So a long prefill is compute-bound and a decode batch memory-bound.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from instances.latency.hardware import GPUSpec
from instances.latency.model_specs import ModelSpec
from instances.latency.shape import StepShape


@dataclass(frozen=True)
class RooflineTerms:
    """The parts of one step's roofline time."""

    flops: float
    bytes: float
    compute_s: float
    memory_s: float
    overhead_s: float

    @property
    def bound(self) -> str:
        """"compute" or "memory": the larger of the two times."""
        return "compute" if self.compute_s >= self.memory_s else "memory"

    @property
    def seconds(self) -> float:
        return self.overhead_s + max(self.compute_s, self.memory_s)


@dataclass(frozen=True)
class RooflineModel:
    """A `LatencyModel` for `model` on one `gpu` (see the module docstring for the accounting)."""

    gpu: GPUSpec
    model: ModelSpec
    # per-step constants, derived once: step_time runs once per simulated step
    _token_flops: float = field(init=False, repr=False, compare=False)
    _logit_flops: float = field(init=False, repr=False, compare=False)
    _attn_flops: float = field(init=False, repr=False, compare=False)
    _dense_bytes: float = field(init=False, repr=False, compare=False)
    _expert_bytes: float = field(init=False, repr=False, compare=False)
    _kv_bytes: float = field(init=False, repr=False, compare=False)
    _eff_flops: float = field(init=False, repr=False, compare=False)
    _eff_bandwidth: float = field(init=False, repr=False, compare=False)
    _overhead_s: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        m = self.model
        const = {
            "_token_flops": 2.0 * m.body_active_params,
            "_logit_flops": 2.0 * m.embedding_params,
            "_attn_flops": 4.0 * m.num_layers * m.num_heads * m.head_dim,
            "_dense_bytes": float(m.dtype_bytes * (m.num_layers * m.layer_dense_params + m.hidden_size
                                                   + m.embedding_params)),
            "_expert_bytes": float(m.num_layers * m.dtype_bytes * m.expert_params),
            "_kv_bytes": float(m.kv_bytes_per_token),
            "_eff_flops": self.gpu.effective_flops,
            "_eff_bandwidth": self.gpu.effective_bandwidth,
            "_overhead_s": self.gpu.step_overhead_s,
        }
        for name, value in const.items():
            object.__setattr__(self, name, value)

    def experts_touched(self, tokens: int) -> float:
        """Expected distinct routed experts per layer that `tokens` tokens select (0 for a dense model)."""
        e = self.model.num_experts
        if e == 0:
            return 0.0
        return e * (1.0 - (1.0 - self.model.experts_per_token / e) ** tokens)

    def work(self, shape: StepShape) -> tuple[float, float]:
        """(FLOPs, bytes moved) of one step; ValueError for an empty shape."""
        tokens = shape.prefill_tokens + shape.decode_batch
        if tokens == 0:
            raise ValueError("an empty step has no latency: the shape schedules no tokens")
        flops = (self._token_flops * tokens
                 + self._logit_flops * (shape.num_prefills + shape.decode_batch)
                 + self._attn_flops * (shape.prefill_attn + shape.decode_context))
        prefill_ctx = shape.num_prefills * shape.prefill_attn / shape.prefill_tokens if shape.prefill_tokens else 0.0
        kv_tokens = shape.decode_context + prefill_ctx + tokens
        moved = self._dense_bytes
        if self._expert_bytes:
            moved += self._expert_bytes * self.experts_touched(tokens)
        return flops, moved + self._kv_bytes * kv_tokens

    def terms(self, shape: StepShape) -> RooflineTerms:
        """FLOPs, bytes and the times they take; ValueError for an empty shape."""
        flops, moved = self.work(shape)
        return RooflineTerms(flops, moved, flops / self._eff_flops, moved / self._eff_bandwidth, self._overhead_s)

    def step_time(self, shape: StepShape) -> float:
        """`terms(shape).seconds`, without building the terms (called once per simulated step)."""
        flops, moved = self.work(shape)
        return self._overhead_s + max(flops / self._eff_flops, moved / self._eff_bandwidth)

    def describe(self) -> dict[str, Any]:
        return {"kind": "roofline", "gpu": asdict(self.gpu), "model": asdict(self.model)}
