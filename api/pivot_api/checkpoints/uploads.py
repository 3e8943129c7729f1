"""Streaming multipart parsing for checkpoint uploads: form fields are kept (small, bounded),
the file part goes to a sink chunk by chunk, so an upload never sits whole in memory."""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import IO, Any

from python_multipart.multipart import MultipartParser, parse_options_header

from pivot_api.errors import PayloadTooLargeError, ValidationError

# A form field larger than this is not a session id, an epoch or a metrics object.
MAX_FIELD_BYTES = 64 * 1024
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_EXTENSIONS = (".pth", ".pt")


def sanitise_file_name(raw: str) -> str:
    """The last path component, reduced to [A-Za-z0-9._-], at most 128 characters, ending in
    a PyTorch extension (`.pth` appended otherwise); never starting with a dot (no hidden
    files, no `..`)."""
    base = raw.replace("\\", "/").rsplit("/", 1)[-1]
    clean = _SAFE.sub("_", base).lstrip(".")
    if not clean.lower().endswith(_EXTENSIONS):
        clean = (clean or "checkpoint") + ".pth"
    if len(clean) > 128:
        clean = clean[:116] + clean[-12:]
    return clean


class FileSink:
    """Where the file part's bytes go; the checkpoint service supplies one."""

    async def write(self, data: bytes) -> None:
        raise NotImplementedError

    async def abort(self) -> None:
        raise NotImplementedError


@dataclass
class ParsedUpload:
    fields: dict[str, str] = field(default_factory=dict)
    file_name: str | None = None
    size: int = 0
    sha256: str = ""
    sink: FileSink | None = None
    spool: IO[bytes] | None = None


def _disposition(value: str) -> tuple[str | None, str | None]:
    _, params = parse_options_header(value)
    name = params.get(b"name")
    filename = params.get(b"filename")
    return (
        name.decode("utf-8", "replace") if name is not None else None,
        filename.decode("utf-8", "replace") if filename is not None else None,
    )


async def parse_upload(
    content_type: str,
    body: AsyncIterator[bytes],
    *,
    max_file_bytes: int,
    open_sink: Callable[[dict[str, str], str], Awaitable[FileSink | None]],
) -> ParsedUpload:
    """Parse a multipart/form-data body with exactly one file part (`file`).

    When the file part begins, `open_sink(fields so far, sanitised name)` may return a sink
    (the fields it needs came first) and the bytes stream straight into it; otherwise they are
    spooled to a temporary file on disk for the caller to replay once all fields are known.
    """
    mime, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if mime != b"multipart/form-data" or not boundary:
        raise ValidationError(
            "the upload must be multipart/form-data",
            {"field": "file", "content_type": content_type},
        )

    events: list[tuple[str, Any]] = []
    header: dict[str, bytes] = {"field": b"", "value": b""}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header["value"] += data[start:end]

    def on_header_end() -> None:
        events.append(("header", (header["field"].lower(), header["value"])))
        header["field"], header["value"] = b"", b""

    callbacks: Any = {
        "on_part_begin": lambda: events.append(("begin", None)),
        "on_part_data": lambda data, start, end: events.append(("data", data[start:end])),
        "on_part_end": lambda: events.append(("end", None)),
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_headers_finished": lambda: events.append(("headers", None)),
    }
    parser = MultipartParser(boundary, callbacks)
    result = ParsedUpload()
    hasher = hashlib.sha256()
    name: str | None = None
    filename: str | None = None
    in_file = False
    value = bytearray()
    try:
        async for chunk in body:
            try:
                parser.write(chunk)
            except Exception as exc:  # python-multipart raises its own errors on bad framing
                raise ValidationError(
                    "malformed multipart body", {"field": "file", "reason": str(exc)}
                ) from exc
            for kind, payload in events:
                if kind == "begin":
                    name, filename, in_file = None, None, False
                    value.clear()
                elif kind == "header" and payload[0] == b"content-disposition":
                    name, filename = _disposition(payload[1].decode("latin-1"))
                elif kind == "headers":
                    if name == "file" and filename is not None:
                        if result.file_name is not None:
                            raise ValidationError(
                                "exactly one file part is allowed", {"field": "file"}
                            )
                        in_file = True
                        result.file_name = sanitise_file_name(filename)
                        result.sink = await open_sink(dict(result.fields), result.file_name)
                        if result.sink is None:
                            result.spool = tempfile.TemporaryFile()  # noqa: SIM115 (closed by caller)
                elif kind == "data":
                    if in_file:
                        result.size += len(payload)
                        if result.size > max_file_bytes:
                            raise PayloadTooLargeError(
                                "the checkpoint file is larger than the upload limit",
                                {"field": "file", "max_bytes": max_file_bytes},
                            )
                        hasher.update(payload)
                        if result.sink is not None:
                            await result.sink.write(payload)
                        else:
                            assert result.spool is not None
                            result.spool.write(payload)  # local disk, one network chunk
                    else:
                        value.extend(payload)
                        if len(value) > MAX_FIELD_BYTES:
                            raise PayloadTooLargeError(
                                f"form field {name!r} is too large",
                                {"field": name or "", "max_bytes": MAX_FIELD_BYTES},
                            )
                elif kind == "end" and not in_file and name is not None:
                    result.fields[name] = value.decode("utf-8", "replace")
            events.clear()
        parser.finalize()
    except BaseException:
        await discard(result)
        raise
    result.sha256 = hasher.hexdigest()
    return result


async def discard(upload: ParsedUpload) -> None:
    if upload.sink is not None:
        await upload.sink.abort()
        upload.sink = None
    if upload.spool is not None:
        upload.spool.close()
        upload.spool = None
