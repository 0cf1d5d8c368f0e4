"""What a byte stream really is: its type from magic bytes, its size and its SHA-256.

The type a client declares is never trusted. Binary types are recognised from their leading bytes;
`text/plain` is accepted only when the whole stream is UTF-8 without control characters (other than
tab, newline, carriage return and form feed) and does not start like markup: HTML, SVG and XML are
what a browser would execute, so a file that looks like them is refused even when it is valid text.

`ContentInspector` is fed chunk by chunk (a request body, a remote response, an S3 object) and raises
`TooLarge` the moment the running size passes the limit, so nothing bigger is ever held in memory.
"""

from __future__ import annotations

import codecs
import hashlib
import re
from dataclasses import dataclass

# The reference system's image types, plus PDF and plain text for file search; value: file extension.
ALLOWED_TYPES: dict[str, str] = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "image/gif": "gif",
    "image/bmp": "bmp",
    "image/tiff": "tiff",
    "application/pdf": "pdf",
    "text/plain": "txt",
}
ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "image/x-ms-bmp": "image/bmp"}
UNKNOWN = "application/octet-stream"

_HEAD_BYTES = 512
_BMP_DIB_SIZES = {12, 40, 52, 56, 64, 108, 124}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_MARKUP = re.compile(
    rb"^\s*<(?:!doctype|html|head|body|script|svg|\?xml|iframe|object|embed|style|meta|a\s|img|div|!--)",
    re.IGNORECASE,
)


class TooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"larger than {limit} bytes")
        self.limit = limit


@dataclass(frozen=True)
class Inspected:
    mime_type: str  # UNKNOWN when not recognised
    size: int
    sha256: str

    @property
    def allowed(self) -> bool:
        return self.mime_type in ALLOWED_TYPES


def normalize_mime(value: str) -> str:
    """`Image/JPG; charset=x` → `image/jpeg`."""
    base = value.split(";", 1)[0].strip().lower()
    return ALIASES.get(base, base)


def sniff_binary(head: bytes) -> str | None:
    """The binary type whose signature `head` starts with, if any."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if len(head) >= 12 and head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "image/tiff"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if _is_bmp(head):
        return "image/bmp"
    return None


def _is_bmp(head: bytes) -> bool:
    # "BM" alone is also how plain text can begin; require a sane header behind it.
    if len(head) < 18 or not head.startswith(b"BM"):
        return False
    reserved = head[6:10]
    dib_size = int.from_bytes(head[14:18], "little")
    return reserved == b"\x00\x00\x00\x00" and dib_size in _BMP_DIB_SIZES


class ContentInspector:
    """Counts, hashes and classifies a stream; raises `TooLarge` past `limit` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self._hash = hashlib.sha256()
        self._head = b""
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self._text_ok = True

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        self.size += len(chunk)
        if self.size > self.limit:
            raise TooLarge(self.limit)
        self._hash.update(chunk)
        if len(self._head) < _HEAD_BYTES:
            self._head += chunk[: _HEAD_BYTES - len(self._head)]
        if self._text_ok:
            self._text_ok = self._still_text(chunk)

    def _still_text(self, chunk: bytes, *, final: bool = False) -> bool:
        try:
            decoded = self._decoder.decode(chunk, final)
        except UnicodeDecodeError:
            return False
        return _CONTROL.search(decoded) is None

    def provisional_type(self) -> str:
        """The type of what was fed so far: final for binary types; text stays text until a bad byte."""
        return self._mime_type(final=False)

    def finish(self) -> Inspected:
        return Inspected(self._mime_type(), self.size, self._hash.hexdigest())

    def _mime_type(self, *, final: bool = True) -> str:
        binary = sniff_binary(self._head)
        if binary is not None:
            return binary
        if self.size and self._text_ok and (not final or self._still_text(b"", final=True)):
            head = self._head.removeprefix(codecs.BOM_UTF8)
            return "text/html" if _MARKUP.match(head) else "text/plain"
        return UNKNOWN


def inspect_bytes(data: bytes, limit: int) -> Inspected:
    inspector = ContentInspector(limit)
    inspector.feed(data)
    return inspector.finish()
