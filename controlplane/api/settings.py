"""The gateway's HTTP settings: the one declaration of the `gateway` keys the app enforces itself,
and what an admin token or API key may look like (`admin.token`, or the `FLOTILLA_ADMIN_TOKEN`
variable; `gateway.api_key`, or the `FLOTILLA_API_KEY` variable)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from annotated_types import Ge, Gt
from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

ORIGIN_PATTERN = r"\*|[A-Za-z][A-Za-z0-9+.-]*://[^/\s?#]+"
"""A CORS origin: `scheme://host[:port]` (no path, no trailing slash) or `*` for any origin."""


def checked_origin(origin: str) -> str:
    """`origin` if it matches `ORIGIN_PATTERN`; else a ValueError (a PydanticCustomError) naming it."""
    if re.fullmatch(ORIGIN_PATTERN, origin) is None:
        raise PydanticCustomError(
            "origin",
            "{origin!r} is not an origin: scheme://host[:port] with no path or trailing slash, or *",
            {"origin!r": repr(origin)},
        )
    return origin


ADMIN_TOKEN_ENV = "FLOTILLA_ADMIN_TOKEN"
"""The environment variable holding the admin token when `admin.token` is not set."""

API_KEY_ENV = "FLOTILLA_API_KEY"
"""The environment variable holding the API key when `gateway.api_key` is not set (as vLLM's
VLLM_API_KEY)."""

ADMIN_TOKEN_PATTERN = r"[\x21-\x7e]+"
"""An admin token or API key: visible ASCII characters, no spaces (it travels in an HTTP header)."""


def valid_admin_token(token: str) -> bool:
    """Whether `token` can be an admin token or API key (`ADMIN_TOKEN_PATTERN`)."""
    return re.fullmatch(ADMIN_TOKEN_PATTERN, token) is not None


@dataclass(frozen=True)
class GatewaySettings:
    """cors_origins: the browser origins allowed to call the gateway (CORS); empty: CORS is off and
    no CORS header is ever sent. max_body_bytes: the largest request body accepted; a larger one is
    a 413, answered before the body is parsed (from its Content-Length, or as soon as a streamed
    body passes the limit). max_queued_requests: completion and chat requests accepted and not yet
    finished, per gateway; one more is a 429. A request counts from its arrival (before its body is
    read) until its response has been sent, its stream included, or its client has gone.
    max_resumes: how many times a request whose instance is lost mid-stream resumes on another
    instance (from its prompt and the tokens it had streamed; the client sees one stream); the
    next loss ends its stream with an error event."""

    cors_origins: tuple[Annotated[str, AfterValidator(checked_origin)], ...] = ()
    max_body_bytes: Annotated[int, Gt(0)] = 4 * 1024 * 1024
    max_queued_requests: Annotated[int, Gt(0)] = 1024
    max_resumes: Annotated[int, Ge(0)] = 2

    def __post_init__(self) -> None:
        for origin in self.cors_origins:
            checked_origin(origin)
        if self.max_body_bytes < 1:
            raise ValueError(f"gateway.max_body_bytes must be >= 1, got {self.max_body_bytes}")
        if self.max_queued_requests < 1:
            raise ValueError(f"gateway.max_queued_requests must be >= 1, got {self.max_queued_requests}")
        if self.max_resumes < 0:
            raise ValueError(f"gateway.max_resumes must be >= 0, got {self.max_resumes}")
