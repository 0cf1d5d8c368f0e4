"""Content sniffing: the type comes from the bytes."""

from __future__ import annotations

import pytest

from apps.media_api.services.sniff import ContentInspector, TooLarge, inspect_bytes, normalize_mime
from tests.harness.media import JPEG, PDF, PNG

BMP = (
    b"BM"
    + (70).to_bytes(4, "little")
    + b"\x00" * 4
    + (54).to_bytes(4, "little")
    + (40).to_bytes(4, "little")
    + b"\x00" * 52
)


@pytest.mark.parametrize(
    ("data", "mime"),
    [
        (PNG, "image/png"),
        (JPEG, "image/jpeg"),
        (b"GIF89a\x01\x00\x01\x00", "image/gif"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"II*\x00\x08\x00\x00\x00", "image/tiff"),
        (b"MM\x00*\x00\x00\x00\x08", "image/tiff"),
        (BMP, "image/bmp"),
        (PDF, "application/pdf"),
        ("plain text, ünïcödé\r\n\tindented".encode(), "text/plain"),
        ("\ufeffwith a BOM".encode(), "text/plain"),
        (b"BM is how this sentence starts", "text/plain"),
        (b"<html><body>hi</body></html>", "text/html"),
        (b"\xef\xbb\xbf<?xml version='1.0'?><svg/>", "text/html"),
        (b"text with a NUL\x00 byte", "application/octet-stream"),
        (b"\xff\xfe\x00latin-1 \xe9", "application/octet-stream"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "application/octet-stream"),
    ],
)
def test_types_come_from_the_bytes(data: bytes, mime: str) -> None:
    assert inspect_bytes(data, 10_000).mime_type == mime


def test_text_split_inside_a_character_across_chunks() -> None:
    inspector = ContentInspector(100)
    encoded = "grüße".encode()
    inspector.feed(encoded[:3])
    inspector.feed(encoded[3:])
    assert inspector.finish().mime_type == "text/plain"


def test_truncated_utf8_is_not_text() -> None:
    assert inspect_bytes("grüß".encode()[:-1], 100).mime_type == "application/octet-stream"


def test_the_limit_is_enforced_while_feeding() -> None:
    inspector = ContentInspector(10)
    inspector.feed(b"x" * 10)
    with pytest.raises(TooLarge):
        inspector.feed(b"y")


def test_normalize_mime() -> None:
    assert normalize_mime(" Image/JPG; q=1") == "image/jpeg"
    assert normalize_mime("text/plain; charset=utf-8") == "text/plain"
