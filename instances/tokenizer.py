"""Text <-> token ids, chat templates, and the special tokens an engine needs.

`Tokenizer` wraps a `tokenizers.Tokenizer` (exposed as `.backend`, e.g. for
`tokenizers.decoders.DecodeStream`). It adds BOS itself, per the model's `add_bos` setting, and
never appends EOS. Three sources: a Hugging Face directory (`tokenizer.json`), a GGUF file's
`tokenizer.ggml.*` metadata (byte-level BPE), and a 256-byte vocabulary for the random test model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from gguf import GGUFReader
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import AddedToken, decoders, models, pre_tokenizers
from tokenizers import Tokenizer as Backend
from tokenizers.pre_tokenizers import ByteLevel

from flotilla.errors import ModelLoadError
from instances.weights.gguf_loader import field

# llama.cpp token types (tokenizer.ggml.token_type)
_CONTROL = 3
_USER_DEFINED = 4

# tokenizer.ggml.pre values whose llama.cpp split is "\p{N}" then the GPT-2 regex.
_DIGITS_THEN_BYTE_LEVEL = ("smollm", "starcoder", "refact", "codeshell")
_BYTE_LEVEL_ONLY = ("gpt2",)

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class Tokenizer:
    """A tokenizer with its model's BOS/EOS conventions and chat template."""

    def __init__(
        self,
        backend: Backend,
        *,
        bos_token_id: int | None,
        eos_token_ids: Sequence[int],
        add_bos: bool,
        chat_template: str | None,
    ) -> None:
        """`chat_template` is compiled here; a template that does not parse raises ModelLoadError."""
        self.backend = backend
        self._bos = bos_token_id
        self._eos = tuple(eos_token_ids)
        self._add_bos = add_bos and bos_token_id is not None
        self._template = _compile(chat_template) if chat_template else None

    # ---- constructors -------------------------------------------------------------------

    @classmethod
    def from_file(cls, directory: str | Path) -> Tokenizer:
        """From a Hugging Face directory: `tokenizer.json`, plus `tokenizer_config.json`,
        `chat_template.jinja`, `generation_config.json` and `config.json` where present.

        EOS ids are the union of the tokenizer's eos token and the configs' `eos_token_id`s.
        Without `add_bos_token` in tokenizer_config.json, BOS is added iff tokenizer.json's
        post-processor adds it.
        """
        d = Path(directory)
        if not (d / "tokenizer.json").is_file():
            raise ModelLoadError(
                f"{d} has no tokenizer.json; Flotilla needs the fast-tokenizer file "
                "(write it with transformers' AutoTokenizer.from_pretrained(...).save_pretrained(dir))"
            )
        try:
            backend = Backend.from_file(str(d / "tokenizer.json"))
        except Exception as e:  # the Rust library raises a bare Exception on malformed files
            raise ModelLoadError(f"{d}/tokenizer.json cannot be parsed: {e}") from e
        cfg = _json_or_empty(d / "tokenizer_config.json")
        model_cfg = _json_or_empty(d / "config.json")
        gen_cfg = _json_or_empty(d / "generation_config.json")

        bos_text = _token_text(cfg.get("bos_token"))
        bos = backend.token_to_id(bos_text) if bos_text else model_cfg.get("bos_token_id")
        eos: list[int] = []
        eos_text = _token_text(cfg.get("eos_token"))
        if eos_text and backend.token_to_id(eos_text) is not None:
            eos.append(backend.token_to_id(eos_text))
        for source in (gen_cfg, model_cfg):
            value = source.get("eos_token_id")
            eos += value if isinstance(value, list) else ([] if value is None else [value])
        if "add_bos_token" in cfg:
            add_bos = bool(cfg["add_bos_token"])
        else:
            with_special = backend.encode("a", add_special_tokens=True).ids
            add_bos = bos is not None and with_special[:1] == [bos]
        return cls(
            backend,
            bos_token_id=bos,
            eos_token_ids=list(dict.fromkeys(int(e) for e in eos)),
            add_bos=add_bos,
            chat_template=_hf_chat_template(d, cfg),
        )

    @classmethod
    def from_gguf(cls, reader: GGUFReader) -> Tokenizer:
        """From a GGUF file's byte-level BPE (`tokenizer.ggml.model == "gpt2"`) metadata.

        Tokens typed CONTROL become special added tokens (matched whole, skipped by
        `decode(skip_special_tokens=True)`), USER_DEFINED ones non-special added tokens, as in
        llama.cpp and transformers.
        """
        kind = field(reader, "tokenizer.ggml.model")
        if kind != "gpt2":
            raise ModelLoadError(
                f"GGUF tokenizer model {kind!r} is not supported (only byte-level BPE, 'gpt2'); "
                "load the model's Hugging Face directory with its tokenizer.json instead"
            )
        pre = field(reader, "tokenizer.ggml.pre") or "gpt2"
        if pre in _DIGITS_THEN_BYTE_LEVEL:
            pre_tokenizer = pre_tokenizers.Sequence(
                [pre_tokenizers.Digits(individual_digits=True), ByteLevel(add_prefix_space=False)]
            )
        elif pre in _BYTE_LEVEL_ONLY:
            pre_tokenizer = ByteLevel(add_prefix_space=False)
        else:
            supported = ", ".join(_DIGITS_THEN_BYTE_LEVEL + _BYTE_LEVEL_ONLY)
            raise ModelLoadError(f"GGUF pre-tokenizer {pre!r} is not supported (supported: {supported})")
        tokens: list[str] = field(reader, "tokenizer.ggml.tokens")
        types: list[int] = field(reader, "tokenizer.ggml.token_type") or [1] * len(tokens)
        merges = [tuple(m.split(" ", 1)) for m in field(reader, "tokenizer.ggml.merges") or []]
        bpe = models.BPE(
            vocab={t: i for i, t in enumerate(tokens)}, merges=merges,
            continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False,
        )
        backend = Backend(bpe)
        backend.pre_tokenizer = pre_tokenizer
        backend.decoder = decoders.ByteLevel()
        typed = list(zip(tokens, types, strict=True))
        backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, k in typed if k == _CONTROL])
        backend.add_tokens([AddedToken(t, special=False, normalized=False) for t, k in typed if k == _USER_DEFINED])
        bos = field(reader, "tokenizer.ggml.bos_token_id")
        eos = [field(reader, f"tokenizer.ggml.{k}_token_id") for k in ("eos", "eot", "eom")]
        return cls(
            backend,
            bos_token_id=bos,
            eos_token_ids=list(dict.fromkeys(e for e in eos if e is not None)),
            add_bos=bool(field(reader, "tokenizer.ggml.add_bos_token")),
            chat_template=field(reader, "tokenizer.chat_template"),
        )

    @classmethod
    def byte_level(cls) -> Tokenizer:
        """256 byte tokens (ids 0-255) then `<s>`, `</s>`, `<|im_start|>`, `<|im_end|>` (256-259).

        No merges, so every UTF-8 byte is one token; ChatML template; EOS is `</s>` and
        `<|im_end|>`; BOS `<s>` is not added by `encode`.
        """
        vocab = {c: b for b, c in _bytes_to_unicode().items()}
        backend = Backend(models.BPE(vocab=vocab, merges=[]))
        backend.pre_tokenizer = ByteLevel(add_prefix_space=False, use_regex=False)
        backend.decoder = decoders.ByteLevel()
        specials = ["<s>", "</s>", "<|im_start|>", "<|im_end|>"]
        backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
        return cls(backend, bos_token_id=256, eos_token_ids=(257, 259), add_bos=False,
                   chat_template=CHATML_TEMPLATE)

    # ---- encoding -----------------------------------------------------------------------

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of `text`; with add_special_tokens, BOS first when the model adds one.

        Special-token text in `text` (e.g. `<|im_start|>`) becomes that single token. Runs with
        Python's GIL released (`encode_batch` releases it, `encode` does not), so a long prompt
        tokenized in a worker thread does not stall the caller's event loop.
        """
        ids = self.backend.encode_batch([text], add_special_tokens=False)[0].ids
        if add_special_tokens and self._add_bos:
            return [self._bos, *ids]  # type: ignore[list-item]
        return ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Text of `ids`; special tokens dropped unless skip_special_tokens is False."""
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def id_to_token(self, token_id: int) -> str:
        """The text of one token, as reported in logprobs (a partial UTF-8 byte decodes to U+FFFD)."""
        return self.backend.decode([token_id], skip_special_tokens=False)

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        """Ids that end generation."""
        return self._eos

    @property
    def bos_token_id(self) -> int | None:
        return self._bos

    @property
    def vocab_size(self) -> int:
        """Size of the id space, added tokens included."""
        return self.backend.get_vocab_size(with_added_tokens=True)

    # ---- chat ---------------------------------------------------------------------------

    def apply_chat_template(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True) -> str:
        """The prompt text for `messages` ([{"role": str, "content": str, ...}]).

        Rendered like transformers (sandboxed jinja2, `raise_exception`, `bos_token`/`eos_token`
        variables). ValueError if the tokenizer has no template, a message is malformed, or the
        template rejects the conversation.
        """
        if self._template is None:
            raise ValueError("this model's tokenizer has no chat template; use the completions API")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str):
                raise ValueError(f"messages[{i}] must be an object with a string 'role'")
            if not isinstance(m.get("content"), str):
                raise ValueError(f"messages[{i}].content must be a string")
        try:
            return self._template.render(
                messages=messages,
                add_generation_prompt=add_generation_prompt,
                bos_token=self._token_or_empty(self._bos),
                eos_token=self._token_or_empty(self._eos[0] if self._eos else None),
            )
        except jinja2.TemplateError as e:
            raise ValueError(f"the chat template cannot render these messages: {e}") from e

    def _token_or_empty(self, token_id: int | None) -> str:
        return "" if token_id is None else (self.backend.id_to_token(token_id) or "")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table, the alphabet of ByteLevel pre-tokenization."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    for n, b in enumerate(b for b in range(256) if b not in table):
        table[b] = chr(256 + n)
    return table


def _raise_exception(message: str) -> None:
    raise ValueError(message)


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    """transformers' `tojson` (no HTML escaping, unlike jinja2's builtin)."""
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _compile(source: str) -> jinja2.Template:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as e:
        raise ModelLoadError(f"the model's chat template does not parse: {e}") from e


def _hf_chat_template(d: Path, cfg: dict[str, Any]) -> str | None:
    """`chat_template.jinja` if present, else tokenizer_config's template (the "default" of a list)."""
    jinja_file = d / "chat_template.jinja"
    if jinja_file.is_file():
        return jinja_file.read_text(encoding="utf-8")
    template = cfg.get("chat_template")
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        return named.get("default")
    return template if isinstance(template, str) else None


def _token_text(value: Any) -> str | None:
    """A tokenizer_config special-token entry: a string or an AddedToken dict with "content"."""
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def _json_or_empty(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ModelLoadError(f"{path} is not valid JSON ({e}); fix or re-download it") from e
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} must hold a JSON object")
    return data
