"""Text out of fetched bytes: plain text, JSON, HTML (main text via trafilatura) and PDF (pypdf).

Used by `scrape` for non-HTML pages and by file search for media-api files. Extraction is CPU-bound
and runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import io
import logging

from pypdf import PdfReader
from pypdf.errors import PdfReadError

from apps.common.storable import storable_text
from apps.mcp_tools.services.errors import ToolFailure

log = logging.getLogger(__name__)

TEXT_TYPES = frozenset({"application/json", "application/xml", "application/x-ndjson", "application/csv"})
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
PDF_TYPE = "application/pdf"


def is_supported(content_type: str) -> bool:
    return content_type.startswith("text/") or content_type in TEXT_TYPES | HTML_TYPES | {PDF_TYPE}


def decode_text(content: bytes, charset: str | None = None) -> str:
    try:
        return content.decode(charset or "utf-8")
    except (UnicodeDecodeError, LookupError):
        return content.decode("utf-8", errors="replace")


def _pdf_text(content: bytes) -> str:
    try:
        reader = PdfReader(io.BytesIO(content))
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise ToolFailure(f"The PDF could not be read ({type(exc).__name__}).") from exc
    # A font may map a glyph to an unpaired surrogate (pypdf keeps it): such text can be neither
    # stored (file search) nor sent as JSON (scrape), so it is replaced (`apps.common.storable`).
    return storable_text("\n\n".join(page.strip() for page in pages if page.strip()))


def _html_text(content: bytes) -> str:
    import trafilatura  # noqa: PLC0415 - heavy import, only needed for HTML

    return trafilatura.extract(decode_text(content), favor_recall=True) or ""


def _sniff(content: bytes) -> str:
    """A type for bytes stored without a useful one: PDF by its magic, else text if it decodes."""
    if content.startswith(b"%PDF-"):
        return PDF_TYPE
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        return "application/octet-stream"
    return "text/plain"


def _extract(content: bytes, content_type: str) -> str:
    if content_type in ("", "application/octet-stream", "binary/octet-stream"):
        content_type = _sniff(content)
    if content_type == PDF_TYPE:
        return _pdf_text(content)
    if content_type in HTML_TYPES:
        return _html_text(content)
    if is_supported(content_type):
        return decode_text(content)
    raise ToolFailure(
        f"Files of type '{content_type or 'unknown'}' cannot be read as text; "
        "text, Markdown, HTML, JSON and PDF files can."
    )


async def extract_text(content: bytes, content_type: str) -> str:
    """The document's text; raises `ToolFailure` for types that are not text-like or unreadable PDFs."""
    text = await asyncio.to_thread(_extract, content, content_type)
    if not text.strip():
        raise ToolFailure("The document contains no extractable text (a scanned PDF needs OCR first).")
    return text
