"""`flotilla serve` as a subprocess for end-to-end tests; the helper lives in `benchmarks.serve_process`."""

from benchmarks.serve_process import ROOT, ServeProcess, free_port

__all__ = ["ROOT", "ServeProcess", "free_port"]
