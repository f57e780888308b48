"""The real gateway over the real in-process cluster (tiny-llama), driven by the official OpenAI client.

A uvicorn server on a free localhost port runs on the test's event loop (the local cluster steps its
engines there too), so clients really connect and really disconnect. Every test ends with the
fixture's invariant: all instances idle with every KV block free, nothing in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
import openai
import pytest
import uvicorn

from controlplane.api.app import create_app
from controlplane.config import FlotillaConfig
from controlplane.observability.metrics import Metrics
from controlplane.runtime.local import LocalCluster
from controlplane.scheduling.registry import build_framework
from instances.engine.config import EngineConfig
from instances.models.loader import LoadedModel, load_model

MODEL = "tiny-llama"
ENGINE = EngineConfig(
    block_size=16, num_blocks=64, max_num_batched_tokens=128, max_num_seqs=8, max_model_len=256
)
PROMPT = "The quick brown fox"
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]


@dataclass
class Served:
    cluster: LocalCluster
    engine: EngineConfig
    metrics: Metrics
    loaded: LoadedModel
    client: openai.AsyncOpenAI
    http: httpx.AsyncClient

    def free_blocks(self) -> dict[str, int]:
        return {v.instance_id: v.free_blocks for v in self.cluster.views()}

    def room(self, prompt: str) -> int:
        """The most output tokens a completion of `prompt` may ask for."""
        return self.engine.max_model_len - len(self.loaded.tokenizer.encode(prompt))

    def busy(self) -> bool:
        return any(v.running or v.waiting for v in self.cluster.views())

    def finished(self, reason: str) -> float | None:
        return self.metrics.registry.get_sample_value(
            "flotilla_requests_total", {"model": MODEL, "finish_reason": reason}
        )


async def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout_s)


@pytest.fixture(scope="module")
def loaded() -> LoadedModel:
    return load_model(MODEL)


@pytest.fixture
async def served(loaded: LoadedModel) -> AsyncIterator[Served]:
    async with serving(loaded, 2, ENGINE) as s:
        yield s


@pytest.fixture
async def served_one_at_a_time(loaded: LoadedModel) -> AsyncIterator[Served]:
    """One instance that runs one request at a time (the others queue in its engine), with a context
    long enough for a request that runs for seconds."""
    engine = dataclasses.replace(ENGINE, max_num_seqs=1, max_model_len=2048, num_blocks=136)
    async with serving(loaded, 1, engine) as s:
        yield s


@contextlib.asynccontextmanager
async def serving(loaded: LoadedModel, num_instances: int, engine: EngineConfig) -> AsyncIterator[Served]:
    cluster = await LocalCluster.create(MODEL, num_instances, engine, loaded=loaded)
    metrics = Metrics()
    app = create_app(
        cluster,
        loaded.tokenizer,
        MODEL,
        engine.max_model_len,
        build_framework(FlotillaConfig().scheduling.profiles),
        "default",
        metrics,
    )
    sock = socket.create_server(("127.0.0.1", 0))
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    await wait_until(lambda: server.started)
    client = openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)
    http = httpx.AsyncClient(base_url=base_url, timeout=30)
    try:
        served = Served(cluster, engine, metrics, loaded, client, http)
        yield served
        everything_free = {v.instance_id: engine.num_blocks for v in cluster.views()}
        await wait_until(lambda: not served.busy() and served.free_blocks() == everything_free)
        assert metrics.registry.get_sample_value("flotilla_requests_in_flight", {"model": MODEL}) in (None, 0)
    finally:
        await http.aclose()
        await client.close()
        server.should_exit = True
        await serving
        await cluster.close()


def _greedy(**extra: object) -> dict[str, object]:
    return {"model": MODEL, "temperature": 0, "max_tokens": 24, "extra_body": {"ignore_eos": True}, **extra}


async def test_completion_streamed_and_not_agree(served: Served):
    full = await served.client.completions.create(prompt=PROMPT, **_greedy())
    [choice] = full.choices
    assert choice.finish_reason == "length"
    assert choice.text
    prompt_tokens = len(served.loaded.tokenizer.encode(PROMPT))
    assert (full.usage.prompt_tokens, full.usage.completion_tokens, full.usage.total_tokens) == (
        prompt_tokens,
        24,
        prompt_tokens + 24,
    )

    stream = await served.client.completions.create(
        prompt=PROMPT, stream=True, stream_options={"include_usage": True}, **_greedy()
    )
    texts, reasons, usages = [], [], []
    async for chunk in stream:
        if chunk.choices:
            texts.append(chunk.choices[0].text)
            reasons.append(chunk.choices[0].finish_reason)
        if chunk.usage is not None:
            usages.append(chunk.usage)
    assert "".join(texts) == choice.text
    assert reasons[-1] == "length" and set(reasons[:-1]) <= {None}
    assert usages == [full.usage]
    assert served.finished("length") == 2


async def test_chat_streamed_and_not_agree(served: Served):
    full = await served.client.chat.completions.create(messages=MESSAGES, **_greedy())
    [choice] = full.choices
    assert choice.message.role == "assistant"
    assert choice.finish_reason == "length"
    tok = served.loaded.tokenizer
    prompt_tokens = len(tok.encode(tok.apply_chat_template(MESSAGES, add_generation_prompt=True), False))
    assert (full.usage.prompt_tokens, full.usage.completion_tokens) == (prompt_tokens, 24)

    stream = await served.client.chat.completions.create(
        messages=MESSAGES, stream=True, stream_options={"include_usage": True}, **_greedy()
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == choice.message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage == full.usage


async def test_greedy_text_is_the_same_on_every_instance(served: Served):
    texts = set()
    for _ in range(6):  # power-of-two over two idle instances visits both
        texts.add((await served.client.completions.create(prompt=PROMPT, **_greedy())).choices[0].text)
    assert len(texts) == 1


async def test_token_id_prompt_equals_text_prompt(served: Served):
    ids = served.loaded.tokenizer.encode(PROMPT)
    by_text = await served.client.completions.create(prompt=PROMPT, **_greedy())
    by_ids = await served.client.completions.create(prompt=ids, **_greedy())
    assert by_ids.choices[0].text == by_text.choices[0].text


async def test_logprobs(served: Served):
    resp = await served.client.completions.create(prompt=PROMPT, logprobs=3, **_greedy(max_tokens=4))
    lp = resp.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 4
    for token, logprob, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs, strict=True):
        assert logprob <= 0
        assert len(top) <= 3
        # greedy: the sampled token is the most likely one
        assert top[token] == pytest.approx(logprob) == pytest.approx(max(top.values()))


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        ({"max_tokens": 0}, openai.BadRequestError, "max_tokens: Input should be greater than or equal to 1"),
        ({"max_tokens": 250}, openai.BadRequestError, "maximum context length is 256 tokens, but 269"),
        ({"n": 2}, openai.BadRequestError, "only n=1 is supported"),
        ({"temperature": -0.5}, openai.BadRequestError, "temperature: Input should be greater than or equal"),
        ({"prompt": [300]}, openai.BadRequestError, "token id 300 is out of range"),
        ({"prompt": "x" * 300}, openai.BadRequestError, "the prompt has 300 tokens"),
        ({"model": "gpt-4o"}, openai.NotFoundError, "model 'gpt-4o' does not exist"),
    ],
)
async def test_bad_completion_requests(served: Served, kwargs, error, fragment):
    with pytest.raises(error) as info:
        await served.client.completions.create(**{"model": MODEL, "prompt": PROMPT, **kwargs})
    assert fragment in info.value.message
    assert not served.busy()


async def test_bad_chat_request(served: Served):
    parts = [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]
    with pytest.raises(openai.BadRequestError) as info:
        await served.client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": parts}]
        )
    assert info.value.status_code == 400
    assert "messages.0.content: only text content parts" in info.value.message


async def test_malformed_json(served: Served):
    resp = await served.http.post(
        "/v1/chat/completions", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert resp.status_code == 400
    assert resp.json()["error"]["type"] == "invalid_request_error"


async def test_models_health_metrics(served: Served):
    models = await served.client.models.list()
    assert [m.id for m in models.data] == [MODEL]
    health = await served.http.get("/health")
    assert health.json() == {"status": "ok", "instances": 2, "healthy_instances": 2, "draining_instances": 0}
    await served.client.completions.create(prompt=PROMPT, **_greedy(max_tokens=2))
    metrics = (await served.http.get("/metrics")).text
    assert 'flotilla_instance_free_blocks{instance="instance-0"} 64.0' in metrics
    assert 'flotilla_requests_total{finish_reason="length",model="tiny-llama"} 1.0' in metrics
    assert "flotilla_scheduling_decision_seconds_count 1.0" in metrics


async def test_stream_disconnect_aborts_and_frees_blocks(served: Served):
    initial = served.free_blocks()
    stream = await served.client.completions.create(
        prompt=PROMPT, stream=True, **_greedy(max_tokens=served.room(PROMPT))
    )
    received = 0
    async for _ in stream:
        received += 1
        if received == 3:
            break
    assert served.busy()
    assert served.free_blocks() != initial
    await stream.close()
    await wait_until(lambda: not served.busy() and served.free_blocks() == initial)
    await wait_until(lambda: served.finished("abort") == 1)
    assert served.finished("length") is None


async def test_non_streaming_disconnect_aborts_and_frees_blocks(served: Served):
    initial = served.free_blocks()
    body = {
        "model": MODEL,
        "prompt": PROMPT,
        "max_tokens": served.room(PROMPT),
        "temperature": 0,
        "ignore_eos": True,
    }
    request = asyncio.create_task(served.http.post("/v1/completions", json=body))
    await wait_until(served.busy)
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    await wait_until(lambda: not served.busy() and served.free_blocks() == initial)
    await wait_until(lambda: served.finished("abort") == 1)
    assert served.finished("length") is None


async def test_queued_requests_are_served_by_class_then_ttft_deadline(served_one_at_a_time: Served):
    """While a long request holds the only slot, five requests queue, each sent after the previous is
    queued; once the slot frees they run one at a time (so finish in the order served): high first,
    then normal by TTFT deadline (none: last), low, and offline work last, which still completes."""
    served = served_one_at_a_time

    def waiting() -> int:
        [instance] = served.cluster.views()
        return instance.waiting

    blocker = await served.client.completions.create(
        prompt=PROMPT, stream=True, **_greedy(max_tokens=served.room(PROMPT))
    )
    await wait_until(lambda: served.cluster.views()[0].running == 1)
    finished: list[str] = []

    async def send(name: str, extra: dict[str, object]) -> None:
        resp = await served.client.completions.create(
            prompt=PROMPT, **_greedy(max_tokens=16, extra_body={"ignore_eos": True, **extra})
        )
        assert resp.choices[0].finish_reason == "length"
        finished.append(name)

    # sent in the reverse of their service order, each queued before the next is sent
    queue = [
        ("offline", {"offline": True}),
        ("low", {"priority": "low"}),
        ("normal", {}),
        ("normal with a TTFT SLO", {"slo": {"ttft_ms": 60_000, "tpot_ms": 1_000}}),
        ("high", {"priority": "high"}),
    ]
    tasks = []
    for queued, (name, extra) in enumerate(queue, start=1):
        tasks.append(asyncio.create_task(send(name, extra)))
        await wait_until(lambda n=queued: waiting() == n)
    assert not finished and served.cluster.views()[0].running == 1
    await blocker.close()  # frees the only slot: the queue is served in the engine's order
    await asyncio.gather(*tasks)
    assert finished == ["high", "normal with a TTFT SLO", "normal", "low", "offline"]
    assert served.finished("length") == len(queue)


def _scrape(text: str, name: str) -> dict[str, float]:
    """engine -> value of the `name` samples in a Prometheus exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    return {s.labels["engine"]: s.value for f in text_string_to_metric_families(text) for s in f.samples
            if s.name == name and s.labels.get("model_name") == MODEL}


