"""The baseline: Hugging Face `transformers` `generate` over padded static batches.

Requests are taken in order, `concurrency` at a time. A batch's prompts are left-padded to its
longest prompt, and the batch generates greedily until its longest requested output is done
(`max_new_tokens = min_new_tokens = ` that length): that is what padded static batching costs.
Only each request's own first `output_len` tokens count as useful output.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch
from transformers import LlamaForCausalLM as HFLlama

from benchmarks.engine_bench.requests import BenchRequest
from benchmarks.engine_bench.result import SideResult

PAD_TOKEN_ID = 0  # any id works: padded positions are masked out by the attention mask


@torch.inference_mode()
def generate_padded(hf: HFLlama, batch: Sequence[BenchRequest]) -> list[list[int]]:
    """Greedy tokens of each request of `batch`, cut to its own `output_len`, from one padded
    `generate` call. A batch of one is unpadded. Raises RuntimeError if generate stops short."""
    longest_prompt = max(len(r.prompt) for r in batch)
    longest_output = max(r.output_len for r in batch)
    input_ids = torch.full((len(batch), longest_prompt), PAD_TOKEN_ID, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for i, r in enumerate(batch):
        input_ids[i, longest_prompt - len(r.prompt) :] = torch.tensor(r.prompt)
        attention_mask[i, longest_prompt - len(r.prompt) :] = 1
    out = hf.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        max_new_tokens=longest_output,
        min_new_tokens=longest_output,
        do_sample=False,
        pad_token_id=PAD_TOKEN_ID,
    )
    generated = out[:, longest_prompt:]
    if generated.shape[1] != longest_output:
        raise RuntimeError(f"generate produced {generated.shape[1]} tokens, {longest_output} were asked for")
    return [generated[i, : r.output_len].tolist() for i, r in enumerate(batch)]


def run_padded(
    hf: HFLlama,
    requests: Sequence[BenchRequest],
    concurrency: int,
    *,
    clock: Callable[[], float] = time.perf_counter,
    on_finish: Callable[[int], None] = lambda done: None,
) -> SideResult:
    """Run `requests` in static batches of `concurrency` (see the module docstring).

    `on_finish(done)` is called once per batch with the number of requests finished so far.
    """
    tokens: dict[str, list[int]] = {}
    computed = 0
    start = clock()
    for lo in range(0, len(requests), concurrency):
        batch = requests[lo : lo + concurrency]
        for r, toks in zip(batch, generate_padded(hf, batch), strict=True):
            tokens[r.request_id] = toks
        computed += len(batch) * max(r.output_len for r in batch)
        on_finish(len(tokens))
    return SideResult(clock() - start, tokens, computed)
