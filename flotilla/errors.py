"""Flotilla's one error taxonomy.

Every error a user can see is a `FlotillaError` carrying an HTTP status, an OpenAI-style `type`
and a message that says what to do next. Retryable errors (the request may succeed if sent again)
are `RetryableError`s; everything else is permanent. The API edge turns these into OpenAI error
bodies; the CLI prints the message on one line and exits non-zero.
"""

from __future__ import annotations


class FlotillaError(Exception):
    """Base of all user-facing errors."""

    status_code: int = 500
    error_type: str = "internal_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class RetryableError(FlotillaError):
    """A transient failure: the same call may succeed later."""

    status_code = 503
    error_type = "service_unavailable"


class ConfigError(FlotillaError):
    """The configuration (file, flags or environment) is invalid; raised at start-up."""

    status_code = 400
    error_type = "config_error"


class InvalidRequest(FlotillaError):
    """The request is malformed or a field is out of range."""

    status_code = 400
    error_type = "invalid_request_error"


class ModelNotFound(FlotillaError):
    """The request names a model this deployment does not serve."""

    status_code = 404
    error_type = "not_found_error"


class ModelLoadError(FlotillaError):
    """Weights or tokenizer could not be loaded from the given name or path."""

    status_code = 500
    error_type = "model_load_error"


class NoCapacity(RetryableError):
    """No healthy instance can take the request now."""


class InstanceUnavailable(RetryableError):
    """The instance chosen for a request died or was removed."""


class StreamBroken(FlotillaError):
    """A request's token stream skipped or overlapped output tokens (an internal error)."""


class RequestFailed(FlotillaError):
    """The engine could not continue the request (e.g. its sampling failed); sending it again as
    it is will fail again."""


class NotFound(FlotillaError):
    """The named instance or request does not exist (or no longer)."""

    status_code = 404
    error_type = "not_found_error"


class MigrationBusy(FlotillaError):
    """A migration cannot start now: the request is already moving, or an instance has as many
    migrations in flight as allowed. Retry later."""

    status_code = 409
    error_type = "conflict_error"


class TransferRefused(FlotillaError):
    """An engine refuses a transfer verb (a migration's or a handoff's); the request stays where it
    was. `reason` is one word a policy can count: on the source `finished` (the request is not
    there: it ended) or `preempted`; on the destination `draining`, `no_room`, `full`, `duplicate`,
    `too_long`, `wrong_model` or `expired` (no reservation for it: the watchdog freed it)."""

    status_code = 409
    error_type = "conflict_error"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    def __reduce__(self) -> tuple[type[TransferRefused], tuple[str, str]]:
        return type(self), (self.reason, self.message)  # pickles (through Ray) with both fields


# ---- raised at the HTTP edge only ----------------------------------------------------------


class Unauthorized(FlotillaError):
    """The request lacks the credentials its route needs, or they are wrong."""

    status_code = 401
    error_type = "authentication_error"


class Forbidden(FlotillaError):
    """The client may not use this route (whatever it sends)."""

    status_code = 403
    error_type = "permission_error"


class PayloadTooLarge(FlotillaError):
    """The request body is larger than `gateway.max_body_bytes`."""

    status_code = 413
    error_type = "invalid_request_error"


class UnsupportedMediaType(FlotillaError):
    """The request body is not declared as JSON."""

    status_code = 415
    error_type = "invalid_request_error"


class Overloaded(RetryableError):
    """The gateway holds as many requests as it admits (`gateway.max_queued_requests`); retry later.
    The type is OpenAI's for a rate limit on requests."""

    status_code = 429
    error_type = "requests"