async def test_the_vllm_gauges_move_under_load_and_return_to_idle(served_one_at_a_time: Served):
    """What llm-d's endpoint picker reads: running, waiting and KV usage, scraped from /metrics."""
    s = served_one_at_a_time
    sent = [asyncio.create_task(s.client.completions.create(prompt=f"{PROMPT} {i}", **_greedy(max_tokens=200)))
            for i in range(3)]
    await wait_until(lambda: sum(v.running + v.waiting for v in s.cluster.views()) == 3)
    busy = (await s.http.get("/metrics")).text
    assert _scrape(busy, "vllm:num_requests_running") == {"instance-0": 1}
    assert _scrape(busy, "vllm:num_requests_waiting") == {"instance-0": 2}
    assert 0 < _scrape(busy, "vllm:kv_cache_usage_perc")["instance-0"] < 1
    await asyncio.gather(*sent)
    await wait_until(lambda: not s.busy())
    idle = (await s.http.get("/metrics")).text
    assert _scrape(idle, "vllm:num_requests_running") == _scrape(idle, "vllm:num_requests_waiting") == {"instance-0": 0}
    assert _scrape(idle, "vllm:kv_cache_usage_perc") == {"instance-0": 0}
    assert _scrape(idle, "vllm:generation_tokens_total") == {"instance-0": 600}
    assert _scrape(idle, "vllm:time_to_first_token_seconds_count") == {"instance-0": 3}
