"""What every provider emulator shares: clients, codes, tokens, consent, PKCE, recording.

A subclass states the provider's paths and shapes its answers (token, error, API) the way the
provider documents them; this base keeps the OAuth state and checks the requests.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from alloy_oauth.testing._server import serve_in_thread


@dataclass
class Grant:
    """What the user approved: one client, one user, some scopes."""

    client_id: str
    user: str
    scopes: list[str]
    redirect_uri: str | None = None
    code_challenge: str | None = field(default=None, repr=False)
    # Authorize parameters a provider decides on later (access_type, owner, ...).
    params: dict[str, str] = field(default_factory=dict)


@dataclass
class Issued:
    """An access token and when it stops working (None: never)."""

    grant: Grant
    expires_at: float | None


@dataclass(frozen=True)
class RecordedRequest:
    """One request an emulator received. Headers and parameters hold secrets: not in repr."""

    method: str
    path: str
    headers: dict[str, str] = field(repr=False)
    params: dict[str, str] = field(repr=False)
    content_type: str = ""

    @property
    def grant_type(self) -> str | None:
        return self.params.get("grant_type")

    @property
    def basic_auth(self) -> tuple[str, str] | None:
        """(client_id, client_secret) from an HTTP Basic Authorization header, if any."""
        return _basic_credentials(self.headers.get("authorization", ""))


def _basic_credentials(authorization: str) -> tuple[str, str] | None:
    """(user, password) of an HTTP Basic Authorization header value, or None."""
    if not authorization.lower().startswith("basic "):
        return None
    try:
        user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
    except ValueError:
        return None
    return unquote(user), unquote(password)


class EmulatorError(Exception):
    """A refused token request, shaped into the provider's error answer by the subclass."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status


