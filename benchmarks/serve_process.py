"""Run `flotilla serve` as a real subprocess on a free port (benchmarks and end-to-end tests)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServeProcess:
    """`flotilla serve ARGS --port P` in its own session, its stderr in a file under $TMPDIR.

    `start()` returns once the server logs that it serves; it raises RuntimeError (with the
    server's stderr) if the process exits first and TimeoutError after `timeout_s`. `stop()` sends
    SIGINT and returns the exit status. Usable as a context manager (start on enter, stop on exit).
    """

    def __init__(self, *args: str, timeout_s: float = 240.0) -> None:
        self.port = free_port()
        self.args = [sys.executable, "-m", "controlplane.cli", "serve", *args, "--port", str(self.port)]
        self.timeout_s = timeout_s
        self.stderr_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"flotilla-serve-{self.port}.err"
        self.proc: subprocess.Popen[str] | None = None
        self.err: IO[str] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The server's process id (the gateway runs in it). Raises RuntimeError before `start()`."""
        if self.proc is None:
            raise RuntimeError("the server has not been started")
        return self.proc.pid

    def start(self) -> ServeProcess:
        self.err = open(self.stderr_path, "w+")  # noqa: SIM115 - closed by stop()
        self.proc = subprocess.Popen(self.args, cwd=ROOT, stdout=subprocess.PIPE, stderr=self.err, text=True,
                                     start_new_session=True)
        deadline = time.monotonic() + self.timeout_s
        while "flotilla: serving" not in self.stderr():
            if self.proc.poll() is not None:
                raise RuntimeError(f"flotilla serve exited with {self.proc.returncode}:\n{self.stderr()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"flotilla serve did not start in {self.timeout_s} s:\n{self.stderr()}")
            time.sleep(0.2)
        return self

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def stop(self) -> int:
        """SIGINT (Ctrl-C), then wait; kill the process group if it does not stop in 30 s."""
        if self.proc is None or self.err is None:
            raise RuntimeError("the server has not been started")
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.err.close()
        return self.proc.returncode

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
