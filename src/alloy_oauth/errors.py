"""The one error hierarchy of the server: each error knows its HTTP status and snake_case code."""

from __future__ import annotations


class ServiceError(Exception):
    """An error a caller can act on; rendered as `{"error": code, "message": message}`."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.headers = headers or {}


class BadRequest(ServiceError):
    status, code = 400, "bad_request"


class Unauthorized(ServiceError):
    status, code = 401, "unauthorized"


class NotFound(ServiceError):
    status, code = 404, "not_found"


class Conflict(ServiceError):
    status, code = 409, "conflict"


class ProviderFailure(ServiceError):
    status, code = 502, "provider_error"


class InvalidRedirectUri(ServiceError):
    status, code = 400, "invalid_redirect_uri"


class InvalidGrant(ServiceError):
    status, code = 400, "invalid_grant"

    def __init__(self) -> None:
        super().__init__(
            "Invalid authorization code: it is unknown, already used, expired, for another "
            "connector, or its state does not match. Codes are single-use and expire within "
            "10 minutes; exchange the code as soon as your callback receives it."
        )


def connection_not_found() -> NotFound:
    return NotFound(
        "Connection not found: check the connection ID, and that the connection has not been "
        "deleted or revoked (list yours with GET /connections)."
    )
