"""The admin API's instance entry: the stats and what the controller's migration policy exposes (the
llumnix policies: freeness with the configured headroom, fixed and per HIGH request)."""

from __future__ import annotations

from controlplane.api.admin import instance_info
from controlplane.controller.controller import Controller
from controlplane.scheduling.plugins.llumnix import LlumnixSettings
from controlplane.scheduling.registry import build_migration_policy
from tests.controlplane.scheduling.helpers import view


def controller(**settings: float) -> Controller:
    policy = build_migration_policy("none", {"llumnix": LlumnixSettings(**settings)}, 1)
    return Controller(cluster=None, policy=policy, interval_s=1.0)  # type: ignore[arg-type]


def test_freeness_counts_the_configured_headroom():
    v = view("a", running=2, free_blocks=100, total_blocks=100, high_priority=1)
    info = instance_info(v, controller(headroom_blocks=10, headroom_fraction=0.2))
    assert info == {"id": "a", "role": "unified", "status": "serving", "running": 2, "waiting": 0,
                    "free_blocks": 100, "total_blocks": 100, "freeness": (100 - 10 - 0.2 * 100) / 2}
    assert instance_info(view("b", draining=True), controller())["freeness"] is None


def test_without_a_controller_only_the_stats():
    assert "freeness" not in instance_info(view("a"), None)


def test_the_status_of_each_state():
    cases = {
        "serving": view("a"),
        "draining": view("a", draining=True, running=1),
        "drained": view("a", draining=True),
        "restarting": view("a", healthy=False, restarting=True, draining=True),
        "unhealthy": view("a", healthy=False),
    }
    assert {want: instance_info(v, None)["status"] for want, v in cases.items()} == {w: w for w in cases}
