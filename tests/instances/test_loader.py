"""load_model: tiny-llama, HF directories, GGUF files, SmolLM2, and its errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tokenizers import AddedToken, decoders, models, pre_tokenizers
from tokenizers import Tokenizer as Backend
from transformers import LlamaConfig
from transformers import LlamaForCausalLM as HFLlama

from flotilla.errors import ModelLoadError
from instances.config import ModelConfig
from instances.models.llama import LlamaForCausalLM
from instances.models.loader import LoadedModel, load_frontend, load_model, smollm2_path
from tests.instances.gguf_fixtures import VOCAB_SIZE, Q, byte_chars, write_llama_gguf

TOL = 1e-4


def _same_weights(a: torch.nn.Module, b: dict[str, torch.Tensor]) -> bool:
    sa = a.state_dict()
    return sa.keys() == b.keys() and all(torch.equal(sa[k], b[k]) for k in sa)


def test_tiny_llama_shape_and_determinism(tmp_path: Path) -> None:
    lm = load_model("tiny-llama")
    c = lm.config
    assert (c.vocab_size, c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads,
            c.intermediate_size, c.max_position_embeddings, c.rope_theta) == (260, 64, 2, 4, 2, 128, 2048, 10000.0)
    assert lm.name == "tiny-llama" and not lm.model.training
    assert c.eos_token_ids == lm.tokenizer.eos_token_ids == (257, 259)
    assert lm.model.model.embed_tokens.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert torch.equal(lm.model.model.norm.weight, torch.ones(64))
    assert _same_weights(lm.model, load_model("tiny-llama").model.state_dict())
    code = ("import sys, torch; from instances.models.loader import load_model; "
            "torch.save(load_model('tiny-llama').model.state_dict(), sys.argv[1])")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "w.pt")], check=True, cwd=Path(__file__).parents[2])
    assert _same_weights(lm.model, torch.load(tmp_path / "w.pt"))


def test_tiny_llama_dtype() -> None:
    lm = load_model("tiny-llama", dtype=torch.bfloat16)
    assert {p.dtype for p in lm.model.parameters()} == {torch.bfloat16}
    logits = lm.model.forward_dense(torch.tensor([lm.tokenizer.encode("hi")]))
    assert logits.dtype == torch.float32 and logits.shape == (1, 2, 260)


def _tokenizer_files(directory: Path) -> None:
    backend = Backend(models.BPE(vocab={c: i for i, c in enumerate(byte_chars())}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([AddedToken(t, special=True) for t in ("<s>", "</s>")])
    backend.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>"}))


@pytest.mark.parametrize("tied", [False, True])
def test_hf_directory_matches_transformers(tmp_path: Path, tied: bool) -> None:
    """A sharded transformers checkpoint (rope_parameters-style config, linear scaling)."""
    torch.manual_seed(0)
    hf = HFLlama(LlamaConfig(
        vocab_size=260, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, initializer_range=0.2, tie_word_embeddings=tied, bos_token_id=256,
        eos_token_id=257, rope_parameters={"rope_type": "linear", "rope_theta": 500.0, "factor": 3.0},
    )).eval()
    hf.save_pretrained(tmp_path, max_shard_size="40KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    _tokenizer_files(tmp_path)
    lm = load_model(str(tmp_path))
    assert lm.config.tie_word_embeddings is tied and lm.config.rope_theta == 500.0
    assert (lm.config.rope_scaling.kind, lm.config.rope_scaling.factor) == ("linear", 3.0)
    assert lm.config.eos_token_ids == (257,) and lm.tokenizer.bos_token_id == 256
    ids = torch.tensor([lm.tokenizer.encode("Hello, paged world! " * 3)])
    with torch.no_grad():
        assert (lm.model.forward_dense(ids) - hf(ids).logits).abs().max().item() < TOL


def test_gguf_file_loads_into_a_working_model(tmp_path: Path) -> None:
    config = ModelConfig(vocab_size=VOCAB_SIZE, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True)
    reference = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for p in reference.parameters():
            p.normal_(0.0, 0.3, generator=torch.Generator().manual_seed(p.numel()))
    write_llama_gguf(tmp_path / "toy.gguf", config, reference.state_dict(), Q.F32)
    lm = load_model(str(tmp_path / "toy.gguf"))
    assert lm.name == "toy" and lm.model.lm_head.weight is lm.model.model.embed_tokens.weight
    ids = torch.tensor([lm.tokenizer.encode("<|im_start|>the 12 <think>")])
    with torch.no_grad():
        assert (lm.model.forward_dense(ids) - reference.forward_dense(ids)).abs().max().item() < TOL


def test_errors_say_what_to_do(tmp_path: Path) -> None:
    accepted = r"pass 'smollm2-135m', 'tiny-llama', a local Hugging Face Llama directory"
    with pytest.raises(ModelLoadError, match=r"unknown model 'llama-7b'; " + accepted):
        load_model("llama-7b")
    with pytest.raises(ModelLoadError, match=r"does not exist \(models load from local paths only\)"):
        load_model(str(tmp_path / "missing"))
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model("org/model")
    with pytest.raises(ModelLoadError, match=r"config.json not found: a Hugging Face model directory needs"):
        load_model(str(tmp_path))
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="is a file but not a .gguf"):
        load_model(str(tmp_path / "weights.bin"))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    with pytest.raises(ModelLoadError, match="model_type 'qwen2'; Flotilla runs Llama-family"):
        load_model(str(tmp_path))


# ---- the real SmolLM2-135M-Instruct --------------------------------------------------------

PROMPTS = ["The quick brown fox", "1 + 1 = 2, 2 + 2 =", "<|im_start|>user\nName a color.<|im_end|>\n"]


@pytest.fixture(scope="module")
def smollm2() -> LoadedModel:
    return load_model("smollm2-135m")


@pytest.mark.slow
def test_smollm2_config(smollm2: LoadedModel) -> None:
    c = smollm2.config
    assert (c.vocab_size, c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads,
            c.intermediate_size, c.rope_theta, c.tie_word_embeddings, c.eos_token_ids) == (
        49152, 576, 30, 9, 3, 1536, 100000.0, True, (2,))


@pytest.mark.slow
def test_smollm2_logits_match_transformers_gguf_path(smollm2: LoadedModel) -> None:
    """transformers dequantizes the same file with its own kernels and its own q/k un-permutation."""
    from transformers import AutoModelForCausalLM

    path = smollm2_path()
    hf = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    for prompt in PROMPTS:
        ids = torch.tensor([smollm2.tokenizer.encode(prompt)])
        with torch.no_grad():
            assert (smollm2.model.forward_dense(ids) - hf(ids).logits).abs().max().item() < TOL, prompt


@pytest.mark.slow
def test_smollm2_answers_paris(smollm2: LoadedModel) -> None:
    tok = smollm2.tokenizer
    ids = tok.encode(tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}]))
    prompt_len = len(ids)
    with torch.no_grad():
        for _ in range(10):
            ids.append(int(smollm2.model.forward_dense(torch.tensor([ids]))[0, -1].argmax()))
    assert "Paris" in tok.decode(ids[prompt_len:])


@pytest.mark.parametrize("spec", ["tiny-llama", "smollm2-135m"])
def test_frontend_equals_the_full_load_without_weights(spec):
    full, front = load_model(spec), load_frontend(spec)
    assert front.config == full.config and front.name == full.name
    text = "What is the capital of France? 1234"
    assert front.tokenizer.encode(text) == full.tokenizer.encode(text)
