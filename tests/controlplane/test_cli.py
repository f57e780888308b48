"""`flotilla`'s command line: quick to answer (no torch, Ray or transformers for help and config
errors), and its flags."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HEAVY = ("torch", "ray", "transformers")


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
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
    got = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert got.returncode == 0
    assert "serve" in got.stdout and "sim" in got.stdout
