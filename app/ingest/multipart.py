"""multipart/form-data bodies: each part's name, file name, type, size and (for a small text
part) its text, through python-multipart's streaming parser."""

from __future__ import annotations

import binascii
import logging
import re
from typing import Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MAX_BOUNDARY_LENGTH, MultipartParser, parse_options_header

from hookscope.ingest.parsed import Parsed, short_error

# python-multipart logs each malformed body as a warning before it raises; the parsed view names
# the fault, and a sender must not be able to fill the server's log.
logging.getLogger("python_multipart").setLevel(logging.ERROR)

MULTIPART_TEXT_PREVIEW = 64 * 1024
# Past this many parts, a multipart body is reported rather than parsed.
MAX_MULTIPART_PARTS = 1000
# Per part: header lines, and bytes of one header line (python-multipart's own defaults).
MULTIPART_HEADERS = 8
MULTIPART_HEADER_BYTES = 4096 + 128


def parse_multipart(body: bytes, content_type: str) -> Parsed:
    boundary = re.search(r'boundary="?([^";]+)"?', content_type, re.IGNORECASE)
    if boundary is None:
        return Parsed("multipart", None, "multipart Content-Type has no boundary")
    delimiter = b"--" + boundary.group(1).encode("latin-1", "replace")
    found = body.count(delimiter)
    if found == 0:
        return Parsed("multipart", None, f"the Content-Type's boundary {boundary.group(1)!r} is "
                                         "not in the body")
    parts = found - (delimiter + b"--" in body)  # the closing delimiter ends the last part
    if parts > MAX_MULTIPART_PARTS:
        return Parsed("multipart", None, f"multipart body has {parts} parts; more than "
                                         f"{MAX_MULTIPART_PARTS} are not parsed")
    if len(delimiter) - 2 > MAX_BOUNDARY_LENGTH:
        return Parsed("multipart", None, f"the boundary is longer than {MAX_BOUNDARY_LENGTH} "
                                         "characters")
    # A preamble before the first delimiter (RFC 2046 allows one) is not part of any part.
    start = 0 if body.startswith(delimiter) else body.find(b"\r\n" + delimiter) + 2
    return _Parts(delimiter[2:]).parse(body[start:] if start > 1 else body)


class _Parts:
    """A multipart body's parts, through python-multipart's streaming parser: linear in the
    body, with at most MULTIPART_HEADERS header lines of at most MULTIPART_HEADER_BYTES each per
    part, and their parameters read as RFC 7578 says (no RFC 2047 encoded words, no RFC 2231
    continuations: the email package decodes both, and crafted ones cost it seconds a part)."""

    def __init__(self, boundary: bytes) -> None:
        self.parts: list[dict[str, Any]] = []
        self._headers: dict[str, str] = {}
        self._field = bytearray()
        self._value = bytearray()
        self._payload = bytearray()
        self._size = 0
        self._open = False
        self._ended = False
        self._parser = MultipartParser(boundary, {
            "on_part_begin": self._begin, "on_header_field": self._header_field,
            "on_header_value": self._header_value, "on_header_end": self._header_end,
            "on_part_data": self._data, "on_part_end": self._end, "on_end": self._finished},
            max_header_count=MULTIPART_HEADERS, max_header_size=MULTIPART_HEADER_BYTES)

    def parse(self, body: bytes) -> Parsed:
        try:
            self._parser.write(body)
            self._parser.finalize()
        except MultipartParseError as exc:
            return Parsed("multipart", self.parts,
                          f"malformed multipart (part {len(self.parts) + 1}: {short_error(exc)})")
        if not self._ended:
            if self._open:
                self._end()  # the last part, as far as it goes
            return Parsed("multipart", self.parts, "malformed multipart (no closing boundary)")
        return Parsed("multipart", self.parts)

    def _begin(self) -> None:
        self._open = True
        self._headers = {}
        self._payload.clear()
        self._size = 0

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        name = self._field.decode("latin-1").strip().lower()
        self._headers[name] = self._value.decode("latin-1").strip()
        self._field.clear()
        self._value.clear()

    def _data(self, data: bytes, start: int, end: int) -> None:
        self._size += end - start
        if len(self._payload) <= MULTIPART_TEXT_PREVIEW:
            self._payload += data[start:min(end, start + MULTIPART_TEXT_PREVIEW + 1)]

    def _end(self) -> None:
        self._open = False
        _, disposition = parse_options_header(self._headers.get("content-disposition"))
        declared, options = parse_options_header(self._headers.get("content-type"))
        content_type = declared.decode("latin-1") if b"/" in declared else "text/plain"
        name = disposition.get(b"name")
        filename = disposition.get(b"filename")
        text = None
        if filename is None and self._size <= MULTIPART_TEXT_PREVIEW:
            charset = options.get(b"charset", b"utf-8").decode("latin-1")
            try:
                decoded = _transfer_decoded(bytes(self._payload),
                                            self._headers.get("content-transfer-encoding", ""))
                text = decoded.decode(charset) if decoded is not None else None
            except (UnicodeDecodeError, LookupError, ValueError):
                text = None
        self.parts.append({"name": None if name is None else name.decode("utf-8", "replace"),
                           "filename": (None if filename is None
                                        else filename.decode("utf-8", "replace")),
                           "content_type": content_type, "size": self._size, "text": text})

    def _finished(self) -> None:
        self._ended = True


def _transfer_decoded(payload: bytes, encoding: str) -> bytes | None:
    """A part's payload under its Content-Transfer-Encoding (RFC 7578 deprecates it; some
    senders still use it); None for an encoding not known here."""
    encoding = encoding.strip().lower()
    if encoding in ("", "7bit", "8bit", "binary"):
        return payload
    if encoding == "base64":
        return binascii.a2b_base64(payload)
    if encoding == "quoted-printable":
        return binascii.a2b_qp(payload)
    return None
