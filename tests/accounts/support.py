"""A browser's part of the login, played with httpx: follow redirects, fill the provider's form."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


def form_fields(page: str) -> dict[str, str]:
    return {name: html.unescape(value) for name, value in _HIDDEN.findall(page)}


def open_login(client: httpx.Client, target: str | None = None) -> httpx.Response:
    """`GET /v1/auth/login`, followed to the provider's login form (200, HTML)."""
    params = {"redirect_uri": target} if target else None
    page = client.get("/v1/auth/login", params=params, follow_redirects=True)
    assert page.status_code == 200, page.text
    assert page.history and page.history[0].status_code == 302
    return page


def submit(
    client: httpx.Client,
    page: httpx.Response,
    email: str,
    password: str,
    *,
    action: str = "login",
    follow: bool = True,
) -> httpx.Response:
    """Post the login form as a browser would (to the form's action on the page's origin)."""
    fields = {**form_fields(page.text), "email": email, "password": password, "action": action}
    origin = f"{page.url.scheme}://{page.url.netloc.decode()}"
    return client.post(f"{origin}/oidc/authorize", data=fields, follow_redirects=follow)


def browser_login(
    client: httpx.Client, email: str, password: str, *, action: str = "login"
) -> dict[str, Any]:
    """The whole login, redirects followed; the callback's JSON (tokens and user)."""
    done = submit(client, open_login(client), email, password, action=action)
    assert done.status_code == 200, done.text
    assert [r.status_code for r in done.history] == [303], done.history
    body: dict[str, Any] = done.json()
    return body


def query_of(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}
