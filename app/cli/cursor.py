"""Where `hookscope listen` stopped forwarding to each target, kept on disk so a restarted
listener carries on from there, and the claim that keeps two listeners off one target."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

from hookscope.cli.base import USAGE, Failed


def state_folder(given: str | None) -> Path:
    """--state, else $XDG_STATE_HOME/hookscope/listen, else ~/.local/state/hookscope/listen."""
    if given:
        return Path(given)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "hookscope" / "listen"


class Cursor:
    """Where forwarding to one target stopped: the last sequence number handled, for one server,
    endpoint and target, in `<hash>.json` (which names all three, for a person who looks)."""

    def __init__(self, folder: Path, server: str, endpoint: str, target: str) -> None:
        digest = hashlib.sha256(f"{server}\n{endpoint}\n{target}".encode()).hexdigest()[:32]
        self.path = folder / f"{digest}.json"
        self.lock_path = folder / f"{digest}.pid"
        self.about = {"server": server, "endpoint": endpoint, "target": target}

    def load(self) -> int | None:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise Failed(USAGE, f"cannot read {self.path}: {exc.strerror or exc}") from None
        try:
            seq = json.loads(text)["seq"]
        except (ValueError, KeyError, TypeError):
            seq = None
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise Failed(USAGE, f"{self.path} is not a listener's cursor: delete it, or start "
                                "with --from")
        return seq

    def save(self, seq: int) -> None:
        """Replaced whole (a new file renamed over the old): a listener killed at any moment
        leaves the old cursor or the new one, never half of one. Not synced to disk: a killed
        process loses nothing the kernel has, and after a power cut the deliveries recorded on
        the server keep what was delivered from being sent again."""
        temp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        try:
            temp.write_text(json.dumps({**self.about, "seq": seq}) + "\n")
            os.replace(temp, self.path)
        except OSError as exc:
            raise Failed(USAGE, f"cannot save the cursor in {self.path}: "
                                f"{exc.strerror or exc}") from None

    def claim(self) -> None:
        """One listener per server, endpoint and target: a second would forward every capture
        again. The claim is a file holding the process id; one whose process is gone (a killed
        listener) is taken over."""
        for _ in range(2):
            try:
                fd = os.open(self.lock_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except PermissionError as exc:
                raise Failed(USAGE, f"cannot write in {self.lock_path.parent}: "
                                    f"{exc.strerror or exc}") from None
            except FileExistsError:
                holder = _pid_in(self.lock_path)
                if holder is not None and holder != os.getpid() and _alive(holder):
                    raise Failed(USAGE, f"another listener (process {holder}) is forwarding "
                                        f"these captures to {self.about['target']} (its claim: "
                                        f"{self.lock_path})") from None
                with contextlib.suppress(FileNotFoundError):
                    self.lock_path.unlink()
                continue
            with os.fdopen(fd, "w") as file:
                file.write(f"{os.getpid()}\n")
            return
        raise Failed(USAGE, f"cannot claim {self.lock_path}: another listener is starting")

    def release(self) -> None:
        if _pid_in(self.lock_path) == os.getpid():
            with contextlib.suppress(OSError):
                self.lock_path.unlink()


def _pid_in(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
