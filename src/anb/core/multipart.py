"""A streaming multipart/form-data reader for large uploads.

File parts go straight to temporary files chunk by chunk, so memory stays flat whatever the
upload's size, and reading stops as soon as a limit is passed: the rest of the body is never
read. Text parts are kept in memory, each capped at a few KiB and all of them together at
a few more; the number of parts and the whole body are capped too, whether the body
declares its length or is chunked. A form whose file may be written only if its fields say
so (a signed upload form) has them checked before its first file byte is stored.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from anb.core.errors import InvalidInput
from anb.core.settings import Settings
from anb.core.text import megabytes

if TYPE_CHECKING:  # python-multipart defines its callbacks' TypedDict for type checkers only
    from python_multipart.multipart import MultipartCallbacks

TEXT_PART_MAX_BYTES = 4096
TEXT_FIELDS_MAX_BYTES = 16 * 1024
MAX_PARTS = 16
IGNORED_PARTS_MAX_BYTES = 1024 * 1024
FORM_OVERHEAD_BYTES = 64 * 1024
"""What a body may carry beyond its file: boundaries, part headers and text fields."""


class FileTooLarge(InvalidInput):
    def __init__(self, field_name: str, max_bytes: int) -> None:
        limit = megabytes(max_bytes)
        super().__init__(f"{field_name}: el archivo supera el tamaño máximo de {limit}.")


class MalformedForm(InvalidInput):
    def __init__(self, reason: str) -> None:
        super().__init__(f"El cuerpo debe ser multipart/form-data válido: {reason}.")


@dataclass
class StreamedForm:
    """Text fields by name and files (temporary paths) by field name."""

    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)

    def discard(self) -> None:
        for path in self.files.values():
            path.unlink(missing_ok=True)


@dataclass
class _Part:
    name: str = ""
    is_file: bool = False
    header_field: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    disposition: bytes = b""
    text: bytearray = field(default_factory=bytearray)
    sink: IO[bytes] | None = None
    size: int = 0


FieldsCheck = Callable[[dict[str, str]], int]
"""Judges the text fields read before the file (raising to refuse the form); returns the
most bytes the file may have."""


class _FormBuilder:
    """Collects parser callbacks into a `StreamedForm`, enforcing the limits as data arrives."""

    def __init__(
        self, file_field: str, max_file_bytes: int, tmp_dir: Path, check: FieldsCheck | None
    ) -> None:
        self.form = StreamedForm()
        self.file_field = file_field
        self.max_file_bytes = max_file_bytes
        self.tmp_dir = tmp_dir
        self.check = check
        self.part = _Part()
        self.parts = 0
        self.ignored_bytes = 0
        self.text_bytes = 0
        self.finished = False

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._begin_part,
            "on_header_field": lambda data, start, end: self.part.header_field.extend(
                data[start:end]
            ),
            "on_header_value": lambda data, start, end: self.part.header_value.extend(
                data[start:end]
            ),
            "on_header_end": self._end_header,
            "on_headers_finished": self._start_body,
            "on_part_data": self._data,
            "on_part_end": self._end_part,
            "on_end": self._end,
        }

    def _begin_part(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise MalformedForm(f"tiene más de {MAX_PARTS} partes")
        self.part = _Part()

    def _end_header(self) -> None:
        if bytes(self.part.header_field).strip().lower() == b"content-disposition":
            self.part.disposition = bytes(self.part.header_value)
        self.part.header_field.clear()
        self.part.header_value.clear()

    def _start_body(self) -> None:
        _, options = parse_options_header(self.part.disposition)
        self.part.name = options.get(b"name", b"").decode("utf-8", "replace")
        self.part.is_file = b"filename" in options
        if self.part.name == self.file_field and self.file_field not in self.form.files:
            if self.check is not None:  # before a byte of the file is stored
                self.max_file_bytes = min(self.max_file_bytes, self.check(dict(self.form.fields)))
            self.part.sink = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in _end_part
                dir=self.tmp_dir, prefix="upload-", suffix=".part", delete=False
            )
            self.form.files[self.part.name] = Path(self.part.sink.name)

    def _data(self, data: bytes, start: int, end: int) -> None:
        size = end - start
        self.part.size += size
        if self.part.sink is not None:
            if self.part.size > self.max_file_bytes:
                raise FileTooLarge(self.part.name, self.max_file_bytes)
            self.part.sink.write(data[start:end])
        elif self.part.name == self.file_field or self.part.is_file:
            self._ignore(size)
        else:
            self.text_bytes += size
            if self.part.size > TEXT_PART_MAX_BYTES:
                raise InvalidInput(f"{self.part.name}: el campo es demasiado largo.")
            if self.text_bytes > TEXT_FIELDS_MAX_BYTES:
                raise MalformedForm(f"sus campos de texto superan {TEXT_FIELDS_MAX_BYTES} bytes")
            self.part.text.extend(data[start:end])

    def _ignore(self, size: int) -> None:
        self.ignored_bytes += size
        if self.ignored_bytes > IGNORED_PARTS_MAX_BYTES:
            raise MalformedForm("contiene archivos que no se esperan")

    def _end_part(self) -> None:
        if self.part.sink is not None:
            self.part.sink.close()
        elif not self.part.is_file and self.part.name not in self.form.fields:
            self.form.fields[self.part.name] = self.part.text.decode("utf-8", "replace")
        self.part = _Part()

    def _end(self) -> None:
        self.finished = True

    def close(self) -> None:
        if self.part.sink is not None and not self.part.sink.closed:
            self.part.sink.close()


async def read_multipart(
    content_type: str,
    content_length: str | None,
    body: AsyncIterator[bytes],
    *,
    file_field: str,
    max_file_bytes: int,
    tmp_dir: Path,
    check: FieldsCheck | None = None,
) -> StreamedForm:
    """Stream a multipart body into a `StreamedForm` (at most one file: `file_field`);
    the caller must `discard()` it."""
    boundary = _boundary(content_type)
    declared = int(content_length) if content_length and content_length.isdigit() else 0
    if declared > max_file_bytes + FORM_OVERHEAD_BYTES:  # refuse before reading a byte
        raise FileTooLarge(file_field, max_file_bytes)
    os.makedirs(tmp_dir, exist_ok=True)
    builder = _FormBuilder(file_field, max_file_bytes, tmp_dir, check)
    parser = MultipartParser(boundary, builder.callbacks())
    most_bytes = max_file_bytes + FORM_OVERHEAD_BYTES + IGNORED_PARTS_MAX_BYTES
    received = 0
    try:
        async for chunk in body:
            received += len(chunk)
            if received > most_bytes:  # a chunked body, or one longer than it declared
                raise MalformedForm("el cuerpo supera el tamaño permitido")
            if chunk:
                await run_in_threadpool(parser.write, chunk)
            if builder.finished:  # what follows the closing boundary is not read
                break
        parser.finalize()
        if not builder.finished:
            raise MalformedForm("el cuerpo termina antes de tiempo")
    except BaseException as exc:
        builder.close()
        builder.form.discard()
        if isinstance(exc, MultipartParseError):
            raise MalformedForm("no se pudo leer") from exc
        raise
    return builder.form


def _boundary(content_type: str) -> bytes:
    media_type, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if media_type != b"multipart/form-data" or not boundary:
        raise MalformedForm("falta el encabezado Content-Type con boundary")
    return boundary


async def read_request_form(
    request: Request, *, file_field: str, settings: Settings, check: FieldsCheck | None = None
) -> StreamedForm:
    """`read_multipart` on a request's body, with the configured size limit and scratch dir."""
    return await read_multipart(
        request.headers.get("content-type", ""),
        request.headers.get("content-length"),
        request.stream(),
        file_field=file_field,
        max_file_bytes=settings.upload_max_bytes,
        tmp_dir=settings.tmp_dir,
        check=check,
    )
