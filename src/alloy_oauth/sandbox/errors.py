"""OAuth 2.0 error answers (RFC 6749 section 5.2, RFC 6750 section 3.1)."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi.responses import JSONResponse

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class OAuthError(Exception):
    """An error the token, revocation or resource endpoints answer with as JSON.

    Descriptions must never contain a secret: they are shown to the client as they are.
    """

    def __init__(
        self,
        error: str,
        description: str,
        *,
        status_code: int = 400,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status_code = status_code
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        return JSONResponse(
            {"error": self.error, "error_description": self.description},
            status_code=self.status_code,
            headers={**NO_STORE, **self.headers},
        )


def invalid_request(description: str) -> OAuthError:
    return OAuthError("invalid_request", description)


def missing_parameter(name: str) -> OAuthError:
    return OAuthError("invalid_request", f"Missing required parameter: {name}.")


def invalid_grant(description: str) -> OAuthError:
    return OAuthError("invalid_grant", description)


def invalid_client(description: str) -> OAuthError:
    return OAuthError(
        "invalid_client",
        description,
        status_code=401,
        headers={"WWW-Authenticate": 'Basic realm="sandbox"'},
    )


def invalid_token(description: str, *, missing: bool = False) -> OAuthError:
    # RFC 6750 3.1: a request without any credentials gets no error code in the challenge.
    challenge = (
        'Bearer realm="sandbox"'
        if missing
        else f'Bearer realm="sandbox", error="invalid_token", error_description="{description}"'
    )
    return OAuthError(
        "invalid_token", description, status_code=401, headers={"WWW-Authenticate": challenge}
    )
