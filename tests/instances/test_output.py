"""Token deltas to text: incremental detokenization, multi-byte characters, stop strings."""

import pytest

from instances.engine.output import OutputProcessor
from instances.tokenizer import Tokenizer
from instances.types import FinishReason, RequestDelta, SamplingParams


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.byte_level()


def feed(proc: OutputProcessor, ids: list[int], *, per_step: int = 1, last_reason=FinishReason.LENGTH):
    """Feed `ids` as deltas of `per_step` tokens; return the chunks."""
    chunks = []
    for i in range(0, len(ids), per_step):
        part = ids[i:i + per_step]
        reason = last_reason if i + per_step >= len(ids) else None
        chunk, stopped = proc.process(RequestDelta("r", i, part, finish_reason=reason))
        chunks.append((chunk, stopped))
        if stopped:
            break
    return chunks


def test_streamed_text_equals_full_decode_with_multibyte_characters(tok):
    text = "héllo wörld — 你好 🚀 done"
    ids = tok.encode(text, add_special_tokens=False)
    proc = OutputProcessor(tok.backend)
    proc.add("r", SamplingParams())
    chunks = feed(proc, ids)
    assert "".join(c.text for c, _ in chunks) == text
    assert all("\ufffd" not in c.text for c, _ in chunks)  # never half a character
    assert chunks[-1][0].finish_reason is FinishReason.LENGTH


def test_stop_string_cuts_text_and_tokens(tok):
    ids = tok.encode("The answer is 42.\nQ: next", add_special_tokens=False)
    proc = OutputProcessor(tok.backend)
    proc.add("r", SamplingParams(stop=("\nQ:",)))
    chunks = feed(proc, ids, last_reason=None)
    text = "".join(c.text for c, _ in chunks)
    assert text == "The answer is 42."
    last, stopped = chunks[-1]
    assert stopped and last.finish_reason is FinishReason.STOP
    # tokens up to and including the one that completed "\nQ:" are reported
    assert sum(len(c.token_ids) for c, _ in chunks) == len(tok.encode("The answer is 42.\nQ:", add_special_tokens=False))


def test_text_that_may_start_a_stop_string_is_held_back(tok):
    proc = OutputProcessor(tok.backend)
    proc.add("r", SamplingParams(stop=("END",)))
    texts = [c.text for c, _ in feed(proc, tok.encode("abcEN", add_special_tokens=False), last_reason=None)]
    assert "".join(texts) == "abc"  # "EN" could still become "END"
    chunk, stopped = proc.process(RequestDelta("r", 5, tok.encode("D", add_special_tokens=False)))
    assert stopped and chunk.text == "" and chunk.finish_reason is FinishReason.STOP


def test_held_back_text_is_flushed_when_the_request_ends_otherwise(tok):
    proc = OutputProcessor(tok.backend)
    proc.add("r", SamplingParams(stop=("END",)))
    chunks = feed(proc, tok.encode("abcEN", add_special_tokens=False), per_step=5)
    assert [c.text for c, _ in chunks] == ["abcEN"]


def test_special_tokens_produce_no_text(tok):
    eos = tok.eos_token_ids[0]
    proc = OutputProcessor(tok.backend)
    proc.add("r", SamplingParams())
    chunk, _ = proc.process(RequestDelta("r", 0, tok.encode("hi", add_special_tokens=False) + [eos],
                                         finish_reason=FinishReason.STOP))
    assert chunk.text == "hi"
