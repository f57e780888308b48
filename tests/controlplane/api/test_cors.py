"""CORS: off by default (no CORS header at all); `gateway.cors_origins` allows exactly those."""

from __future__ import annotations

from controlplane.api.settings import GatewaySettings
from tests.controlplane.api.conftest import MODEL, Harness, serving

ORIGIN = "https://ui.example.com"
PREFLIGHT = {
    "origin": ORIGIN,
    "access-control-request-method": "POST",
    "access-control-request-headers": "authorization, content-type",
}
COMPLETION = {"model": MODEL, "prompt": "abc", "max_tokens": 5}


async def test_off_by_default_and_on_for_the_configured_origins(harness: Harness):
    resp = await harness.client.options("/v1/completions", headers=PREFLIGHT)
    assert resp.status_code == 405
    assert not [h for h in resp.headers if h.startswith("access-control-")]
    resp = await harness.client.post("/v1/completions", json=COMPLETION, headers={"origin": ORIGIN})
    assert resp.status_code == 200
    assert not [h for h in resp.headers if h.startswith("access-control-")]

    async with serving(settings=GatewaySettings(cors_origins=(ORIGIN,))) as h:
        resp = await h.client.options("/v1/completions", headers=PREFLIGHT)
        assert resp.status_code == 200
        assert resp.headers["access-control-allow-origin"] == ORIGIN
        assert set(resp.headers["access-control-allow-methods"].split(", ")) == {"GET", "POST"}
        assert resp.headers["access-control-allow-headers"] == "authorization, content-type"
        assert "access-control-allow-credentials" not in resp.headers
        resp = await h.client.post("/v1/completions", json=COMPLETION, headers={"origin": ORIGIN})
        assert resp.status_code == 200
        assert resp.headers["access-control-allow-origin"] == ORIGIN
        assert resp.headers["access-control-expose-headers"] == "Retry-After"

        other = {**PREFLIGHT, "origin": "https://evil.example.com"}
        resp = await h.client.options("/v1/completions", headers=other)
        assert (resp.status_code, resp.text) == (400, "Disallowed CORS origin")
        resp = await h.client.post("/v1/completions", json=COMPLETION, headers={"origin": other["origin"]})
        assert resp.status_code == 200
        assert "access-control-allow-origin" not in resp.headers
