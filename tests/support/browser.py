"""A cookie-keeping HTTP "browser" that walks redirects and HTML forms by hand.

Enough to drive OAuth authorize flows (oidc-provider's dev login and consent pages, alloy's
own redirects) without Chromium. Redirects are followed manually so a test can stop right
before a URL it wants to handle itself (a callback that nothing serves, say).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from types import TracebackType
from typing import Any

import httpx2

MAX_REDIRECTS = 20
_REDIRECT_STATUSES = {301, 302, 303, 307, 308}


@dataclass
class HtmlForm:
    action: str
    method: str
    inputs: dict[str, str] = field(default_factory=dict)


class _PageParser(HTMLParser):
    """Collects <form>s (with their named inputs) and <a href> links of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[HtmlForm] = []
        self.links: list[str] = []
        self._form: HtmlForm | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {name: value or "" for name, value in attrs}
        if tag == "form":
            self._form = HtmlForm(
                action=attr.get("action", ""), method=(attr.get("method") or "get").upper()
            )
            self.forms.append(self._form)
        elif tag == "a" and "href" in attr:
            self.links.append(attr["href"])
        elif self._form is not None and tag in {"input", "textarea", "select"}:
            name = attr.get("name")
            kind = attr.get("type", "text").lower()
            if not name or kind in {"submit", "button", "image", "reset", "file"}:
                return
            if kind in {"checkbox", "radio"} and "checked" not in attr:
                return
            self._form.inputs[name] = attr.get("value", "on" if kind == "checkbox" else "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None


def parse_page(html: str) -> _PageParser:
    parser = _PageParser()
    parser.feed(html)
    parser.close()
    return parser


def _describe(response: httpx2.Response) -> str:
    body = response.text[:500].replace("\n", " ")
    return f"{response.request.method} {response.url} -> {response.status_code}: {body}"


class HttpBrowser:
    """httpx2.AsyncClient with a cookie jar, no automatic redirects, and form helpers."""

    def __init__(self, *, timeout: float = 10.0, headers: dict[str, str] | None = None) -> None:
        self.client = httpx2.AsyncClient(
            follow_redirects=False,
            timeout=timeout,
            headers={"Accept": "text/html,application/json;q=0.9,*/*;q=0.8", **(headers or {})},
        )

    async def __aenter__(self) -> HttpBrowser:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.client.aclose()

    @property
    def cookies(self) -> httpx2.Cookies:
        return self.client.cookies

    async def goto(self, url: str | httpx2.URL, *, stop_at: str) -> httpx2.URL | httpx2.Response:
        """GET `url` and follow redirects.

        Returns the first redirect target that starts with `stop_at` (not requested), or the
        first response that is not a redirect. `url` itself is always requested.
        """
        response = await self.client.get(url)
        return await self._follow(response, stop_at=stop_at)

    async def submit_form(
        self,
        response: httpx2.Response,
        *,
        fields: dict[str, str] | None = None,
        stop_at: str,
        form_index: int = 0,
    ) -> httpx2.URL | httpx2.Response:
        """Submit a <form> of `response` (the first by default) with its inputs plus `fields`,
        then follow redirects like `goto`."""
        forms = parse_page(response.text).forms
        if len(forms) <= form_index:
            raise AssertionError(f"no form #{form_index} on page: {_describe(response)}")
        form = forms[form_index]
        action = response.url.join(form.action) if form.action else response.url
        data = {**form.inputs, **(fields or {})}
        if form.method == "POST":
            result = await self.client.post(action, data=data)
        else:
            result = await self.client.get(action.copy_merge_params(data))
        return await self._follow(result, stop_at=stop_at)

    async def _follow(
        self, response: httpx2.Response, *, stop_at: str
    ) -> httpx2.URL | httpx2.Response:
        for _ in range(MAX_REDIRECTS):
            if response.status_code not in _REDIRECT_STATUSES:
                return response
            location = response.headers.get("location")
            if not location:
                raise AssertionError(f"redirect without Location: {_describe(response)}")
            target = response.url.join(location)
            if str(target).startswith(stop_at):
                return target
            if response.status_code in {307, 308}:
                response = await self.client.request(
                    response.request.method, target, content=response.request.content
                )
            else:
                response = await self.client.get(target)
        raise AssertionError(f"more than {MAX_REDIRECTS} redirects, last: {response.url}")

    async def oidc_login_and_consent(
        self, url: str | httpx2.URL, *, stop_at: str, login: str = "alice"
    ) -> httpx2.URL:
        """Open an authorize URL of oidc-provider, sign in as `login` and grant consent on its
        devInteractions pages, and return the redirect URL that starts with `stop_at`."""
        result = await self.goto(url, stop_at=stop_at)
        for _ in range(6):
            if isinstance(result, httpx2.URL):
                return result
            prompt = _interaction_prompt(result)
            if prompt == "login":
                result = await self.submit_form(
                    result, fields={"login": login, "password": "any-password"}, stop_at=stop_at
                )
            elif prompt == "consent":
                result = await self.submit_form(result, stop_at=stop_at)
            else:
                raise AssertionError(f"not an oidc-provider interaction page: {_describe(result)}")
        raise AssertionError("oidc-provider kept asking for interactions")

    async def oidc_deny(self, url: str | httpx2.URL, *, stop_at: str) -> httpx2.URL:
        """Open an authorize URL of oidc-provider and abort at its first interaction page, so
        the provider redirects with error=access_denied; return that redirect URL."""
        result = await self.goto(url, stop_at=stop_at)
        if isinstance(result, httpx2.URL):
            raise AssertionError(f"reached {result} before any interaction page to deny")
        if _interaction_prompt(result) is None:
            raise AssertionError(f"not an oidc-provider interaction page: {_describe(result)}")
        aborts = [href for href in parse_page(result.text).links if href.endswith("/abort")]
        if not aborts:
            raise AssertionError(f"no abort link on interaction page: {_describe(result)}")
        denied = await self.goto(result.url.join(aborts[0]), stop_at=stop_at)
        if not isinstance(denied, httpx2.URL):
            raise AssertionError(f"abort did not redirect to {stop_at}: {_describe(denied)}")
        return denied


def _interaction_prompt(response: httpx2.Response) -> str | None:
    """The `prompt` hidden input of an oidc-provider devInteractions page ("login"/"consent")."""
    if response.status_code != 200 or "/interaction/" not in response.url.path:
        return None
    for form in parse_page(response.text).forms:
        prompt = form.inputs.get("prompt")
        if prompt:
            return prompt
    return None


def query_params(url: httpx2.URL | str) -> dict[str, Any]:
    """Query parameters of a URL as a plain dict (first value of a repeated key)."""
    return dict(httpx2.URL(str(url)).params.items())
