"""How the commands print: aligned columns for people, colour only on a terminal, JSON for
programs (`--json` output is never coloured, whatever stdout is)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, TextIO

from hookscope.cli.base import warn

_CODES = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}
SIGNATURE_COLOURS = {"verified": "green", "failed": "red", "missing": "yellow"}
VALIDATION_COLOURS = {"valid": "green", "invalid": "red"}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Control characters of captured text, shown escaped: a payload must not drive the terminal
# (move the cursor, retitle the window, hide lines) when a person looks at it.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def use_colour(stream: TextIO) -> bool:
    """ANSI colour when the stream is a terminal and NO_COLOR (no-color.org) is not set."""
    return stream.isatty() and not os.environ.get("NO_COLOR")


class Printer:
    """stdout for one command: plain or coloured text, or JSON."""

    def __init__(self, *, as_json: bool = False, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.as_json = as_json
        self.colour = not as_json and use_colour(self.stream)

    def paint(self, text: str, colour: str | None) -> str:
        if not self.colour or not colour:
            return text
        return f"\x1b[{_CODES[colour]}m{text}\x1b[0m"

    def line(self, text: str = "") -> None:
        print(text, file=self.stream, flush=True)

    def json(self, value: Any, *, compact: bool = False) -> None:
        text = json.dumps(value, ensure_ascii=False, indent=None if compact else 2)
        print(text, file=self.stream, flush=True)

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        """Columns padded to their widest cell (measured without colour codes)."""
        widths = [max([len(plain(h)), *(len(plain(r[i])) for r in rows)])
                  for i, h in enumerate(headers)]
        self.line(self.paint(_row(headers, widths), "bold"))
        for row in rows:
            self.line(_row(row, widths))

    def pairs(self, items: Sequence[tuple[str, str]], indent: str = "  ") -> None:
        """`label  value` lines with the values aligned."""
        width = max((len(label) for label, _ in items), default=0)
        for label, value in items:
            self.line(f"{indent}{self.paint(label.ljust(width), 'dim')}  {value}")

    def heading(self, text: str) -> None:
        self.line(self.paint(text, "bold"))


def _row(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(pad(cell, width) for cell, width in zip(cells, widths, strict=True)).rstrip()


def plain(text: str) -> str:
    return _ANSI.sub("", text)


def safe(text: str) -> str:
    """Captured text made inert for a terminal: controls other than tab and newline escaped."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def pad(text: str, width: int) -> str:
    """Left-aligned in `width` columns, colour codes not counted."""
    return text + " " * (width - len(plain(text)))


def size(n: int) -> str:
    """1234 -> "1.2 KB" (powers of 1024, as file managers show them)."""
    value = float(n)
    for unit in ("B", "KB", "MB"):
        if value < 1024 or unit == "MB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def hexdump(data: bytes, limit: int = 256) -> list[str]:
    """`offset  hex bytes  ascii` lines, 16 bytes each, of the first `limit` bytes."""
    lines = []
    for offset in range(0, min(len(data), limit), 16):
        chunk = data[offset:offset + 16]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{offset:08x}  {chunk.hex(' '):<47}  {text}")
    if len(data) > limit:
        lines.append(f"... {len(data) - limit} more bytes")
    return lines


def local_time(iso: str | None, *, with_date: bool = False) -> str:
    """The API's UTC timestamp as local wall-clock time, to the millisecond."""
    if not iso:
        return "-"
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone()
    shown = moment.strftime("%Y-%m-%d %H:%M:%S.%f" if with_date else "%H:%M:%S.%f")
    return shown[:-3]


def capture_path(summary: dict[str, Any]) -> str:
    """The path after /h/{key}, with the query: what varies between a capture and the next."""
    parts = summary["path"].split("/", 3)  # "", "h", key, rest
    rest = "/" + parts[3] if len(parts) > 3 else "/"
    return safe(rest + (f"?{summary['query']}" if summary.get("query") else ""))


def signature_text(out: Printer, signature: dict[str, Any]) -> str:
    status = signature.get("status") or "unchecked"
    return out.paint(status, SIGNATURE_COLOURS.get(status) or "dim")


def validation_text(out: Printer, validation: dict[str, Any]) -> str:
    status = validation.get("status") or "unknown"
    shown = f"{status} {validation['format']}" if validation.get("format") else status
    return out.paint(shown, VALIDATION_COLOURS.get(status) or "dim")


def summary_line(out: Printer, summary: dict[str, Any]) -> str:
    """One capture on one line, in fixed-width columns so a stream of them lines up."""
    path = capture_path(summary)
    if len(path) > 48:
        path = path[:47] + "…"
    return "  ".join([
        out.paint(local_time(summary.get("received_at")), "dim"),
        f"#{summary['seq']}".rjust(6),
        out.paint(summary["method"].ljust(7), "cyan"),
        path.ljust(48),
        size(summary.get("body_size") or 0).rjust(8),
        pad(signature_text(out, summary.get("signature") or {}), 9),
        validation_text(out, summary.get("validation") or {}),
    ]).rstrip()


class Console:
    """What a person sees, shared by the workers: one line per delivery on stdout, notes on
    stderr, and, when stderr is a terminal, one status line below them that is rewritten in
    place (waiting, retrying, reconnecting)."""

    def __init__(self, out: Printer) -> None:
        self.out = out
        self.err = Printer(stream=sys.stderr)
        self.live = sys.stderr.isatty()
        self.lock = threading.Lock()
        self.statuses: dict[str, str] = {}
        self.shown = False

    def delivery(self, text: str, record: dict[str, Any]) -> None:
        with self._above():
            if self.out.as_json:
                self.out.json(record, compact=True)
            else:
                self.out.line(text)

    def note(self, text: str) -> None:
        with self._above():
            warn(text)

    def status(self, who: str, text: str) -> None:
        if not self.live:
            return
        with self.lock:
            self.statuses[who] = text
            self._draw()

    def close(self) -> None:
        with self.lock:
            self._clear()
            self.live = False

    @contextlib.contextmanager
    def _above(self) -> Iterator[None]:
        """A lasting line goes where the status line stood; the status line comes back below."""
        with self.lock:
            self._clear()
            yield
            self._draw()

    def _clear(self) -> None:
        if self.shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self.shown = False

    def _draw(self) -> None:
        if not self.live or not self.statuses:
            return
        width = shutil.get_terminal_size().columns - 1
        parts = list(self.statuses.items())
        text = parts[0][1] if len(parts) == 1 else " | ".join(f"{w}: {t}" for w, t in parts)
        if len(text) > width:
            text = text[:max(width - 1, 0)] + "…"
        sys.stderr.write("\r\x1b[K" + self.err.paint(text, "dim"))
        sys.stderr.flush()
        self.shown = True
