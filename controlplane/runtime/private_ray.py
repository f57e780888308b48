"""The environment of a Ray that Flotilla starts itself (no `cluster.ray_address`), set before Ray
is imported: Ray reads part of it at import, the rest when it starts its processes, which inherit it.

- `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`: a single-node Ray. Ray then takes 127.0.0.1 as the node's
  address, so its GCS, raylet, workers and agents listen on loopback only: nothing of it is
  reachable from another host (joining a cluster with `cluster.ray_address` is unaffected).
- `RAY_worker_niceness=0`: the workers (the instance actors) run at the starting process's
  niceness; Ray would start them at +15, and an engine's step loop must not yield the CPU to
  everything else on the machine.

Values already in the environment are kept (an operator may set them otherwise). This module
imports nothing of Ray.
"""

from __future__ import annotations

import sys
from collections.abc import MutableMapping

PRIVATE_RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_worker_niceness": "0"}


def prepare_private_ray(environ: MutableMapping[str, str]) -> None:
    """Set `PRIVATE_RAY_ENV` in `environ` where unset. RuntimeError when Ray was imported before an
    unprepared environment (too late for the loopback-only part)."""
    if "ray" in sys.modules and any(key not in environ for key in PRIVATE_RAY_ENV):
        raise RuntimeError("prepare_private_ray must run before Ray is imported")
    for key, value in PRIVATE_RAY_ENV.items():
        environ.setdefault(key, value)
