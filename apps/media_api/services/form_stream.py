"""A multipart/form-data upload read as it arrives, without spooling the file to disk.

Starlette's form parser keeps a file part in memory up to 1 MiB and then spools it to a temporary
file, which in a pod is an `emptyDir` of a few dozen MiB shared by every concurrent upload. Here the
body is fed to python-multipart's streaming parser chunk by chunk and the `file` part's bytes are
handed to the caller as they come (who forwards them to S3), so a request holds at most one chunk of
the body plus what the caller buffers. Small text fields (`filename`) are collected on the way,
whether they come before or after the file.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from email.message import Message

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from apps.common.errors import APIError

MAX_FIELDS = 8
MAX_FIELD_BYTES = 1024
_FILE_FIELD = "file"


def _bad_form(message: str, code: str = "invalid_form") -> APIError:
    return APIError(400, message, param="file", code=code)


class FormStream:
    """Call `file_chunks()` once and consume it fully; then `fields`, `file_name`, `file_type` are set."""

    def __init__(self, content_type: str, body: AsyncIterator[bytes]) -> None:
        _, options = parse_options_header(content_type)
        boundary = options.get(b"boundary")
        if not boundary:
            raise _bad_form("The multipart form has no boundary.")
        self._body = body
        self.fields: dict[str, str] = {}
        self.file_name: str | None = None
        self.file_type: str | None = None
        self._seen_file = False
        self._out: list[bytes] = []
        self._headers: list[tuple[str, str]] = []
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._part_name: str | None = None
        self._in_file = False
        self._field_value = bytearray()
        self._parts = 0
        self._parser = MultipartParser(
            boundary,
            callbacks={
                "on_part_begin": self._part_begin,
                "on_header_field": lambda data, start, end: self._header_field.extend(data[start:end]),
                "on_header_value": lambda data, start, end: self._header_value.extend(data[start:end]),
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
            },
        )

    async def file_chunks(self) -> AsyncGenerator[bytes, None]:
        try:
            async for chunk in self._body:
                self._parser.write(chunk)
                while self._out:
                    yield self._out.pop(0)
            self._parser.finalize()
        except MultipartParseError as exc:
            raise _bad_form(f"The multipart form is malformed: {exc}") from exc
        while self._out:
            yield self._out.pop(0)
        if not self._seen_file:
            raise _bad_form("The form needs a 'file' part.", code="missing_file")

    def _part_begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_FIELDS:
            raise _bad_form(f"The form has more than {MAX_FIELDS} parts.")
        self._headers = []
        self._part_name = None
        self._in_file = False
        self._field_value = bytearray()

    def _header_end(self) -> None:
        name = self._header_field.decode("latin-1").strip().lower()
        self._headers.append((name, self._header_value.decode("latin-1").strip()))
        self._header_field.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        headers = dict(self._headers)
        disposition = Message()
        disposition["content-disposition"] = headers.get("content-disposition", "")
        self._part_name = disposition.get_param("name", header="content-disposition")  # type: ignore[assignment]
        filename = disposition.get_filename()
        if self._part_name == _FILE_FIELD:
            if self._seen_file:
                raise _bad_form("Send one 'file' part per upload.")
            self._seen_file = self._in_file = True
            self.file_name = filename
            self.file_type = headers.get("content-type")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self._out.append(bytes(data[start:end]))
            return
        self._field_value.extend(data[start:end])
        if len(self._field_value) > MAX_FIELD_BYTES:
            raise _bad_form(f"Form field '{self._part_name}' is longer than {MAX_FIELD_BYTES} bytes.")

    def _part_end(self) -> None:
        if not self._in_file and self._part_name:
            self.fields[self._part_name] = self._field_value.decode("utf-8", errors="replace")
        self._in_file = False
