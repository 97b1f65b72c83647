"""The exceptions the client raises: one hierarchy rooted at AlloyError."""

from __future__ import annotations


class AlloyError(Exception):
    """An error answered by the Alloy server, or met while talking to it.

    ``status`` is the HTTP status (``None`` when no answer came), ``code`` the snake_case error
    code of the server (or one of the client's own: ``connection_error``, ``invalid_response``,
    ``http_<status>``, ``state_mismatch``, ``timeout``), ``message`` a sentence for a person.
    """

    def __init__(self, status: int | None, code: str, message: str) -> None:
        super().__init__(status, code, message)
        self.status = status
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, "
            f"message={self.message!r})"
        )


class AuthenticationError(AlloyError):
    """No API key, or one the server does not accept (HTTP 401)."""


class InvalidRedirectUri(AlloyError):
    """The redirect URI is not allowed for this account (``invalid_redirect_uri``)."""


class InvalidAuthorizationCode(AlloyError):
    """The code is used, unknown, expired or for another connector (``invalid_grant``)."""


class NotFound(AlloyError):
    """The object does not exist, or belongs to another account (HTTP 404)."""


class ConnectionNotFound(NotFound):
    """The connection ID is unknown, deleted or another account's."""


class NeedsReauth(AlloyError):
    """The provider refused to refresh the connection: the user must connect again (409)."""


class RateLimited(AlloyError):
    """Too many requests (HTTP 429); ``retry_after`` is in seconds when the server said."""

    def __init__(
        self, status: int | None, code: str, message: str, retry_after: float | None = None
    ) -> None:
        super().__init__(status, code, message)
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[type[RateLimited], tuple[int | None, str, str, float | None]]:
        return (type(self), (self.status, self.code, self.message, self.retry_after))
