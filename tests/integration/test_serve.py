"""`flotilla serve` end to end: a real subprocess on a local Ray cluster, driven by the official
`openai` client and raw HTTP, plus its one-line failures."""

import ipaddress
import re
import subprocess
import sys

import httpx
import openai
import psutil
import pytest

from tests.integration.serve_process import ROOT, ServeProcess


@pytest.fixture(scope="module")
def server():
    proc = ServeProcess("--model", "tiny-llama", "--instances", "2").start()
    yield proc
    assert proc.stop() == 0, proc.stderr()
    # the one-line summary on shutdown: requests by finish reason, none left in flight
    assert re.search(r"^flotilla: served [1-9]\d* requests \(.*length \d+.*\); 0 in flight aborted$",
                     proc.stderr(), re.MULTILINE), proc.stderr()


def test_start_up_reports_each_step_with_its_time(server):
    err = server.stderr()
    for line in ("loaded tiny-llama .*", "instance-0 ready", "instance-1 ready",
                 rf"serving tiny-llama at http://127.0.0.1:{server.port}/v1 .*"):
        assert re.search(rf"^flotilla: {line} \[\d+\.\d s\]$", err, re.MULTILINE), (line, err)


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0)


def test_models(client):
    assert [m.id for m in client.models.list().data] == ["tiny-llama"]


def test_completion_streamed_equals_non_streamed_with_usage(client):
    kw = dict(model="tiny-llama", prompt="Once upon a time", max_tokens=12, temperature=0, extra_body={"ignore_eos": True})
    full = client.completions.create(**kw)
    assert full.choices[0].finish_reason == "length"
    assert full.usage.completion_tokens == 12 and full.usage.total_tokens == full.usage.prompt_tokens + 12
    chunks = list(client.completions.create(**kw, stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == full.choices[0].text
    assert chunks[-1].usage.completion_tokens == 12 and chunks[-1].usage.prompt_tokens == full.usage.prompt_tokens


def test_chat_streamed_equals_non_streamed(client):
    kw = dict(model="tiny-llama", messages=[{"role": "user", "content": "Hi there"}], max_tokens=8, temperature=0,
              extra_body={"ignore_eos": True})
    full = client.chat.completions.create(**kw)
    assert full.choices[0].message.role == "assistant" and full.usage.completion_tokens == 8
    chunks = list(client.chat.completions.create(**kw, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == full.choices[0].message.content


def test_token_id_prompt_and_seeded_sampling_are_reproducible(client):
    kw = dict(model="tiny-llama", prompt=[10, 20, 30, 40], max_tokens=10, temperature=1.0, seed=7,
              extra_body={"ignore_eos": True})
    assert client.completions.create(**kw).choices[0].text == client.completions.create(**kw).choices[0].text


@pytest.mark.parametrize("body,status,needle", [
    ({"model": "tiny-llama", "prompt": "x", "max_tokens": 0}, 400, "max_tokens"),
    ({"model": "tiny-llama"}, 400, "prompt"),
    ({"model": "nope", "prompt": "x"}, 404, "nope"),
    ({"model": "tiny-llama", "prompt": "x" * 3000, "max_tokens": 10}, 400, "context"),
    ({"model": "tiny-llama", "prompt": "x", "n": 2}, 400, "n"),
])
def test_bad_requests_get_openai_errors(server, body, status, needle):
    r = httpx.post(f"{server.base_url}/v1/completions", json=body, timeout=30)
    assert r.status_code == status
    err = r.json()["error"]
    assert needle in err["message"] and "Traceback" not in r.text


def test_malformed_json(server):
    r = httpx.post(f"{server.base_url}/v1/chat/completions", content=b"{not json",
                   headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def _loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return (mapped or address).is_loopback


def test_everything_it_started_listens_on_loopback_only(server):
    """The gateway, and its private Ray (GCS, raylet, workers, agents): nothing reachable from
    another host."""
    procs = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
    listening = {(p.name(), c.laddr.ip, c.laddr.port) for p in procs for c in p.net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN}
    assert len({name for name, _, _ in listening}) >= 3  # the gateway, gcs_server, raylet at least
    assert all(_loopback(ip) for _, ip, _ in listening), sorted(listening)


def test_health_and_metrics(server):
    assert httpx.get(f"{server.base_url}/health", timeout=10).status_code == 200
    text = httpx.get(f"{server.base_url}/metrics", timeout=10).text
    assert "flotilla_request_ttft_seconds_count" in text


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "controlplane.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_bad_config_is_one_line_and_exit_2(tmp_path):
    cfg = tmp_path / "f.yaml"
    cfg.write_text("engine:\n  block_size: 0\n")
    r = run_cli("serve", "--config", str(cfg))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "engine.block_size" in r.stderr


def test_unknown_model_is_one_line(tmp_path):
    r = run_cli("serve", "--model", str(tmp_path / "missing"), "--runtime", "local")
    assert r.returncode != 0
    lines = [line for line in r.stderr.splitlines() if not line.startswith("flotilla: loading")]
    assert len(lines) == 1 and "Traceback" not in r.stderr


def test_busy_port_is_one_line(server):
    r = run_cli("serve", "--model", "tiny-llama", "--port", str(server.port))
    assert r.returncode == 2 and "pick another --port" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_smollm2_answers_paris():
    proc = ServeProcess("smollm2-135m", "--instances", "2", "--ask", "What is the capital of France?")
    proc.start()
    try:
        answer = proc.proc.stdout.readline()
    finally:
        assert proc.stop() == 0
    assert "Paris" in answer
