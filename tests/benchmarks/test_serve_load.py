"""End-to-end tests of the load generator against a stub OpenAI-compatible SSE server.

The stub (standard library, in a thread, on a free 127.0.0.1 port) stands in for any external
server. It streams `max_tokens` tokens after FIRST_DELAY_S and then one chunk every GAP_S, ends
the chunked body GAP_S after `data: [DONE]` (so a client that stops reading at [DONE] cannot reuse
the connection), counts the TCP connections it accepts, and behaves by model name:
  "pairs"       - two tokens per chunk, usage chunk when asked for: usage != chunk count
  "no-usage"    - one token per chunk, never a usage chunk
  "fail-odd"    - HTTP 500 for prompts of odd length, otherwise like "pairs"
  "garbage"     - 200, then an event that is not JSON
  "error-event" - 200, then an OpenAI error event
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from time import sleep
from typing import Any

import pytest

from benchmarks.serve_load import BenchmarkConfig, main, run_benchmark
from controlplane.observability.serving_metrics import SLO
from controlplane.workload import WorkloadSpec, build_workload, prompt_token_ids

FIRST_DELAY_S = 0.05
GAP_S = 0.005


@dataclass
class StubState:
    bodies: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class StubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: StubServer

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        state = self.server.state
        with state.lock:
            state.bodies.append(body)
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            self._respond(body)
        finally:
            with state.lock:
                state.in_flight -= 1

    def _respond(self, body: dict[str, object]) -> None:
        model, max_tokens = body["model"], body["max_tokens"]
        assert isinstance(max_tokens, int) and isinstance(body["prompt"], list)
        if self.path != "/v1/completions" or (model == "fail-odd" and len(body["prompt"]) % 2):
            payload = b'{"error": {"message": "boom"}}'
            self.send_response(500)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        sleep(FIRST_DELAY_S)
        if model == "garbage":
            self._event("{not json")
        elif model == "error-event":
            self._event(json.dumps({"error": {"message": "overloaded", "code": 503}}))
        else:
            per_chunk = 1 if model == "no-usage" else 2
            for start in range(0, max_tokens, per_chunk):
                if start:
                    sleep(GAP_S)
                text = "x" * min(per_chunk, max_tokens - start)
                self._event(json.dumps({"choices": [{"index": 0, "text": text}], "usage": None}))
            options = body.get("stream_options")
            if model != "no-usage" and isinstance(options, dict) and options.get("include_usage"):
                usage = {"prompt_tokens": len(body["prompt"]), "completion_tokens": max_tokens}
                self._event(json.dumps({"choices": [], "usage": usage}))
        self._event("[DONE]")
        sleep(GAP_S)
        self.wfile.write(b"0\r\n\r\n")

    def _event(self, data: str) -> None:
        chunk = f"data: {data}\n\n".encode()
        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        self.wfile.flush()


class StubServer(ThreadingHTTPServer):
    daemon_threads = True
    state: StubState

    def process_request(self, request: Any, client_address: Any) -> None:
        """Count the accepted connection, then serve it in its own thread."""
        with self.state.lock:
            self.state.connections += 1
        super().process_request(request, client_address)


@pytest.fixture
def stub() -> Iterator[tuple[str, StubState]]:
    server = StubServer(("127.0.0.1", 0), StubHandler)
    server.state = StubState()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", server.state
    server.shutdown()
    server.server_close()
    thread.join()


async def test_streams_usage_counts_and_concurrency_cap(stub: tuple[str, StubState]) -> None:
    url, state = stub
    spec = WorkloadSpec(input_len=7, output_len=5, num_requests=6, seed=4, vocab=(20, 30))
    result = await run_benchmark(BenchmarkConfig(url, "pairs", spec, max_concurrency=3))
    m = result.metrics
    assert (m.completed, m.failed, m.total_input, m.total_output) == (6, 0, 42, 30)
    assert state.max_in_flight == 3
    for record in result.records:
        timeline = record.outcome.timeline
        assert record.outcome.usage_reported
        assert (timeline.output_tokens, len(timeline.chunk_s)) == (5, 3)  # usage, not chunk count
        assert timeline.ttft_s >= FIRST_DELAY_S
        assert timeline.latency_s >= FIRST_DELAY_S + 2 * GAP_S
    expected_prompts = sorted(prompt_token_ids(r, i, 4, (20, 30)) for i, r in enumerate(build_workload(spec)))
    assert sorted(body["prompt"] for body in state.bodies) == expected_prompts
    assert all(len(p) == 7 and all(20 <= t < 30 for t in p) for p in expected_prompts)
    assert {
        json.dumps({k: v for k, v in body.items() if k != "prompt"}, sort_keys=True) for body in state.bodies
    } == {
        json.dumps(
            {
                "model": "pairs",
                "max_tokens": 5,
                "temperature": 0.0,
                "ignore_eos": True,
                "stream": True,
                "stream_options": {"include_usage": True},
            },
            sort_keys=True,
        )
    }


async def test_counts_chunks_when_the_server_sends_no_usage(stub: tuple[str, StubState]) -> None:
    url, _ = stub
    spec = WorkloadSpec(input_len=3, output_len=4, num_requests=2)
    result = await run_benchmark(BenchmarkConfig(url, "no-usage", spec))
    assert result.metrics.total_output == 8
    assert [(r.outcome.usage_reported, len(r.outcome.timeline.chunk_s)) for r in result.records] == [
        (False, 4),
        (False, 4),
    ]


async def test_failures_are_counted_not_raised(stub: tuple[str, StubState], tmp_path: Path) -> None:
    url, _ = stub
    trace = tmp_path / "lengths.csv"
    trace.write_text("num_prefill_tokens,num_decode_tokens\n3,2\n4,2\n5,2\n6,2\n")
    spec = WorkloadSpec(trace=str(trace))
    result = await run_benchmark(BenchmarkConfig(url, "fail-odd", spec, slo=SLO(ttft_ms=10_000)))
    m = result.metrics
    assert (m.completed, m.failed, m.total_input, m.total_output) == (2, 2, 10, 4)
    assert m.slo_attainment == 0.5
    errors = [r.outcome.timeline.error for r in result.records]
    assert errors == [
        'HTTP 500: {"error": {"message": "boom"}}',
        None,
        'HTTP 500: {"error": {"message": "boom"}}',
        None,
    ]


@pytest.mark.parametrize(
    ("model", "error"),
    [
        ("garbage", "StreamError: invalid JSON event"),
        ("error-event", 'StreamError: server error event: {"message": "overloaded", "code": 503}'),
    ],
)
async def test_broken_streams_fail_the_request(stub: tuple[str, StubState], model: str, error: str) -> None:
    url, _ = stub
    result = await run_benchmark(
        BenchmarkConfig(url, model, WorkloadSpec(input_len=1, output_len=1, num_requests=1))
    )
    assert result.metrics.failed == 1
    assert str(result.records[0].outcome.timeline.error).startswith(error)


async def test_unreachable_server_fails_every_request() -> None:
    spec = WorkloadSpec(input_len=1, output_len=1, num_requests=2)
    result = await run_benchmark(BenchmarkConfig("http://127.0.0.1:9", "m", spec, request_timeout_s=2.0))
    assert result.metrics.failed == 2
    assert [str(r.outcome.timeline.error).split(":")[0] for r in result.records] == [
        "ClientConnectorError"
    ] * 2


async def test_connections_are_kept_alive_and_reused(stub: tuple[str, StubState]) -> None:
    url, state = stub
    spec = WorkloadSpec(input_len=4, output_len=2, num_requests=40)
    result = await run_benchmark(BenchmarkConfig(url, "pairs", spec, max_concurrency=4))
    assert result.metrics.completed == 40
    assert 1 <= state.connections <= 4  # each stream is read past [DONE] to the end of its body


async def test_trace_arrivals_are_respected_and_prefixes_shared(
    stub: tuple[str, StubState], tmp_path: Path
) -> None:
    url, state = stub
    trace = tmp_path / "m.jsonl"
    trace.write_text(
        '{"timestamp": 0, "input_length": 1030, "output_length": 128, "hash_ids": [0, 1, 2]}\n'
        '{"timestamp": 100, "input_length": 900, "output_length": 64, "hash_ids": [0, 5]}\n'
    )
    spec = WorkloadSpec(trace=str(trace), length_scale=1 / 32, rate_scale=2.0)
    result = await run_benchmark(BenchmarkConfig(url, "pairs", spec))
    assert [r.arrival_s for r in result.records] == [0.0, 0.05]
    assert all(r.outcome.timeline.send_s >= r.arrival_s for r in result.records)
    first, second = sorted((b["prompt"] for b in state.bodies), key=len, reverse=True)
    assert (len(first), len(second)) == (32, 28)  # 1030/32 -> 32, 900/32 -> 28; blocks of 16
    assert first[:16] == second[:16] and first[16:28] != second[16:28]
    assert result.metrics.total_output == 4 + 2


def test_cli_writes_table_json_and_plot(
    stub: tuple[str, StubState], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = stub
    out, plot = tmp_path / "r.json", tmp_path / "r.png"
    argv = ["--base-url", url, "--model", "pairs", "--synthetic", "--input-len", "4", "--output-len", "3"]
    argv += [
        "--num-requests",
        "3",
        "--request-rate",
        "100",
        "--slo-ttft-ms",
        "5000",
        "--out",
        str(out),
        "--plot",
        str(plot),
    ]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "Successful requests:                     3" in captured.out
    assert "Request goodput (req/s):" in captured.out
    assert "[serve_load] 3/3 done (0 failed)" in captured.err
    data = json.loads(out.read_text())
    assert data["config"]["workload"]["request_rate"] == 100.0
    assert (data["metrics"]["completed"], data["metrics"]["slo_attainment"]) == (3, 1.0)
    assert [(r["output_tokens"], len(r["chunk_s"]), r["success"]) for r in data["requests"]] == [
        (3, 2, True)
    ] * 3
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: --base-url, --model"),
        (["--trace", "sharegpt", "--synthetic"], "argument --synthetic: not allowed with argument --trace"),
        (["--synthetic", "--input-len", "3"], "--synthetic needs --input-len and --output-len"),
        (["--trace", "sharegpt", "--input-len", "3"], "--input-len/--output-len need --synthetic"),
        (
            ["--trace", "sharegpt", "--arrival", "gamma", "--cv", "2"],
            "--arrival gamma and --cv need a finite --request-rate",
        ),
        (["--trace", "sharegpt", "--arrival", "gamma", "--request-rate", "2"], "--arrival gamma needs --cv"),
        (["--trace", "sharegpt", "--request-rate", "0"], "request rate must be > 0 (inf allowed), got 0.0"),
        (["--trace", "sharegpt", "--length-scale", "-1"], "length scale must be a positive number, got -1.0"),
        (["--trace", "sharegpt", "--max-concurrency", "0"], "max concurrency must be >= 1, got 0"),
        (["--trace", "sharegpt", "--slo-ttft-ms", "0"], "SLO ttft_ms must be a positive number, got 0.0"),
        (
            ["--trace", "sharegpt", "--vocab-range", "5", "2"],
            "vocab range must satisfy 0 <= lo < hi, got [5, 2)",
        ),
        (["--trace", "sharegpt", "--request-rate", "x"], "argument --request-rate: invalid float value: 'x'"),
    ],
)
def test_bad_flags_exit_2_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = [] if not argv else ["--base-url", "http://127.0.0.1:9", "--model", "m"]
    with pytest.raises(SystemExit) as info:
        main(base + argv)
    assert info.value.code == 2
    assert capsys.readouterr().err == f"serve_load: error: {message}\n"


def test_missing_trace_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "none.csv"
    assert main(["--base-url", "http://127.0.0.1:9", "--model", "m", "--trace", str(missing)]) == 2
    assert capsys.readouterr().err == (
        f"serve_load: error: trace file not found: {missing} (named traces: azure-conv, mooncake, sharegpt)\n"
    )


def test_infinite_rate_is_written_as_a_string() -> None:
    assert (
        WorkloadSpec(input_len=1, output_len=1, num_requests=1, request_rate=math.inf).describe()[
            "request_rate"
        ]
        == "inf"
    )
