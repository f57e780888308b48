"""The admin API over HTTP: the bearer token, loopback-only access without one, drain and undrain."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.datastructures import Address

from controlplane.api.admin import is_loopback
from controlplane.controller.controller import Controller
from controlplane.observability.metrics import Metrics
from controlplane.scheduling.registry import build_migration_policy
from flotilla.errors import ConfigError
from tests.controlplane.api.conftest import MODEL, Harness, make_app, serving
from tests.controlplane.api.fakes import ScriptedCluster

TOKEN = "s3cret-Token_1"
REMOTE = ("203.0.113.7", 40000)
COMPLETION = {"model": MODEL, "prompt": "abc", "max_tokens": 5}
MISSING = (
    "the admin API needs the admin token: send Authorization: Bearer <token>, "
    "the token of admin.token or FLOTILLA_ADMIN_TOKEN"
)
WRONG = (
    "the admin token is wrong: send Authorization: Bearer <token>, "
    "the token of admin.token or FLOTILLA_ADMIN_TOKEN"
)
FORBIDDEN = (
    "the admin API answers only loopback clients while no admin token is configured; "
    "set admin.token or FLOTILLA_ADMIN_TOKEN and send Authorization: Bearer <token>"
)


def _controlled(cluster: ScriptedCluster) -> Controller:
    policy = build_migration_policy("none", {}, 2)
    return Controller(cluster, policy, interval_s=1.0)  # type: ignore[arg-type]


def _error(resp, status: int, error_type: str, message: str) -> None:
    assert (resp.status_code, resp.json()) == (
        status,
        {"error": {"message": message, "type": error_type, "param": None, "code": status}},
    )


@pytest.fixture
async def guarded() -> AsyncIterator[Harness]:
    """An app with an admin token and a controller, called from a non-loopback address."""
    cluster = ScriptedCluster()
    async with serving(cluster, client=REMOTE, admin_token=TOKEN, controller=_controlled(cluster)) as h:
        yield h


ADMIN_CALLS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/admin/v1/instances", {}),
    ("POST", "/admin/v1/instances/i0/drain", {}),
    ("POST", "/admin/v1/instances/i0/undrain", {}),
    ("POST", "/admin/v1/requests/r1/migrate", {"json": {"to": "i1"}}),
]


@pytest.mark.parametrize(("method", "path", "kwargs"), ADMIN_CALLS)
@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (None, MISSING),
        ("", MISSING),
        ("Bearer", MISSING),
        ("Bearer ", MISSING),
        (f"Basic {TOKEN}", MISSING),
        (TOKEN, MISSING),
        ("Bearer wrong", WRONG),
        (f"Bearer {TOKEN}x", WRONG),
        (f"Bearer {TOKEN[:-1]}", WRONG),
        ("Bearer caf\u00e9".encode("latin-1"), WRONG),  # not ASCII: compared as bytes, just wrong
    ],
)
async def test_without_the_token_every_admin_call_is_401(
    guarded: Harness, method, path, kwargs, authorization, message
):
    headers = {} if authorization is None else {"authorization": authorization}
    resp = await guarded.client.request(method, path, headers=headers, **kwargs)
    _error(resp, 401, "authentication_error", message)
    assert resp.headers["www-authenticate"] == "Bearer"
    assert [v.draining for v in guarded.cluster.views()] == [False, False]


async def test_the_token_opens_the_admin_api_from_anywhere_and_guards_nothing_else(guarded: Harness):
    assert (await guarded.client.get("/admin/v1/instances")).status_code == 401
    for scheme in ("Bearer", "bearer", "BEARER"):
        resp = await guarded.client.get("/admin/v1/instances", headers={"authorization": f"{scheme} {TOKEN}"})
        assert resp.status_code == 200
        assert [i["id"] for i in resp.json()["instances"]] == ["i0", "i1"]
    assert (await guarded.client.post("/v1/completions", json=COMPLETION)).status_code == 200
    assert (await guarded.client.get("/health")).status_code == 200


@pytest.mark.parametrize(("method", "path", "kwargs"), ADMIN_CALLS)
async def test_without_a_token_a_remote_client_is_403(method, path, kwargs):
    cluster = ScriptedCluster()
    async with serving(cluster, client=REMOTE, controller=_controlled(cluster)) as h:
        resp = await h.client.request(method, path, headers={"authorization": "Bearer anything"}, **kwargs)
        _error(resp, 403, "permission_error", FORBIDDEN)
        assert (await h.client.post("/v1/completions", json=COMPLETION)).status_code == 200


@pytest.mark.parametrize(
    ("host", "status"),
    [
        *[(host, 200) for host in ("127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1", "localhost")],
        *[(host, 403) for host in ("10.0.0.1", "::ffff:10.0.0.1", "2001:db8::1", "testclient", "")],
    ],
)
async def test_without_a_token_only_loopback_clients_are_served(host, status):
    async with serving(client=(host, 5000)) as h:
        assert (await h.client.get("/admin/v1/instances")).status_code == status
    assert is_loopback(Address(host, 5000)) is (status == 200)


def test_a_client_the_server_cannot_name_is_not_loopback():
    assert not is_loopback(None)  # a Unix socket peer, or a server that does not say


@pytest.mark.parametrize("token", ["", "two words", "caf\u00e9", "tab\there"])
def test_a_token_that_cannot_travel_in_a_header_is_refused(token):
    with pytest.raises(ConfigError) as info:
        make_app(ScriptedCluster(), Metrics(), admin_token=token)
    assert info.value.message == r"the admin token must match [\x21-\x7e]+ (visible ASCII, no spaces)"


# ---- drain and undrain ----------------------------------------------------------------------------


async def test_undrain_serves_with_the_instance_again(guarded: Harness):
    auth = {"authorization": f"Bearer {TOKEN}"}
    for instance in ("i0", "i1"):
        resp = await guarded.client.post(f"/admin/v1/instances/{instance}/drain", headers=auth)
        assert (resp.status_code, resp.json()) == (202, {"id": instance, "status": "draining"})
    assert (await guarded.client.post("/v1/completions", json=COMPLETION)).status_code == 503
    assert (await guarded.client.get("/health")).status_code == 503

    resp = await guarded.client.post("/admin/v1/instances/i1/undrain", headers=auth)
    assert (resp.status_code, resp.json()) == (200, {"id": "i1", "status": "serving"})
    statuses = {
        i["id"]: i["status"]
        for i in (await guarded.client.get("/admin/v1/instances", headers=auth)).json()["instances"]
    }
    assert statuses == {"i0": "drained", "i1": "serving"}
    assert (await guarded.client.get("/health")).status_code == 200
    assert (await guarded.client.post("/v1/completions", json=COMPLETION)).status_code == 200
    assert [iid for iid, _ in guarded.cluster.requests] == ["i1"]


async def test_drain_and_undrain_of_an_unknown_instance_are_404(guarded: Harness):
    for verb in ("drain", "undrain"):
        resp = await guarded.client.post(
            f"/admin/v1/instances/i9/{verb}", headers={"authorization": f"Bearer {TOKEN}"}
        )
        _error(resp, 404, "not_found_error", "no instance 'i9'; GET /admin/v1/instances lists them")


@pytest.mark.parametrize("verb", ["drain", "undrain"])
async def test_drain_and_undrain_without_a_controller_are_501(verb):
    async with serving() as h:
        resp = await h.client.post(f"/admin/v1/instances/i0/{verb}")
        _error(
            resp,
            501,
            "not_implemented",
            "this gateway runs without a controller: no drain, undrain or migration",
        )


async def test_migrate_takes_a_json_body_only(guarded: Harness):
    auth = {"authorization": f"Bearer {TOKEN}"}
    resp = await guarded.client.post(
        "/admin/v1/requests/r1/migrate",
        content='{"to": "i1"}',
        headers={**auth, "content-type": "application/x-www-form-urlencoded"},
    )
    _error(
        resp,
        415,
        "invalid_request_error",
        "the request body must be JSON: send Content-Type: application/json, "
        "not 'application/x-www-form-urlencoded'",
    )
