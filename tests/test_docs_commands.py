"""The commands README.md and docs/*.md print run as printed on a fresh clone after `make install`.

Every command line of a fenced `bash` block, or of an indented block, is extracted. Each one that
runs Flotilla's Python must name it as `.venv/bin/...` (nothing assumes an activated venv); each
module or subcommand it names exists; each `--flag` it passes is one the command's `--help` lists.
The cheap ones (the simulator on the README's trace, `--help`s) run for real.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
VENV_BIN = Path(sys.executable).parent


def _logical_lines(lines: list[str]) -> list[str]:
    """Join backslash continuations and lines inside an open quote into one command each."""
    out: list[str] = []
    buf = ""
    for raw in lines:
        line = raw.strip()
        buf = f"{buf} {line}".strip() if buf else line
        if buf.endswith("\\"):
            buf = buf[:-1].rstrip()
            continue
        try:
            shlex.split(buf, comments=True)
        except ValueError:  # an unclosed quote: the command goes on
            continue
        if buf and not buf.startswith("#"):
            out.append(buf)
        buf = ""
    return out


def commands() -> list[tuple[str, str]]:
    """(where, command) for every command line the docs print."""
    found: list[tuple[str, str]] = []
    for doc in DOCS:
        lines = doc.read_text().splitlines()
        i = 0
        while i < len(lines):
            line = lines[i]
            if line.startswith("```"):
                lang = line[3:].strip()
                j = i + 1
                while not lines[j].startswith("```"):
                    j += 1
                if lang in ("bash", "sh"):
                    found += [(f"{doc.name}:{i + 2}", c) for c in _logical_lines(lines[i + 1:j])]
                i = j + 1
                continue
            if re.match(r"    (\.venv/bin/|python|flotilla|make )", line) and (i == 0 or not lines[i - 1].strip()
                                                                            or lines[i - 1].startswith("    ")):
                j = i
                while j < len(lines) and lines[j].startswith("    "):
                    j += 1
                found += [(f"{doc.name}:{i + 1}", c) for c in _logical_lines(lines[i:j])]
                i = j
                continue
            i += 1
    return found


COMMANDS = commands()


def _argv(command: str) -> list[str]:
    return shlex.split(command, comments=True)


def _target(argv: list[str]) -> tuple[str, str] | None:
    """("module", name) for `.venv/bin/python -m name`, ("flotilla", sub) for `.venv/bin/flotilla sub`
    (`sub` is "sim sweep" for the sweep)."""
    if argv[:2] == [".venv/bin/python", "-m"]:
        return "module", argv[2]
    if argv[0] == ".venv/bin/flotilla" and len(argv) > 1 and not argv[1].startswith("-"):
        if argv[1:3] == ["sim", "sweep"]:
            return "flotilla", "sim sweep"
        return "flotilla", argv[1]
    return None


def test_the_docs_print_commands():
    assert len(COMMANDS) >= 20
    assert any(c.startswith(".venv/bin/flotilla sim") for _, c in COMMANDS)


@pytest.mark.parametrize("where, command", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_python_is_the_venv_s(where, command):
    argv = _argv(command)
    assert argv[0] not in ("python", "flotilla", "pytest", "pip"), f"{where}: say .venv/bin/{argv[0]}"


def _helps() -> dict[tuple[str, str], str]:
    """The `--help` text of every module and subcommand the docs run, from one subprocess."""
    targets = sorted({t for _, c in COMMANDS if (t := _target(_argv(c))) is not None})
    script = (
        "import contextlib, io, json, runpy, sys\n"
        "from controlplane.cli import main\n"
        "out = {}\n"
        f"for kind, name in {targets!r}:\n"
        "    buf = io.StringIO()\n"
        "    with contextlib.redirect_stdout(buf), contextlib.suppress(SystemExit):\n"
        "        if kind == 'module':\n"
        "            sys.argv = [name, '--help']\n"
        "            runpy.run_module(name, run_name='__main__')\n"
        "        else:\n"
        "            main([*name.split(), '--help'])\n"
        "    out[kind + ' ' + name] = buf.getvalue()\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    import json
    return {tuple(k.split(" ", 1)): v for k, v in json.loads(done.stdout.splitlines()[-1]).items()}


@pytest.fixture(scope="module")
def helps() -> dict[tuple[str, str], str]:
    return _helps()


@pytest.mark.parametrize("where, command", [(w, c) for w, c in COMMANDS if _target(_argv(c))],
                         ids=[w for w, c in COMMANDS if _target(_argv(c))])
def test_every_flag_is_one_the_command_takes(helps, where, command):
    argv = _argv(command)
    target = _target(argv)
    text = helps[target]
    assert "usage:" in text, f"{where}: {target[1]} has no --help"
    for flag in (a.split("=", 1)[0] for a in argv if a.startswith("--")):
        assert re.search(rf"{re.escape(flag)}\b", text), f"{where}: {target[1]} takes no {flag}"


def test_the_readme_s_simulator_run_runs(tmp_path):
    (command,) = [c for w, c in COMMANDS if w.startswith("README") and c.startswith(".venv/bin/flotilla sim")]
    argv = _argv(command)
    argv[0] = str(VENV_BIN / "flotilla")
    argv[argv.index("--out") + 1] = str(tmp_path / "sim.json")
    done = subprocess.run([*argv, "--quiet", "--no-plot"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "sim.json").stat().st_size > 0
