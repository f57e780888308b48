from controlplane.api.formatting import CompletionFormat
from controlplane.api.schemas import CompletionLogprobs, Usage
from instances.types import TokenLogprob
from tests.controlplane.api.fakes import CharTokenizer

USAGE = Usage(prompt_tokens=1, completion_tokens=1, total_tokens=2)


class LossyTokenizer(CharTokenizer):
    """Tokens from 1000 up all read as U+FFFD, as partial UTF-8 bytes do."""

    def id_to_token(self, token_id: int) -> str:
        return "\ufffd" if token_id >= 1000 else chr(token_id)


def test_top_logprobs_with_the_same_text_keep_the_highest():
    fmt = CompletionFormat("cmpl-1", "m", 0, LossyTokenizer(), logprobs=True)
    lps = [TokenLogprob(1001, -0.5, {1002: -2.0, 1001: -0.5, 1003: -1.0, 104: -3.0})]
    body = fmt.response("", lps, "stop", USAGE)
    assert body.choices[0].logprobs == CompletionLogprobs(
        tokens=["\ufffd"], token_logprobs=[-0.5], top_logprobs=[{"\ufffd": -0.5, "h": -3.0}]
    )


def test_no_logprobs_unless_asked():
    fmt = CompletionFormat("cmpl-1", "m", 0, CharTokenizer(), logprobs=False)
    chunk_body = fmt.response("x", [TokenLogprob(120, -0.1)], "stop", USAGE)
    assert chunk_body.choices[0].logprobs is None
