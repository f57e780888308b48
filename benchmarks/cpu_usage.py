"""CPU time of the server's processes by role, read from /proc (Linux), to attribute a run's CPU.

`flotilla serve` runs in its own session (`ServeProcess` starts it with a new session), so every
process of the server - the gateway itself, Ray's services and the instance actors - shares its
session id. Roles: `gateway` (the session leader, which runs uvicorn, the gateway and the Ray
driver), `instances` (processes titled `ray::InstanceActor...`) and `ray` (every other process of
the session: GCS, raylet, dashboard, agents, idle workers).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROLES = ("gateway", "instances", "ray")
_INSTANCE_TITLE = "ray::InstanceActor"


@dataclass(frozen=True)
class ProcCpu:
    """One process: its role and the CPU seconds (user + system) it has used so far."""

    role: str
    cpu_s: float


def parse_stat(text: str, ticks_per_s: float) -> tuple[int, float]:
    """(session id, user + system CPU seconds) from the text of `/proc/PID/stat`.

    The command name (field 2) is skipped up to its last `)`, so names with spaces or parentheses
    parse. Raises ValueError for text that is not a stat line.
    """
    head, sep, rest = text.rpartition(")")
    if not sep or "(" not in head:
        raise ValueError(f"not a /proc/PID/stat line: {text[:80]!r}")
    fields = rest.split()  # fields[0] is field 3 (state)
    if len(fields) < 13:
        raise ValueError(f"short /proc/PID/stat line: {text[:80]!r}")
    session, utime, stime = int(fields[3]), int(fields[11]), int(fields[12])
    return session, (utime + stime) / ticks_per_s


def role_of(pid: int, session: int, cmdline: str) -> str:
    """The role of process `pid` in the server's `session` (see the module docstring)."""
    if pid == session:
        return "gateway"
    return "instances" if cmdline.startswith(_INSTANCE_TITLE) else "ray"


def session_cpu(session: int, proc: Path = Path("/proc")) -> dict[int, ProcCpu]:
    """Every live process of `session` by pid. Processes that exit while being read are skipped."""
    ticks = float(os.sysconf("SC_CLK_TCK"))
    out = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            sid, cpu_s = parse_stat((entry / "stat").read_text(), ticks)
            if sid != session:
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
        except (FileNotFoundError, ProcessLookupError):  # it exited between listing and reading
            continue
        pid = int(entry.name)
        out[pid] = ProcCpu(role_of(pid, session, cmdline), cpu_s)
    return out


def cpu_delta_by_role(before: Mapping[int, ProcCpu], after: Mapping[int, ProcCpu]) -> dict[str, float]:
    """CPU seconds each role used between two `session_cpu` snapshots (a process that appeared in
    between counts from zero; one that exited in between is not counted)."""
    delta = dict.fromkeys(ROLES, 0.0)
    for pid, now in after.items():
        delta[now.role] += now.cpu_s - (before[pid].cpu_s if pid in before else 0.0)
    return delta
