"""Bearer tokens: the admin token (`admin.py`) and the API key (`ApiKeyMiddleware`).

With an API key configured (`create_app`'s `api_key`, from `gateway.api_key` or FLOTILLA_API_KEY,
as vLLM's `--api-key` and VLLM_API_KEY), every `/v1/*` route, `/tokenize` and `/detokenize` need
`Authorization: Bearer <key>`, compared in constant time; missing or wrong is a 401 with
`WWW-Authenticate: Bearer`. `/health`, `/ping`, `/version`, `/metrics` and `/openapi.json` stay
open (load balancers and Prometheus call them), and the admin API has its own token. CORS
preflights (`OPTIONS`) pass, as browsers send them without credentials.
"""

from __future__ import annotations

import hmac

from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from controlplane.api.errors import error_headers, flotilla_error_body
from controlplane.api.settings import API_KEY_ENV
from flotilla.errors import Unauthorized

KEYED_PATHS = frozenset({"/tokenize", "/detokenize"})
"""The routes outside `/v1` that need the API key."""


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header value; None when there is none."""
    scheme, _, given = (authorization or "").partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        return None
    return given


def token_matches(given: str, token: str) -> bool:
    """Whether `given` is `token`, compared in constant time (`token` is ASCII; a header is latin-1)."""
    return hmac.compare_digest(given.encode("latin-1", "replace"), token.encode("ascii"))


def needs_api_key(path: str) -> bool:
    """Whether a request to `path` must carry the API key (when one is configured)."""
    return path == "/v1" or path.startswith("/v1/") or path in KEYED_PATHS


class ApiKeyMiddleware:
    """Refuse, with a 401, any call to a keyed path (`needs_api_key`) without the bearer `api_key`."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self.api_key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] != "OPTIONS" and needs_api_key(scope["path"]):
            given = bearer_token(Headers(scope=scope).get("authorization"))
            if given is None or not token_matches(given, self.api_key):
                what = "is missing" if given is None else "is wrong"
                err = Unauthorized(f"the API key {what}: send Authorization: Bearer <key>, the key of "
                                   f"gateway.api_key or {API_KEY_ENV}")
                response = JSONResponse(flotilla_error_body(err), status_code=401, headers=error_headers(401))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