class ProviderEmulator:
    """A small HTTP provider reproducing one real provider's documented OAuth behaviour.

    Use it as a context manager; it serves on 127.0.0.1 until the block ends:

        with NotionEmulator() as notion:
            notion.base_url, notion.client_id, notion.client_secret
            notion.providers_entry()  # for ALLOY_PROVIDERS_FILE
            notion.connector_env()    # ALLOY_CONNECTOR_NOTION_CLIENT_ID / _SECRET

    By default the authorize endpoint approves at once (`auto_approve`); with
    `auto_approve=False` it shows a consent page with an Allow and a Deny form.
    """

    connector_id: ClassVar[str]
    authorize_path: ClassVar[str]
    token_path: ClassVar[str]
    revoke_path: ClassVar[str | None] = None
    # "basic", "body" or "either": where the token endpoint takes client credentials.
    client_auth: ClassVar[str] = "either"
    access_token_ttl: ClassVar[int | None] = 3600
    rotates_refresh_tokens: ClassVar[bool] = False
    # Without rotation: whether a refresh answer repeats the refresh token (HubSpot) or
    # leaves it out (Google).
    repeats_refresh_token: ClassVar[bool] = False
    # False: code_challenge is ignored (the provider does not do PKCE).
    supports_pkce: ClassVar[bool] = True
    access_token_prefix: ClassVar[str] = "at_"
    refresh_token_prefix: ClassVar[str] = "rt_"

    def __init__(self, *, client_id: str | None = None, client_secret: str | None = None,
                 auto_approve: bool = True, user: str = "ada") -> None:
        self.client_id = client_id or f"{self.connector_id}-emulated-client"
        self.client_secret = client_secret or secrets.token_urlsafe(24)
        self.auto_approve = auto_approve
        self.user = user
        self.codes: dict[str, Grant] = {}
        self.access_tokens: dict[str, Issued] = {}
        self.refresh_tokens: dict[str, Grant] = {}
        self.token_requests: list[RecordedRequest] = []
        self.revoke_requests: list[RecordedRequest] = []
        self.api_requests: list[RecordedRequest] = []
        self.authorize_requests: list[dict[str, str]] = []
        self.consented: set[tuple[str, str]] = set()
        # Answers the token endpoint gives next instead of the real thing.
        self.queued_token_answers: list[tuple[int, Any, str | None]] = []
        self._base_url: str | None = None
        self._running: contextlib.ExitStack | None = None
        self.app = FastAPI(title=f"{self.connector_id} emulator", docs_url=None, redoc_url=None,
                           openapi_url=None)
        self._routes()

    # --- running ----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the emulator is not running: use it in a `with` block")
        return self._base_url

    def start(self) -> ProviderEmulator:
        stack = contextlib.ExitStack()
        self._base_url = stack.enter_context(serve_in_thread(self.app))
        self._running = stack
        return self

    def stop(self) -> None:
        if self._running is not None:
            self._running.close()
        self._running = None
        self._base_url = None

    def __enter__(self) -> ProviderEmulator:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- what a test hands to alloy-oauth -----------------------------------------------------

    def url_overrides(self) -> dict[str, str]:
        """The catalog URL fields of the connector, pointed at this emulator."""
        urls = {"authorization_url": self.base_url + self.authorize_path,
                "token_url": self.base_url + self.token_path}
        if self.revoke_path:
            urls["revocation_url"] = self.base_url + self.revoke_path
        return urls

    def providers_entry(self, connector_id: str | None = None) -> dict[str, Any]:
        """An ALLOY_PROVIDERS_FILE entry: the built-in connector with this emulator's URLs."""
        return {connector_id or self.connector_id: {"extends": self.connector_id,
                                                    **self.url_overrides()}}

    def connector_env(self, connector_id: str | None = None) -> dict[str, str]:
        env = (connector_id or self.connector_id).upper().replace("-", "_")
        return {f"ALLOY_CONNECTOR_{env}_CLIENT_ID": self.client_id,
                f"ALLOY_CONNECTOR_{env}_CLIENT_SECRET": self.client_secret}

    def issue_token_answer(self, status: int, body: Any, content_type: str | None = None) -> None:
        """Make the next token request get this answer instead of the real one (a string body
        is sent as text, with `content_type` if given; anything else as JSON)."""
        self.queued_token_answers.append((status, body, content_type))

    def expire_access_tokens(self) -> None:
        """Every access token issued so far stops working now."""
        for issued in self.access_tokens.values():
            issued.expires_at = time.time() - 1

    # --- hooks a provider overrides -----------------------------------------------------------

    def check_authorize(self, params: dict[str, str]) -> str | None:
        """Why this authorize request is refused (shown as a page), or None."""
        return None

    def requested_scopes(self, params: dict[str, str]) -> list[str]:
        return [s for s in params.get("scope", "").replace(",", " ").split() if s]

    def callback_params(self, grant: Grant) -> dict[str, str]:
        """Extra parameters on the redirect back to the client (QuickBooks' realmId)."""
        return {}

    async def read_token_params(self, request: Request) -> dict[str, str]:
        """The parameters of a token request; form-encoded by default."""
        body = (await request.body()).decode()
        return dict(parse_qsl(body, keep_blank_values=True))

    def check_token_request(self, request: Request, params: dict[str, str]) -> None:
        """Provider-specific checks of a token request (a required header, ...)."""

    def issues_refresh_token(self, grant: Grant) -> bool:
        return True

    def token_answer(self, grant: Grant, access_token: str, refresh_token: str | None, *,
                     refreshing: bool) -> Response:
        body: dict[str, Any] = {"access_token": access_token, "token_type": "Bearer",
                                "scope": " ".join(grant.scopes)}
        if self.access_token_ttl is not None:
            body["expires_in"] = self.access_token_ttl
        if refresh_token:
            body["refresh_token"] = refresh_token
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    def error_answer(self, error: EmulatorError, *, refreshing: bool) -> Response:
        return JSONResponse({"error": error.error, "error_description": error.description},
                            status_code=error.status)

    async def revoke(self, request: Request) -> Response:
        params = await self.read_token_params(request)
        self.revoke_requests.append(self._record(request, params))
        self.forget(params.get("token", ""))
        return Response(status_code=200)

    def register_api(self, app: FastAPI) -> None:
        """The provider's one API call."""

    # --- shared mechanics --------------------------------------------------------------------

    def forget(self, token: str) -> bool:
        """Revoke a token and everything issued under the same grant."""
        grant = self.refresh_tokens.pop(token, None)
        issued = self.access_tokens.pop(token, None)
        grant = grant or (issued.grant if issued else None)
        if grant is None:
            return False
        for key in [k for k, v in self.access_tokens.items() if v.grant is grant]:
            del self.access_tokens[key]
        for key in [k for k, v in self.refresh_tokens.items() if v is grant]:
            del self.refresh_tokens[key]
        return True

    def bearer_grant(self, request: Request, *schemes: str) -> Grant | None:
        """The grant behind a valid, unexpired access token in the Authorization header."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() not in {s.lower() for s in (schemes or ("Bearer",))}:
            return None
        return self.live_grant(token.strip())

    def live_grant(self, access_token: str) -> Grant | None:
        """The grant behind an issued access token that has not expired, or None."""
        issued = self.access_tokens.get(access_token)
        if issued is None or (issued.expires_at is not None and issued.expires_at < time.time()):
            return None
        return issued.grant

    def record_api(self, request: Request) -> None:
        self.api_requests.append(self._record(request, dict(request.query_params)))

    @staticmethod
    def _record(request: Request, params: dict[str, str]) -> RecordedRequest:
        return RecordedRequest(
            method=request.method, path=request.url.path,
            headers={k.lower(): v for k, v in request.headers.items()}, params=dict(params),
            content_type=request.headers.get("content-type", "").split(";")[0].strip(),
        )

    def _new_tokens(self, grant: Grant) -> tuple[str, str | None]:
        access = self.access_token_prefix + secrets.token_urlsafe(24)
        expires = None if self.access_token_ttl is None else time.time() + self.access_token_ttl
        self.access_tokens[access] = Issued(grant, expires)
        refresh = None
        if self.issues_refresh_token(grant):
            refresh = self.refresh_token_prefix + secrets.token_urlsafe(24)
            self.refresh_tokens[refresh] = grant
        return access, refresh

    def _client_of(self, request: Request, params: dict[str, str]) -> tuple[str, str] | None:
        basic = _basic_credentials(request.headers.get("authorization", ""))
        body = (params.get("client_id"), params.get("client_secret"))
        if self.client_auth in ("basic", "either") and basic:
            return basic
        if self.client_auth in ("body", "either") and body[0] and body[1]:
            return body[0], body[1]
        return None

    def _authenticate(self, request: Request, params: dict[str, str]) -> None:
        client = self._client_of(request, params)
        if client is None:
            where = {"basic": "an HTTP Basic header", "body": "the request body",
                     "either": "HTTP Basic or the body"}[self.client_auth]
            raise EmulatorError("invalid_client",
                                f"client credentials are required in {where}", 401)
        if client != (self.client_id, self.client_secret):
            raise EmulatorError("invalid_client", "unknown client or wrong secret", 401)

    def _redeem_code(self, params: dict[str, str]) -> Grant:
        code = params.get("code", "")
        grant = self.codes.pop(code, None)
        if grant is None:
            raise EmulatorError("invalid_grant", "the code is unknown, used or expired")
        if grant.redirect_uri and params.get("redirect_uri") != grant.redirect_uri:
            raise EmulatorError("invalid_grant", "redirect_uri does not match the authorize "
                                                 "request")
        if grant.code_challenge:
            verifier = params.get("code_verifier", "")
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            if digest.rstrip(b"=").decode() != grant.code_challenge:
                raise EmulatorError("invalid_grant", "the PKCE code_verifier does not match")
        return grant

    def _use_refresh_token(self, params: dict[str, str]) -> tuple[Grant, str | None]:
        token = params.get("refresh_token", "")
        grant = self.refresh_tokens.get(token)
        if grant is None:
            raise EmulatorError("invalid_grant", "the refresh token is unknown or revoked")
        keep: str | None = token
        if self.rotates_refresh_tokens:
            del self.refresh_tokens[token]
            keep = None
        return grant, keep

    async def token_endpoint(self, request: Request) -> Response:
        params = await self.read_token_params(request)
        self.token_requests.append(self._record(request, params))
        refreshing = params.get("grant_type") == "refresh_token"
        if self.queued_token_answers:
            status, body, ctype = self.queued_token_answers.pop(0)
            if isinstance(body, str):
                return Response(body, status_code=status, media_type=ctype or "text/plain")
            return JSONResponse(body, status_code=status)
        try:
            self.check_token_request(request, params)
            self._authenticate(request, params)
            if params.get("grant_type") == "authorization_code":
                grant = self._redeem_code(params)
                access, refresh = self._new_tokens(grant)
            elif refreshing:
                grant, kept = self._use_refresh_token(params)
                access, new_refresh = self._new_tokens(grant)
                if kept is not None:  # this provider does not rotate refresh tokens
                    if new_refresh is not None:
                        del self.refresh_tokens[new_refresh]
                    new_refresh = kept if self.repeats_refresh_token else None
                refresh = new_refresh
            else:
                raise EmulatorError("unsupported_grant_type",
                                    f"grant_type '{params.get('grant_type')}' is not supported")
        except EmulatorError as exc:
            return self.error_answer(exc, refreshing=refreshing)
        return self.token_answer(grant, access, refresh, refreshing=refreshing)

    def _authorize_error(self, message: str) -> HTMLResponse:
        return HTMLResponse(f"<h1>Authorization error</h1><p>{html.escape(message)}</p>",
                            status_code=400)

    def _approve(self, params: dict[str, str]) -> Response:
        grant = Grant(
            client_id=params["client_id"], user=self.user,
            scopes=self.requested_scopes(params), redirect_uri=params.get("redirect_uri"),
            code_challenge=params.get("code_challenge") if self.supports_pkce else None,
            params=params,
        )
        code = secrets.token_urlsafe(24)
        self.codes[code] = grant
        query = {"code": code, **self.callback_params(grant)}
        if "state" in params:
            query["state"] = params["state"]
        self.consented.add((grant.client_id, grant.user))
        return RedirectResponse(_add_query(params["redirect_uri"], query), status_code=302)

    def _check_authorize(self, params: dict[str, str]) -> str | None:
        if params.get("client_id") != self.client_id:
            return "unknown client_id"
        if not params.get("redirect_uri"):
            return "redirect_uri is required by this emulator"
        if params.get("response_type", "code") != "code":
            return "only response_type=code is supported"
        if (self.supports_pkce and "code_challenge" in params
                and params.get("code_challenge_method") != "S256"):
            return "code_challenge_method must be S256"
        return self.check_authorize(params)

    def _consent_page(self, params: dict[str, str]) -> HTMLResponse:
        hidden = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                         for k, v in params.items())
        page = (f"<h1>{html.escape(self.connector_id)} emulator</h1>"
                f"<p>Allow access for {html.escape(self.user)}?</p>"
                f'<form method="post">{hidden}<input type="hidden" name="decision" '
                f'value="allow"><button>Allow</button></form>'
                f'<form method="post">{hidden}<input type="hidden" name="decision" '
                f'value="deny"><button>Deny</button></form>')
        return HTMLResponse(page)

    def _routes(self) -> None:
        app = self.app

        @app.get(self.authorize_path)
        async def authorize(request: Request) -> Response:
            params = dict(request.query_params)
            self.authorize_requests.append(params)
            problem = self._check_authorize(params)
            if problem:
                return self._authorize_error(problem)
            if self.auto_approve:
                return self._approve(params)
            return self._consent_page(params)

        @app.post(self.authorize_path)
        async def decide(request: Request) -> Response:
            body = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
            decision = body.pop("decision", "deny")
            problem = self._check_authorize(body)
            if problem:
                return self._authorize_error(problem)
            if decision != "allow":
                query = {"error": "access_denied"}
                if "state" in body:
                    query["state"] = body["state"]
                return RedirectResponse(_add_query(body["redirect_uri"], query), status_code=302)
            return self._approve(body)

        app.add_api_route(self.token_path, self.token_endpoint, methods=["POST"])
        if self.revoke_path:
            app.add_api_route(self.revoke_path, self.revoke, methods=["POST"])
        self.register_api(app)


def _add_query(uri: str, params: dict[str, str]) -> str:
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


async def json_params(request: Request) -> dict[str, str]:
    """Parameters of a JSON-object body, as strings."""
    try:
        loaded = json.loads((await request.body()) or b"{}")
    except ValueError:
        return {}
    if not isinstance(loaded, dict):
        return {}
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in loaded.items()}


@contextlib.contextmanager
def running(*emulators: ProviderEmulator) -> Iterator[tuple[ProviderEmulator, ...]]:
    """Run several emulators at once."""
    with contextlib.ExitStack() as stack:
        yield tuple(stack.enter_context(e) for e in emulators)
