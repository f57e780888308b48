"""Reading CPU time by role from /proc: stat parsing, roles, deltas, and a fake /proc tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks.cpu_usage import ProcCpu, cpu_delta_by_role, parse_stat, role_of, session_cpu


def _stat(pid: int, comm: str, session: int, utime: int, stime: int) -> str:
    # fields 3..15: state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime
    return f"{pid} ({comm}) S 1 {pid} {session} 0 -1 4194304 10 0 0 0 {utime} {stime} 0 0 20 0 1 0\n"


def test_parse_stat_skips_a_command_name_with_spaces_and_parentheses() -> None:
    assert parse_stat(_stat(7, "ray::Instance) (x", 42, 300, 100), 100.0) == (42, 4.0)
    with pytest.raises(ValueError, match="not a /proc/PID/stat line"):
        parse_stat("garbage", 100.0)
    with pytest.raises(ValueError, match="short"):
        parse_stat("7 (x) S 1 2", 100.0)


def test_roles() -> None:
    assert role_of(10, 10, "python -m controlplane.cli serve") == "gateway"
    assert role_of(11, 10, "ray::InstanceActor.next_outputs ") == "instances"
    assert role_of(12, 10, "/venv/ray/raylet --raylet_socket_name=x") == "ray"


def test_delta_counts_new_processes_from_zero_and_ignores_exited_ones() -> None:
    before = {1: ProcCpu("gateway", 1.0), 2: ProcCpu("instances", 2.0), 3: ProcCpu("ray", 9.0)}
    after = {1: ProcCpu("gateway", 1.5), 2: ProcCpu("instances", 2.25), 4: ProcCpu("instances", 0.125)}
    assert cpu_delta_by_role(before, after) == {"gateway": 0.5, "instances": 0.375, "ray": 0.0}


def test_session_cpu_reads_only_the_session(tmp_path: Path) -> None:
    ticks = os.sysconf("SC_CLK_TCK")
    for pid, comm, session, cmdline in ((10, "python", 10, b"python\0-m\0x"),
                                        (11, "ray::InstanceAc", 10, b"ray::InstanceActor.next_outputs\0"),
                                        (12, "bash", 99, b"bash\0")):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(_stat(pid, comm, session, 2 * ticks, ticks))
        (tmp_path / str(pid) / "cmdline").write_bytes(cmdline)
    (tmp_path / "self").mkdir()
    (tmp_path / "13").mkdir()  # exited before its files could be read
    assert session_cpu(10, tmp_path) == {10: ProcCpu("gateway", 3.0), 11: ProcCpu("instances", 3.0)}
