"""The API key (`gateway.api_key`, FLOTILLA_API_KEY; vLLM's --api-key and VLLM_API_KEY): every /v1
route, /tokenize and /detokenize need it; health, ping, version, metrics and the OpenAPI document
stay open; the admin API keeps its own token."""

from __future__ import annotations

import pytest

from controlplane.api.settings import GatewaySettings
from controlplane.config import FlotillaConfig, load_config
from flotilla.errors import ConfigError
from tests.controlplane.api.conftest import MODEL, serving

KEY = "s3cret-key"
KEYED = [
    ("POST", "/v1/completions", {"model": MODEL, "prompt": "abc", "max_tokens": 3}),
    ("POST", "/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "yo"}]}),
    ("GET", "/v1/models", None),
    ("GET", "/v1/no-such-route", None),
    ("POST", "/tokenize", {"prompt": "abc"}),
    ("POST", "/detokenize", {"tokens": [104]}),
]
OPEN = ["/health", "/ping", "/version", "/metrics", "/openapi.json"]


@pytest.mark.parametrize("method, path, body", KEYED)
@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Basic s3cret-key", "Bearer ", f"bearer {KEY}x"])
async def test_keyed_routes_refuse_a_missing_or_wrong_key(method, path, body, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    async with serving(api_key=KEY) as h:
        resp = await h.client.request(method, path, json=body, headers=headers)
        assert resp.status_code == 401
        assert resp.headers["www-authenticate"] == "Bearer"
        error = resp.json()["error"]
        assert error["type"] == "authentication_error" and error["code"] == 401
        assert "FLOTILLA_API_KEY" in error["message"]
        assert h.cluster.requests == []


@pytest.mark.parametrize("method, path, body", KEYED[:3] + KEYED[4:])
async def test_keyed_routes_serve_with_the_key(method, path, body):
    async with serving(api_key=KEY) as h:
        resp = await h.client.request(method, path, json=body, headers={"Authorization": f"Bearer {KEY}"})
        assert resp.status_code == 200, resp.text
        resp = await h.client.request(method, path, json=body, headers={"Authorization": f"bearer  {KEY} "})
        assert resp.status_code == 200, resp.text


@pytest.mark.parametrize("path", OPEN)
async def test_health_ping_version_metrics_stay_open(path):
    async with serving(api_key=KEY) as h:
        assert (await h.client.get(path)).status_code == 200


async def test_the_admin_api_keeps_its_own_token():
    async with serving(api_key=KEY, admin_token="admin-token") as h:
        resp = await h.client.get("/admin/v1/instances", headers={"Authorization": f"Bearer {KEY}"})
        assert resp.status_code == 401
        resp = await h.client.get("/admin/v1/instances", headers={"Authorization": "Bearer admin-token"})
        assert resp.status_code == 200


async def test_without_a_key_every_route_is_open(harness):
    assert (await harness.client.get("/v1/models")).status_code == 200


async def test_a_401_carries_cors_headers_and_preflights_pass():
    origin = "https://ui.example.com"
    async with serving(api_key=KEY, settings=GatewaySettings(cors_origins=(origin,))) as h:
        resp = await h.client.get("/v1/models", headers={"Origin": origin})
        assert resp.status_code == 401
        assert resp.headers["access-control-allow-origin"] == origin
        resp = await h.client.options("/v1/models", headers={
            "Origin": origin, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"})
        assert resp.status_code == 200


async def test_a_key_that_is_no_token_fails_at_creation():
    with pytest.raises(ConfigError, match="the API key must match"):
        async with serving(api_key="has space"):
            pass


def test_config_key_then_environment():
    assert FlotillaConfig().gateway.api_key is None
    assert FlotillaConfig().gateway.api_key_value({}) is None
    assert FlotillaConfig().gateway.api_key_value({"FLOTILLA_API_KEY": "env-key"}) == "env-key"
    config = load_config(None, {"gateway.api_key": "conf-key"})
    assert config.gateway.api_key_value({"FLOTILLA_API_KEY": "env-key"}) == "conf-key"
    assert "conf-key" not in repr(config)  # a secret


def test_bad_keys_are_one_line_errors():
    with pytest.raises(ConfigError, match="gateway.api_key"):
        load_config(None, {"gateway.api_key": "two words"})
    with pytest.raises(ConfigError, match="FLOTILLA_API_KEY"):
        FlotillaConfig().gateway.api_key_value({"FLOTILLA_API_KEY": ""})
