"""Model shapes for the roofline latency model, and how much KV cache fits beside the weights.

Shapes are the public Hugging Face `config.json` figures of each checkpoint (cited per entry).
Parameter counts are derived from the shapes and match the published totals exactly for the Llama
models (e.g. 6,738,415,616 for Llama-2-7B) and to the published rounding for Qwen1.5-MoE-A2.7B
(14.3B total, 2.7B activated).

MoE layout as in Qwen2-MoE: every layer is an MoE layer (`decoder_sparse_step` 1); a layer has a
router (hidden x num_experts), `num_experts` routed SwiGLU experts of `moe_intermediate_size`, of
which a token uses `experts_per_token`, and optionally one always-on shared SwiGLU expert with a
scalar sigmoid gate (hidden x 1). Tensor parallelism is not modelled: one GPU holds the model.
"""

from __future__ import annotations

from dataclasses import dataclass

from flotilla.errors import ConfigError
from instances.latency.hardware import GPUSpec


@dataclass(frozen=True)
class ModelSpec:
    """A decoder-only transformer's shape. Dense when `num_experts == 0` (then `intermediate_size`
    is the SwiGLU MLP width); MoE otherwise (then `intermediate_size` is unused)."""

    name: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_embeddings: bool = False
    dtype_bytes: int = 2
    num_experts: int = 0
    experts_per_token: int = 0
    moe_intermediate_size: int = 0
    shared_expert_intermediate_size: int = 0
    qkv_bias: bool = False  # Qwen: biases on the q, k and v projections
    source: str = ""

    def __post_init__(self) -> None:
        if self.num_experts and not 0 < self.experts_per_token <= self.num_experts:
            raise ConfigError(
                f"model {self.name!r}: experts_per_token must be in [1, {self.num_experts}], "
                f"got {self.experts_per_token}"
            )

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    # ---- parameters ------------------------------------------------------------------------------
    @property
    def attention_params(self) -> int:
        """q, k, v, o projections of one layer (and q/k/v biases when present)."""
        h, q, kv = self.hidden_size, self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        bias = q + 2 * kv if self.qkv_bias else 0
        return h * q + 2 * h * kv + q * h + bias

    @property
    def expert_params(self) -> int:
        """One routed expert of one layer (gate, up and down projections)."""
        return 3 * self.hidden_size * self.moe_intermediate_size

    @property
    def layer_dense_params(self) -> int:
        """Parameters of one layer that every token uses: attention, two RMSNorms and the dense MLP,
        or for MoE the router and the shared expert with its gate (routed experts excluded)."""
        h = self.hidden_size
        common = self.attention_params + 2 * h
        if not self.is_moe:
            return common + 3 * h * self.intermediate_size
        shared = 3 * h * self.shared_expert_intermediate_size
        shared_gate = h if self.shared_expert_intermediate_size else 0
        return common + h * self.num_experts + shared + shared_gate

    @property
    def embedding_params(self) -> int:
        """One vocab x hidden matrix (the input embedding, or the LM head)."""
        return self.vocab_size * self.hidden_size

    @property
    def body_active_params(self) -> int:
        """Parameters a token's forward pass multiplies with, LM head and embeddings excluded: all
        layers (with `experts_per_token` routed experts) and the final norm."""
        per_layer = self.layer_dense_params + self.experts_per_token * self.expert_params
        return self.num_layers * per_layer + self.hidden_size

    @property
    def total_params(self) -> int:
        routed = self.num_layers * self.num_experts * self.expert_params
        embeddings = self.embedding_params * (1 if self.tie_embeddings else 2)
        return self.num_layers * self.layer_dense_params + routed + self.hidden_size + embeddings

    @property
    def active_params(self) -> int:
        """Parameters used per token, embeddings included (the convention of "A2.7B")."""
        return self.body_active_params + self.embedding_params * (1 if self.tie_embeddings else 2)

    # ---- bytes -----------------------------------------------------------------------------------
    @property
    def weight_bytes(self) -> int:
        return self.total_params * self.dtype_bytes

    @property
    def kv_bytes_per_token(self) -> int:
        """K and V of one token in every layer."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * self.dtype_bytes


def _llama(name: str, layers: int, hidden: int, heads: int, kv_heads: int, inter: int, vocab: int,
           source: str) -> ModelSpec:
    return ModelSpec(name, layers, hidden, heads, kv_heads, hidden // heads, inter, vocab, source=source)


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _llama("llama-2-7b", 32, 4096, 32, 32, 11008, 32000,
               "huggingface.co/meta-llama/Llama-2-7b-hf config.json"),
        _llama("llama-3-8b", 32, 4096, 32, 8, 14336, 128256,
               "huggingface.co/meta-llama/Meta-Llama-3-8B config.json"),
        _llama("llama-2-13b", 40, 5120, 40, 40, 13824, 32000,
               "huggingface.co/meta-llama/Llama-2-13b-hf config.json"),
        _llama("llama-2-70b", 80, 8192, 64, 8, 28672, 32000,
               "huggingface.co/meta-llama/Llama-2-70b-hf config.json"),
        ModelSpec(
            "qwen-moe", num_layers=24, hidden_size=2048, num_heads=16, num_kv_heads=16, head_dim=128,
            intermediate_size=5632, vocab_size=151936, num_experts=60, experts_per_token=4,
            moe_intermediate_size=1408, shared_expert_intermediate_size=5632, qkv_bias=True,
            source="huggingface.co/Qwen/Qwen1.5-MoE-A2.7B config.json (model type qwen2_moe)",
        ),
    )
}
DEFAULT_MODEL = "llama-2-7b"


def model_spec(name: str) -> ModelSpec:
    """The model called `name` (case-insensitive); ConfigError listing the known names otherwise."""
    spec = MODELS.get(name.lower())
    if spec is None:
        raise ConfigError(f"unknown model {name!r} for the latency model; known models: {', '.join(MODELS)}")
    return spec


def kv_capacity_blocks(gpu: GPUSpec, model: ModelSpec, block_size: int, memory_utilization: float = 0.9) -> int:
    """KV-cache blocks of `block_size` tokens that fit in `memory_utilization` of the GPU's memory
    beside the weights (activations and the CUDA context are covered by the unused fraction).

    ConfigError when the arguments are out of range or the weights leave no room for one block.
    """
    if block_size < 1:
        raise ConfigError(f"block_size must be >= 1, got {block_size}")
    if not 0 < memory_utilization <= 1:
        raise ConfigError(f"memory_utilization must be in (0, 1], got {memory_utilization}")
    usable = int(gpu.memory_bytes * memory_utilization)
    block_bytes = block_size * model.kv_bytes_per_token
    free = usable - model.weight_bytes
    if free < block_bytes:
        raise ConfigError(
            f"{model.name} does not fit on one {gpu.name}: its weights take {model.weight_bytes / 1e9:.1f} GB "
            f"of the {usable / 1e9:.1f} GB usable ({memory_utilization:.0%} of {gpu.memory_bytes / 1e9:.1f} GB), "
            "leaving no room for the KV cache; pick a larger GPU or a smaller model"
        )
    return free // block_bytes
