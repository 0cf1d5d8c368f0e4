"""`scrape`: fetch one page and return its main text and metadata.

The fetch goes through the kit's `SafeFetcher` (the same SSRF guard media-api uses for remote
uploads: public addresses only, pinned connections, checked redirects, size and time limits), so a
model cannot be talked into reading the cluster's internal services or the cloud metadata endpoint.
HTML is reduced to its main text by trafilatura (boilerplate such as navigation and footers
dropped), with metadata from the page head: title, description, canonical URL, language, and the
page's links resolved to absolute URLs. Other text-like types (plain text, JSON, PDF) are returned
as text with the metadata that exists.

Serper's scraper (`serper_scrape_url` plus the key) is an optional first backend; when it fails the
page is fetched directly, and the payload says which path answered.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urldefrag, urljoin

import httpx
import lxml.html

from apps.common.errors import APIError
from apps.common.safe_fetch import Fetched, SafeFetcher
from apps.mcp_tools.services.documents import HTML_TYPES, decode_text, extract_text
from apps.mcp_tools.services.errors import ToolFailure

PREVIEW_LIMIT = 600
# A model's context is the real limit: past this the text is cut and `truncated` says so.
TEXT_LIMIT = 100_000
MAX_LINKS = 100


@dataclass(frozen=True)
class SerperScraper:
    client: httpx.AsyncClient
    url: str
    api_key: str
    timeout_seconds: float

    async def scrape(self, url: str, include_markdown: bool) -> dict[str, Any]:
        response = await self.client.post(
            self.url,
            json={"url": url, "includeMarkdown": include_markdown},
            headers={"X-API-KEY": self.api_key},
            timeout=self.timeout_seconds,
        )
        response.raise_for_status()
        body = response.json()
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            raise ValueError("no 'text' in Serper's answer")
        return body


class Scraper:
    def __init__(self, fetcher: SafeFetcher, serper: SerperScraper | None = None) -> None:
        self.fetcher = fetcher
        self.serper = serper

    async def scrape(self, url: str, include_markdown: bool) -> dict[str, Any]:
        if self.serper is not None:
            try:
                body = await self.serper.scrape(url, include_markdown)
            except (httpx.HTTPError, ValueError):
                pass  # the direct fetch below is the fallback
            else:
                return _payload(url, body["text"], body.get("markdown"), body.get("metadata") or {}, "serper")
        fetched = await self._fetch(url)
        if fetched.content_type in HTML_TYPES:
            html = decode_text(fetched.content, _charset(fetched))
            text, markdown, metadata = await asyncio.to_thread(
                _from_html, html, fetched.url, include_markdown
            )
        else:
            text = await extract_text(fetched.content, fetched.content_type)
            markdown, metadata = None, {}
        metadata.update(
            content_type=fetched.content_type, status_code=fetched.status_code, final_url=fetched.url
        )
        return _payload(url, text, markdown, metadata, "direct")

    async def _fetch(self, url: str) -> Fetched:
        try:
            fetched = await self.fetcher.get(
                url, accept="text/html,application/xhtml+xml,text/*;q=0.9,*/*;q=0.5"
            )
        except APIError as exc:
            raise ToolFailure(f"Could not fetch {url}: {exc.message}") from exc
        if fetched.status_code >= 400:
            raise ToolFailure(f"Could not fetch {url}: the site answered HTTP {fetched.status_code}.")
        return fetched


def _charset(fetched: Fetched) -> str | None:
    content_type: str = fetched.headers.get("content-type", "")
    _, _, params = content_type.partition(";")
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.lower() == "charset" and value:
            return value.strip('"')
    return None


def _from_html(html: str, url: str, include_markdown: bool) -> tuple[str, str | None, dict[str, Any]]:
    import trafilatura  # noqa: PLC0415 - heavy import, only needed here

    text = trafilatura.extract(html, url=url, favor_recall=True) or ""
    markdown = (
        trafilatura.extract(html, url=url, output_format="markdown", include_links=True, favor_recall=True)
        if include_markdown
        else None
    )
    found = trafilatura.extract_metadata(html, default_url=url)
    tree = lxml.html.fromstring(html) if html.strip() else None
    if not text and tree is not None:
        text = " ".join(tree.text_content().split())
    metadata: dict[str, Any] = {
        "title": (found.title if found else None) or _head_title(tree),
        "description": found.description if found else None,
        "canonical_url": (found.url if found else None) or url,
        "site_name": found.sitename if found else None,
        "author": found.author if found else None,
        "date": found.date if found else None,
        "language": _language(tree),
        "links": _links(tree, url),
    }
    return text, markdown, metadata


def _head_title(tree: Any) -> str | None:
    if tree is None:
        return None
    titles = tree.xpath("//title/text()")
    return str(titles[0]).strip() if titles else None


def _language(tree: Any) -> str | None:
    if tree is None:
        return None
    for query in ("/html/@lang", "//meta[@http-equiv='content-language']/@content", "//html/@xml:lang"):
        try:
            values = tree.xpath(query)
        except lxml.etree.XPathError:
            continue
        if values and str(values[0]).strip():
            return str(values[0]).strip()
    return None


def _links(tree: Any, base: str) -> list[dict[str, str]]:
    if tree is None:
        return []
    links: list[dict[str, str]] = []
    seen: set[str] = set()
    for anchor in tree.xpath("//a[@href]"):
        href = urldefrag(urljoin(base, anchor.get("href").strip()))[0]
        if not href.startswith(("http://", "https://")) or href in seen:
            continue
        seen.add(href)
        links.append({"url": href, "text": " ".join(anchor.text_content().split())[:200]})
        if len(links) >= MAX_LINKS:
            break
    return links


def _payload(
    url: str, text: str, markdown: str | None, metadata: dict[str, Any], backend: str
) -> dict[str, Any]:
    text = text.strip()
    preview = text if len(text) <= PREVIEW_LIMIT else text[:PREVIEW_LIMIT].rstrip() + "…"
    payload: dict[str, Any] = {
        "source_url": url,
        "text": text[:TEXT_LIMIT],
        "truncated": len(text) > TEXT_LIMIT,
        "text_preview": preview,
        "metadata": metadata,
        "backend": backend,
        "fetched_at": datetime.now(UTC).isoformat(),
    }
    if markdown is not None:
        payload["markdown"] = markdown[:TEXT_LIMIT]
    return payload
