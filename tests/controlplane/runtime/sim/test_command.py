"""`flotilla sim` end to end: files written, required keys, one-line errors."""

from __future__ import annotations

import json

import pytest

from controlplane.cli import main

REQUIRED = {"policy", "instances", "requests", "duration_s", "ttft", "tpot", "itl", "e2e",
            "throughput_tokens_per_s", "slo_attainment", "goodput_rps", "preemptions", "instance_seconds"}


def test_sim_writes_results_and_plot(tmp_path, capsys) -> None:
    out = tmp_path / "results.json"
    code = main(["sim", "--trace", "azure-conv", "--policy", "infaas", "--instances", "4", "--num-requests", "60",
                 "--rate-scale", "2", "--slo-ttft-ms", "2000", "--slo-tpot-ms", "100", "--out", str(out), "--quiet"])
    assert code == 0
    results = json.loads(out.read_text())
    assert REQUIRED <= results.keys()
    for metric in ("ttft", "tpot", "itl", "e2e"):
        assert set(results[metric]) == {"p50", "p90", "p99", "mean"}
        assert 0 < results[metric]["p50"] <= results[metric]["p90"] <= results[metric]["p99"]
    assert (results["policy"], results["instances"], results["requests"]) == ("infaas", 4, 60)
    assert 0 < results["slo_attainment"] <= 1
    assert results["latency_model"]["kind"] == "roofline"
    assert (tmp_path / "results.png").stat().st_size > 10_000
    assert "infaas" in capsys.readouterr().out  # the table


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--policy", "fastest"], "unknown dispatch policy 'fastest'"),
        (["--trace", "/nonexistent.csv"], "bad trace: trace file not found"),
        (["--instances", "0"], "--instances must be >= 1"),
        (["--high-priority-prefill-tokens", "-5"], "--high-priority-prefill-tokens must be >= 0"),
        (["--model-config", "llama-2-70b"], "llama-2-70b"),
        (["--gpu", "TPU"], "TPU"),
        (["--rate-scale", "-1"], "rate scale must be a positive number"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message) -> None:
    base = {"--trace": "azure-conv", "--num-requests": "5", "--out": str(tmp_path / "r.json")}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    argv = ["sim", "--quiet", *[x for kv in base.items() for x in kv]]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("flotilla: ") and message in err and "\n" not in err
    assert not (tmp_path / "r.json").exists()
