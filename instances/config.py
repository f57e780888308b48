"""Model architecture description shared by the torch model, weight loaders and latency models."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RopeScaling:
    """RoPE frequency scaling as in Hugging Face configs (`rope_scaling`).

    `kind` is one of "none", "linear", "llama3". Only the fields of the chosen kind are used.
    """

    kind: str = "none"
    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192


@dataclass(frozen=True)
class ModelConfig:
    """A Llama-family decoder's shape. `head_dim` defaults to hidden_size // num_attention_heads."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    max_position_embeddings: int
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling = field(default_factory=RopeScaling)
    tie_word_embeddings: bool = False
    head_dim: int = 0
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()
    name: str = "llama"

    def __post_init__(self) -> None:
        if self.head_dim == 0:
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_attention_heads)
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )

    @classmethod
    def from_hf_dict(cls, cfg: dict[str, Any], name: str = "llama") -> ModelConfig:
        """Build from a Hugging Face `config.json` dict of a Llama-family model.

        Reads `rope_theta` + `rope_scaling`, or transformers-5's `rope_parameters` (which holds both).
        """
        params = cfg.get("rope_parameters")
        if isinstance(params, dict) and "rope_theta" not in cfg and "rope_scaling" not in cfg:
            scaling_keys = {k: v for k, v in params.items() if k != "rope_theta"}
            cfg = {**cfg, "rope_theta": params.get("rope_theta", 10000.0), "rope_scaling": scaling_keys}
        rs = cfg.get("rope_scaling") or {}
        kind = rs.get("rope_type", rs.get("type", "none")) if rs else "none"
        if kind not in ("none", "default", "linear", "llama3"):
            raise ValueError(f"unsupported rope_scaling type {kind!r} (supported: linear, llama3)")
        scaling = RopeScaling(
            kind="none" if kind == "default" else kind,
            factor=float(rs.get("factor", 1.0)),
            low_freq_factor=float(rs.get("low_freq_factor", 1.0)),
            high_freq_factor=float(rs.get("high_freq_factor", 4.0)),
            original_max_position_embeddings=int(rs.get("original_max_position_embeddings", 8192)),
        )
        eos = cfg.get("eos_token_id")
        eos_ids = tuple(eos) if isinstance(eos, list) else ((eos,) if eos is not None else ())
        return cls(
            vocab_size=cfg["vocab_size"],
            hidden_size=cfg["hidden_size"],
            intermediate_size=cfg["intermediate_size"],
            num_hidden_layers=cfg["num_hidden_layers"],
            num_attention_heads=cfg["num_attention_heads"],
            num_key_value_heads=cfg.get("num_key_value_heads", cfg["num_attention_heads"]),
            max_position_embeddings=cfg.get("max_position_embeddings", 2048),
            rms_norm_eps=cfg.get("rms_norm_eps", 1e-5),
            rope_theta=cfg.get("rope_theta", 10000.0),
            rope_scaling=scaling,
            tie_word_embeddings=cfg.get("tie_word_embeddings", False),
            head_dim=cfg.get("head_dim") or 0,
            bos_token_id=cfg.get("bos_token_id"),
            eos_token_ids=eos_ids,
            name=name,
        )
