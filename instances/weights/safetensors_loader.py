"""Hugging Face Llama directories: `config.json` plus one or many `*.safetensors` files.

With a `model.safetensors.index.json` the files named in its weight map are read; otherwise every
`*.safetensors` file in the directory is. Tensors keep their stored dtype and HF names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from flotilla.errors import ModelLoadError
from instances.config import ModelConfig

INDEX_FILE = "model.safetensors.index.json"
_LLAMA_TYPES = ("llama",)


def read_hf_config(directory: Path, name: str) -> ModelConfig:
    """ModelConfig from `directory/config.json`; ModelLoadError if missing, malformed or not Llama."""
    raw = _read_json(directory / "config.json", "a Hugging Face model directory needs its config.json")
    model_type = raw.get("model_type")
    if model_type not in _LLAMA_TYPES:
        raise ModelLoadError(
            f"{directory}/config.json has model_type {model_type!r}; Flotilla runs Llama-family "
            f"models (model_type {', '.join(_LLAMA_TYPES)})"
        )
    try:
        return ModelConfig.from_hf_dict(raw, name=name)
    except (KeyError, ValueError, TypeError) as e:
        raise ModelLoadError(f"{directory}/config.json is not a usable Llama config: {e!r}") from e


def read_hf_tensors(directory: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the checkpoint by HF name (RoPE `inv_freq` buffers of old checkpoints dropped)."""
    files = _weight_files(directory)
    out: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            part = load_file(f)
        except (SafetensorError, OSError) as e:
            raise ModelLoadError(f"cannot read {f}: {e}; re-download the checkpoint") from e
        dup = out.keys() & part.keys()
        if dup:
            raise ModelLoadError(f"tensor {sorted(dup)[0]} appears in more than one file of {directory}")
        out.update((k, v) for k, v in part.items() if not k.endswith("rotary_emb.inv_freq"))
    return out


def _weight_files(directory: Path) -> list[Path]:
    index = directory / INDEX_FILE
    if index.is_file():
        weight_map = _read_json(index, "the sharded checkpoint's index").get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ModelLoadError(f"{index} has no weight_map; re-download the checkpoint")
        files = [directory / f for f in sorted(set(weight_map.values()))]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise ModelLoadError(f"{directory} lacks shard(s) {', '.join(missing)} listed in {INDEX_FILE}")
        return files
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise ModelLoadError(
            f"{directory} has no *.safetensors weights; Flotilla loads safetensors (convert .bin "
            "checkpoints with transformers' save_pretrained(safe_serialization=True))"
        )
    return files


def _read_json(path: Path, why: str) -> dict[str, Any]:
    if not path.is_file():
        raise ModelLoadError(f"{path} not found: {why}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:
        raise ModelLoadError(f"{path} is not valid JSON ({e}); fix or re-download it") from e
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} must hold a JSON object")
    return data
