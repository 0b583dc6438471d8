"""Large bodies kept as files beside the database (HOOKSCOPE_BODY_FILE_BYTES; off by default).

SQLite writes a body twice: into the WAL at the commit, then into the database at a checkpoint, and
for large bodies at speed those two copies take most of a core (bench/large; docs/performance.md). A
body of at least `threshold` bytes is instead written once, to `<db>.bodies/<capture id>`, by the
operation that inserts its row and before that row's commit; the row keeps an empty body and the
file's length (captures.file_bytes). So a capture is still acknowledged only once both are stored,
and under synchronous "full" the file and its folder are synced before the commit too.

Every way a row goes (a delete, a clear, pruning, its endpoint deleted or expired, a cascade)
fires a temporary trigger on the writer's connection that notes its file; once that transaction
has committed, the files of rows that are really gone are removed (a savepoint rolled back may
have brought some back). The files of rows that never committed go the same way, and whatever a
crash left between the two steps is swept when the store opens.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3

log = logging.getLogger("hookscope.bodyfiles")

_CAPTURE_ID = re.compile(r"c_[0-9a-f]{32}")
_CHUNK = 500  # parameters per IN (...) query, well under SQLite's limit
_SEARCH_CHUNK = 1024 * 1024  # bytes of a body file searched at a time (`q`)


class BodyFiles:
    """The `<db>.bodies` folder. Everything but read() runs inside the writer's transactions."""

    def __init__(self, db_path: str, threshold: int = 0, synchronous: str = "normal") -> None:
        self.folder = db_path + ".bodies"
        self.threshold = threshold  # 0: new bodies all go into the database
        self._sync = synchronous == "full"
        self._written: list[str] = []  # files of this transaction's new rows
        self._gone: list[str] = []  # files of the rows this transaction deleted

    def wanted(self, size: int) -> bool:
        return 0 < self.threshold <= size

    def path(self, capture_id: str) -> str:
        if not _CAPTURE_ID.fullmatch(capture_id):
            raise ValueError(f"not a capture id: {capture_id!r}")
        return os.path.join(self.folder, capture_id)

    # -- the writer's side ---------------------------------------------------------------------

    def prepare(self, conn: sqlite3.Connection) -> None:
        """Watch deletions on the writer's connection (the trigger lives as long as it does).
        Installed even when new bodies go into the database: older rows may have files."""
        conn.create_function("hookscope_body_file_gone", 1, self._gone.append)
        conn.execute(
            "CREATE TEMP TRIGGER IF NOT EXISTS body_file_gone AFTER DELETE ON main.captures "
            "WHEN old.file_bytes > 0 BEGIN SELECT hookscope_body_file_gone(old.id); END")

    def write(self, capture_id: str, body: bytes) -> None:
        """Store a new row's body; the caller inserts the row in the same transaction."""
        path = self.path(capture_id)
        # O_EXCL: a clash of capture ids fails here, leaving the other capture's file alone.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        try:
            fd = os.open(path, flags, 0o600)
        except FileNotFoundError:
            os.makedirs(self.folder, mode=0o700, exist_ok=True)
            if self._sync:  # the new folder's own name is durable once its parent is
                _sync_folder(os.path.dirname(os.path.abspath(self.folder)))
            fd = os.open(path, flags, 0o600)
        self._written.append(capture_id)
        try:
            view = memoryview(body)
            while view:
                view = view[os.write(fd, view):]
            if self._sync:
                os.fdatasync(fd)
        finally:
            os.close(fd)

    def before_commit(self, conn: sqlite3.Connection) -> None:
        if self._sync and self._written:
            _sync_folder(self.folder)  # a new file's name is durable once its folder is

    def after_commit(self, conn: sqlite3.Connection) -> None:
        if not (self._written or self._gone):
            return  # most commits, and every one with the setting off
        candidates = self._written + self._gone
        self._forget()
        self._remove(candidates, _stored(conn, candidates))

    def others_wrote(self, conn: sqlite3.Connection) -> None:
        pass

    def after_rollback(self, conn: sqlite3.Connection) -> None:
        candidates = self._written + self._gone
        self._forget()
        try:
            # A COMMIT that failed late (an I/O error) may still have reached the WAL, so
            # even now the files go only as the rows in the database say.
            stored = _stored(conn, candidates)
        except sqlite3.Error:
            return  # cannot tell: the sweep at the next start decides
        self._remove(candidates, stored)

    def _forget(self) -> None:
        # Emptied in place: the trigger's function holds on to this very list.
        self._written.clear()
        self._gone.clear()

    def sweep(self, conn: sqlite3.Connection) -> int:
        """Remove the files no row points at (a crash between a file and its commit, or
        between a commit and a removal); returns how many. Names that are not capture ids are
        left alone."""
        try:
            names = [name for name in os.listdir(self.folder) if _CAPTURE_ID.fullmatch(name)]
        except FileNotFoundError:
            return 0
        stored = _stored(conn, names)
        self._remove(names, stored)
        return len(names) - len(stored)

    def _remove(self, capture_ids: list[str], keep: set[str]) -> None:
        for capture_id in capture_ids:
            if capture_id not in keep:
                with contextlib.suppress(FileNotFoundError, ValueError):
                    os.unlink(self.path(capture_id))

    # -- the readers' side ---------------------------------------------------------------------

    def read(self, capture_id: str, size: int) -> bytes | None:
        """A stored body; None if its file is gone (its capture deleted since the caller read
        the row, or the file removed by hand: the caller tells which). A file that is
        unreadable or short gives what is left, and the log says so."""
        try:
            with open(self.path(capture_id), "rb") as file:
                body = file.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.error("capture %s: its body file is unreadable (%s)", capture_id, exc)
            return b""
        if len(body) != size:
            log.error("capture %s: its body file holds %d bytes, not %d", capture_id,
                      len(body), size)
        return body

    def contains(self, capture_id: str, text: str) -> bool:
        """Whether a body kept in a file holds `text`, ASCII letters in either case, as the
        LIKE that searches the bodies in rows matches them (`q`); byte for byte, so unlike that
        LIKE it also looks past a NUL byte and inside invalid UTF-8. A SQL function on the
        readers' connection, so it must never raise: an unreadable file holds nothing."""
        try:
            needle = text.encode("utf-8", "surrogatepass").lower()
            if not needle:
                return True
            with open(self.path(capture_id), "rb") as file:
                # In chunks, each joined to the end of the one before, so a body of any size
                # costs a chunk's memory and a match across two chunks is still found.
                tail = b""
                while chunk := file.read(_SEARCH_CHUNK):
                    window = tail + chunk.lower()
                    if needle in window:
                        return True
                    tail = window[-(len(needle) - 1):] if len(needle) > 1 else b""
        except Exception:  # raised inside SQLite, it would fail the whole query
            return False
        return False


def _sync_folder(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _stored(conn: sqlite3.Connection, capture_ids: list[str]) -> set[str]:
    """Which of these captures have a committed row whose body is in a file."""
    found: set[str] = set()
    for start in range(0, len(capture_ids), _CHUNK):
        chunk = capture_ids[start:start + _CHUNK]
        found.update(row[0] for row in conn.execute(
            f"SELECT id FROM captures WHERE file_bytes > 0 AND id IN "
            f"({','.join('?' * len(chunk))})", chunk))
    return found
