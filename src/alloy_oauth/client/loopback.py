"""Connect from a terminal: run the OAuth flow with a one-shot callback server on loopback
(RFC 8252, section 7.3), and write the resulting connection ID into a .env file."""

from __future__ import annotations

import contextlib
import hmac
import html
import os
import re
import socket
import stat
import tempfile
import threading
import webbrowser
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ._errors import AlloyError
from ._models import Connection
from ._sync import AlloyOAuthFlow

__all__ = ["connect_via_loopback", "write_env_file"]

CALLBACK_PATH = "/callback"


class _Outcome:
    """What the callback brought, handed from the server thread to the waiting caller."""

    def __init__(self, flow: AlloyOAuthFlow, connector_id: str) -> None:
        self.flow = flow
        self.connector_id = connector_id
        self.expected_state: str | None = None
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.connection: Connection | None = None
        self.error: BaseException | None = None


class _CallbackServer(ThreadingHTTPServer):
    daemon_threads = True
    outcome: _Outcome


class _IPv6CallbackServer(_CallbackServer):
    address_family = socket.AF_INET6


def _page(title: str, text: str) -> bytes:
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head>"
        "<body style='font-family: sans-serif; max-width: 36em; margin: 4em auto'>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></body></html>"
    ).encode()


class _CallbackHandler(BaseHTTPRequestHandler):
    server: _CallbackServer
    timeout = 10  # a browser's idle speculative connection must not hold a thread forever

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path != CALLBACK_PATH:
            self._answer(404, "Not found", "This address only receives the sign-in callback.")
            return
        params = {name: values[0] for name, values in parse_qs(url.query).items()}
        outcome = self.server.outcome
        with outcome.lock:
            if outcome.done.is_set():
                self._answer(
                    409, "Already finished", "This sign-in is over; you can close this window."
                )
                return
            status, title, text = _finish(outcome, params)
        self._answer(status, title, text)

    def _answer(self, status: int, title: str, text: str) -> None:
        body = _page(title, text)
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # The request line carries the one-time code: log nothing.
        return


def _finish(outcome: _Outcome, params: Mapping[str, str]) -> tuple[int, str, str]:
    """Decide on one callback; sets outcome.done unless the request carried nothing usable."""
    error = params.get("error")
    code = params.get("code")
    state = params.get("state")
    if not error and not code:
        return 400, "Missing code", "This callback carries neither a code nor an error."
    expected = outcome.expected_state or ""
    # A provider error may come back without state; a code never may.
    state_ok = hmac.compare_digest((state or "").encode(), expected.encode())
    if not state_ok and not (error and state is None):
        outcome.error = AlloyError(
            None,
            "state_mismatch",
            "The callback's state does not match the one of this flow; the answer was not "
            "for this sign-in. Run the command again.",
        )
        outcome.done.set()
        return 400, "Sign-in failed", "The answer did not match this sign-in (state mismatch)."
    if error:
        description = params.get("error_description") or f"The provider answered {error}."
        outcome.error = AlloyError(None, error, description)
        outcome.done.set()
        return 400, "Sign-in failed", f"{error}: {description}"
    assert code is not None
    try:
        outcome.connection = outcome.flow.handle_oauth_callback(outcome.connector_id, code, state)
    except AlloyError as exc:
        outcome.error = exc
        outcome.done.set()
        return 502, "Sign-in failed", f"Could not complete the connection: {exc.message}"
    except Exception as exc:
        outcome.error = exc
        outcome.done.set()
        return 500, "Sign-in failed", "Could not complete the connection; see the terminal."
    outcome.done.set()
    return 200, "Connected", "You can close this window and return to the terminal."


def connect_via_loopback(
    flow: AlloyOAuthFlow,
    connector_id: str,
    *,
    user_id: str | None = None,
    scopes: Sequence[str] | str | None = None,
    data: Mapping[str, Any] | None = None,
    open_browser: bool = True,
    timeout: float = 300.0,
    on_url: Callable[[str], object] = print,
    host: str = "127.0.0.1",
    port: int = 0,
) -> Connection:
    """Run the whole flow from a terminal and return the new connection.

    Listens on ``http://{host}:{port}/callback`` (a free port by default), starts the flow with
    that redirect URI, shows the authorization URL through ``on_url`` (and opens it in the
    browser unless ``open_browser`` is false), waits up to ``timeout`` seconds for the browser,
    checks the state and exchanges the code. Raises AlloyError with code ``state_mismatch``,
    ``timeout``, the provider's error code, or the server's.
    """
    server_class = _IPv6CallbackServer if ":" in host else _CallbackServer
    try:
        server = server_class((host, port), _CallbackHandler)
    except OSError as exc:
        raise AlloyError(
            None,
            "loopback_unavailable",
            f"Could not listen on {host}:{port} for the callback ({exc.strerror or exc}).",
        ) from None
    outcome = _Outcome(flow, connector_id)
    server.outcome = outcome
    thread: threading.Thread | None = None
    try:
        url_host = f"[{host}]" if ":" in host else host
        redirect_uri = f"http://{url_host}:{server.server_address[1]}{CALLBACK_PATH}"
        start = flow.initiate_oauth_flow(
            connector_id, redirect_uri, user_id=user_id, scopes=scopes, data=data
        )
        outcome.expected_state = start.state
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="alloy-oauth-loopback",
            daemon=True,
        )
        thread.start()
        on_url(start.oauth_url)
        if open_browser:
            # The URL was shown through on_url: without a browser the user opens it by hand.
            with contextlib.suppress(webbrowser.Error):
                webbrowser.open(start.oauth_url)
        if not outcome.done.wait(timeout):
            with outcome.lock:  # a callback being handled right now still counts
                if not outcome.done.is_set():
                    outcome.done.set()
                    raise AlloyError(
                        None,
                        "timeout",
                        f"No answer reached {redirect_uri} within {timeout:g} seconds; "
                        "run the command again and finish the sign-in in the browser.",
                    )
    finally:
        if thread is not None:
            server.shutdown()
            thread.join()
        server.server_close()
    if outcome.error is not None:
        raise outcome.error
    assert outcome.connection is not None
    return outcome.connection


_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_\-.:/@+,]*\Z")


def _env_value(value: str) -> str:
    if _PLAIN_VALUE.match(value):
        return value
    if "'" not in value:
        return f"'{value}'"
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def write_env_file(path: str | os.PathLike[str], key: str, value: str) -> None:
    """Set ``key=value`` in a .env file: replace the key's line (an ``export`` prefix is kept),
    or append it; every other line stays as it was. The file is created (mode 600) if missing.
    """
    if not _KEY.match(key):
        raise ValueError(f"not a valid environment variable name: {key!r}")
    if "\n" in value or "\r" in value:
        raise ValueError("the value must be a single line")
    target = Path(path).resolve()
    existing = target.read_text(encoding="utf-8") if target.exists() else ""
    pattern = re.compile(rf"\s*(export\s+)?{re.escape(key)}\s*=")
    line = f"{key}={_env_value(value)}"
    lines: list[str] = []
    replaced = False
    for old in existing.splitlines():
        match = pattern.match(old)
        if match is None:
            lines.append(old)
        elif not replaced:
            lines.append((match.group(1) or "") + line)
            replaced = True
        # later duplicates of the key are dropped: they would override the new value
    if not replaced:
        lines.append(line)
    mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else 0o600
    fd, tmp = tempfile.mkstemp(prefix=".env.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write("\n".join(lines) + "\n")
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
