"""Multipart uploads streamed to a temporary file, never held whole in memory, and cut off with
413 as soon as they pass the limit; the type comes from the content, never from the name."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePath

import anyio
import filetype
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from deployments.api.bodylimit import raise_limit
from deployments.api.problems import BadRequest, ContentTooLarge, UnsupportedMediaType
from pipeline.render.images import ImageInvalid, image_header

MiB = 1024 * 1024
SNIFF_BYTES = 262
FLUSH_BYTES = MiB
MULTIPART_OVERHEAD = 64 * 1024

ACCEPTED: dict[str, tuple[str, str]] = {
    "image/png": ("image/png", ".png"),
    "image/jpeg": ("image/jpeg", ".jpg"),
    "image/webp": ("image/webp", ".webp"),
    "audio/x-wav": ("audio/wav", ".wav"),
    "audio/mpeg": ("audio/mpeg", ".mp3"),
    "video/mp4": ("video/mp4", ".mp4"),
}


@dataclass
class ReceivedFile:
    path: Path
    filename: str
    size: int
    head: bytes


@dataclass
class _Part:
    """The state of the multipart parse: the current part's headers, and the file found."""

    field_name: str
    limit: int
    headers: dict[bytes, bytes] = field(default_factory=dict)
    header_name: bytes = b""
    header_value: bytes = b""
    writing: bool = False
    filename: str | None = None
    size: int = 0
    head: bytes = b""
    pending: bytearray = field(default_factory=bytearray)

    def on_part_begin(self) -> None:
        self.headers = {}

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        self.headers[self.header_name.lower()] = self.header_value
        self.header_name = self.header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get(b"content-disposition"))
        name = options.get(b"name", b"").decode("latin-1")
        if name == self.field_name and b"filename" in options and self.filename is None:
            self.filename = _clean_name(options[b"filename"].decode("utf-8", "replace"))
            self.writing = True

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if not self.writing:
            return
        chunk = data[start:end]
        self.size += len(chunk)
        if self.size > self.limit:
            raise ContentTooLarge(f"the file is larger than your plan's {self.limit // MiB} MB")
        if len(self.head) < SNIFF_BYTES:
            self.head += chunk[: SNIFF_BYTES - len(self.head)]
        self.pending += chunk

    def on_part_end(self) -> None:
        self.writing = False


_CALLBACKS = (
    "on_part_begin",
    "on_header_field",
    "on_header_value",
    "on_header_end",
    "on_headers_finished",
    "on_part_data",
    "on_part_end",
)


@asynccontextmanager
async def receive_file(
    request: Request, field_name: str, limit: int
) -> AsyncIterator[ReceivedFile]:
    """The multipart field `field_name` of the request, in a temporary file deleted on exit."""
    content_type, options = parse_options_header(request.headers.get("content-type"))
    if content_type != b"multipart/form-data" or b"boundary" not in options:
        raise UnsupportedMediaType("send the file as multipart/form-data")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + MULTIPART_OVERHEAD:
        raise ContentTooLarge(f"the file is larger than your plan's {limit // MiB} MB")
    raise_limit(request, limit + MULTIPART_OVERHEAD)
    part = _Part(field_name, limit)
    callbacks = {name: getattr(part, name) for name in _CALLBACKS}
    with tempfile.NamedTemporaryFile(prefix="studio-upload-") as file:
        try:
            parser = MultipartParser(options[b"boundary"], callbacks)  # type: ignore[arg-type]
            async for chunk in request.stream():
                parser.write(chunk)
                if len(part.pending) >= FLUSH_BYTES:
                    await _flush(file, part)
            parser.finalize()
        except FormParserError:
            raise BadRequest("the multipart body is malformed") from None
        if part.filename is None:
            raise RequestValidationError(
                [{"type": "missing", "loc": ("body", field_name), "msg": "Field required"}]
            )
        await _flush(file, part)
        yield ReceivedFile(Path(file.name), part.filename, part.size, part.head)


async def _flush(file: tempfile._TemporaryFileWrapper[bytes], part: _Part) -> None:
    data = bytes(part.pending)
    part.pending.clear()
    await anyio.to_thread.run_sync(file.write, data)
    await anyio.to_thread.run_sync(file.flush)


def sniff(head: bytes) -> tuple[str, str]:
    """(content type, file suffix) from the first bytes; 415 for anything not accepted."""
    kind = filetype.guess(head)
    if kind is None or kind.mime not in ACCEPTED:
        found = kind.mime if kind else "unrecognised content"
        raise UnsupportedMediaType(
            f"{found} is not accepted: upload PNG, JPEG or WebP images, WAV or MP3 audio, MP4 video"
        )
    return ACCEPTED[kind.mime]


def verify_image(path: Path, content_type: str) -> None:
    """ImageInvalid (422) unless the file parses as the image its first bytes say, within the
    pixel cap: image magic followed by anything else (HTML) is refused."""
    header = image_header(path, "the upload")
    if header.content_type != content_type:
        raise ImageInvalid(f"the upload starts as {content_type} but is {header.content_type}")


def _clean_name(name: str) -> str:
    base = PurePath(name.replace("\\", "/")).name
    return "".join(c for c in base if c.isprintable())[:255] or "upload"
