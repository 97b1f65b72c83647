"""The sandbox's HTML pages (consent and error) and their security headers."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader

from alloy_oauth.sandbox.authorize import AuthorizationRequest, origin_of

_env = Environment(
    loader=PackageLoader("alloy_oauth.sandbox", "templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
)

_SCOPE_DESCRIPTIONS = {
    "profile": "see your username and name",
    "email": "see your email address",
    "openid": "confirm who you are",
    "offline_access": "keep access while you are not using it",
}

_COMMON_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class ScopeLine:
    name: str
    description: str


def _csp(form_action: str | None) -> str:
    directive = f"form-action {form_action}; " if form_action else ""
    return (
        f"default-src 'none'; style-src 'unsafe-inline'; {directive}"
        "frame-ancestors 'none'; base-uri 'none'"
    )


def consent_page(
    request: AuthorizationRequest,
    *,
    action: str,
    username: str,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """The Allow / Deny page; its form posts back to `action` with every authorize parameter."""
    redirect_origin = origin_of(request.redirect_uri)
    html = _env.get_template("consent.html").render(
        client_id=request.client_id,
        redirect_origin=redirect_origin,
        scopes=[
            ScopeLine(name, _SCOPE_DESCRIPTIONS.get(name, "use this permission of your account"))
            for name in request.scopes
        ],
        params=request.params,
        action=action,
        username=username,
        error=error,
    )
    # No form-action: Chromium applies it to every redirect after the post, and the chain
    # goes on from the client's callback to the client's own app, an origin we cannot know.
    headers = {**_COMMON_HEADERS, "Content-Security-Policy": _csp(None)}
    return HTMLResponse(html, status_code=status_code, headers=headers)


def error_page(title: str, detail: str, *, status_code: int = 400) -> HTMLResponse:
    html = _env.get_template("error.html").render(title=title, detail=detail)
    headers = {**_COMMON_HEADERS, "Content-Security-Policy": _csp("'none'")}
    return HTMLResponse(html, status_code=status_code, headers=headers)
