"""The admin API's instance entry reads freeness with the configured headroom, fixed and per-request."""

from __future__ import annotations

from controlplane.api.admin import instance_info
from controlplane.scheduling.llumnix_migration import LlumnixMigrationSection
from tests.controlplane.scheduling.helpers import view


def test_freeness_counts_the_configured_headroom():
    v = view("a", running=2, free_blocks=100, total_blocks=100, high_priority=1)
    info = instance_info(v, LlumnixMigrationSection(headroom_blocks=10, headroom_fraction=0.2))
    assert info.freeness == (100 - 10 - 0.2 * 100) / 2
    assert instance_info(view("b", draining=True), LlumnixMigrationSection()).freeness is None
