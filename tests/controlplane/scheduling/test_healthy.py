from controlplane.scheduling.plugins.healthy import HealthyFilter
from tests.controlplane.scheduling.helpers import REQ, view


def test_keeps_healthy_in_order():
    a, b, c = view("a"), view("b", healthy=False), view("c")
    assert HealthyFilter().filter(REQ, [c, b, a]) == [c, a]


def test_all_unhealthy_gives_empty_list():
    assert HealthyFilter().filter(REQ, [view("a", healthy=False)]) == []


def test_draining_instances_take_no_new_work():
    a, b = view("a", draining=True), view("b")
    assert HealthyFilter().filter(REQ, [a, b]) == [b]
