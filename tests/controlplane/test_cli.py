"""`flotilla`'s command line: quick to answer (no torch, Ray or transformers for help and config
errors), and its flags."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from controlplane.cli import SERVE_FLAGS, _serve_overrides, build_parser, main
from controlplane.config import FlotillaConfig, load_config
from flotilla import __version__

HEAVY = ("torch", "ray", "transformers")


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=False, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("argv, exit_code", [
    (["--help"], 0),
    (["serve", "--help"], 0),
    (["sim", "--help"], 0),
    (["serve", "--set", "engine.block_size=-1"], 2),
    (["serve", "--set", "no.such.key=1"], 2),
])
def test_help_and_config_errors_import_no_heavy_package(argv: list[str], exit_code: int) -> None:
    got = _run_python(f"""
        import sys
        import controlplane.cli
        try:
            code = controlplane.cli.main({argv!r})
        except SystemExit as e:
            code = e.code
        heavy = [m for m in {HEAVY!r} if m in sys.modules]
        print("exit", code, "heavy", heavy, file=sys.stderr)
    """)
    assert got.returncode == 0, got.stderr
    assert got.stderr.splitlines()[-1] == f"exit {exit_code} heavy []"


def test_the_installed_command_answers_help() -> None:
    exe = Path(sys.executable).with_name("flotilla")
    got = subprocess.run([str(exe), "--help"], check=False, capture_output=True, text=True, timeout=120)
    assert got.returncode == 0
    assert "serve" in got.stdout and "sim" in got.stdout


def _config_of(argv: list[str]) -> FlotillaConfig:
    args = build_parser().parse_args(argv)
    return load_config(args.config, _serve_overrides(args))


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"flotilla {__version__}\n"


def test_the_model_is_positional_as_in_vllm_serve(capsys: pytest.CaptureFixture[str]) -> None:
    assert _config_of(["serve", "smollm2-135m"]).model.name_or_path == "smollm2-135m"
    assert _config_of(["serve", "--model", "smollm2-135m"]).model.name_or_path == "smollm2-135m"
    assert _config_of(["serve", "smollm2-135m", "--model", "smollm2-135m"]).model.name_or_path == "smollm2-135m"
    assert _config_of(["serve", "--port", "0", "smollm2-135m"]).model.name_or_path == "smollm2-135m"
    assert main(["serve", "smollm2-135m", "--model", "tiny-llama"]) == 2
    err = capsys.readouterr().err
    assert err == "flotilla: two models given: smollm2-135m and --model tiny-llama; give one\n"


def test_engine_flags_are_the_config_keys_of_set() -> None:
    flags = _config_of(["serve", "--block-size", "8", "--max-num-seqs", "3", "--max-num-batched-tokens", "256",
                        "--max-model-len", "300", "--served-model-name", "my-model"])
    via_set = _config_of(["serve", "--set", "engine.block_size=8", "--set", "engine.max_num_seqs=3",
                          "--set", "engine.max_num_batched_tokens=256", "--set", "model.max_model_len=300",
                          "--set", "model.served_name=my-model"])
    assert flags == via_set
    assert (flags.engine.block_size, flags.engine.max_num_seqs, flags.engine.max_num_batched_tokens) == (8, 3, 256)
    assert (flags.model.max_model_len, flags.model.served_model_name) == (300, "my-model")
    assert flags != _config_of(["serve"])


def test_set_wins_over_a_flag_for_the_same_key() -> None:
    assert _config_of(["serve", "--block-size", "8", "--set", "engine.block_size=32"]).engine.block_size == 32
    assert _config_of(["serve", "--port", "1", "--set", "gateway.port=2"]).gateway.port == 2


def test_a_bad_flag_value_is_a_one_line_config_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--block-size", "0"]) == 2
    assert capsys.readouterr().err == (
        "flotilla: config error in overrides: engine.block_size: Input should be greater than 0\n")


def test_configuration_doc_names_each_flag_with_its_key() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    for flag, key, _ in SERVE_FLAGS:
        assert f"| `{flag}` | `{key}` |" in doc


def test_ray_dashboard_is_off_unless_asked_for() -> None:
    assert _config_of(["serve"]).cluster.ray_dashboard is False
    assert _config_of(["serve", "--ray-dashboard"]) == _config_of(["serve", "--set", "cluster.ray_dashboard=true"])
    assert _config_of(["serve", "--ray-dashboard"]).cluster.ray_dashboard is True


def test_api_key_flag_is_the_gateway_key() -> None:
    assert _config_of(["serve", "--api-key", "s3cret"]) == _config_of(["serve", "--set", "gateway.api_key=s3cret"])


def test_ray_address_and_access_log_flags_are_their_config_keys() -> None:
    assert _config_of(["serve", "--ray-address", "10.0.0.5:6379"]) == \
        _config_of(["serve", "--set", "cluster.ray_address=10.0.0.5:6379"])
    assert _config_of(["serve", "--access-log"]).gateway.access_log is True
    assert _config_of(["serve"]).gateway.access_log is False
