"""One writer per record: a lock file beside it, taken atomically, refreshed every epoch, taken over when stale.

Two launchers (or two shells) on the same sweep must never train one config twice or write one
record at once. ``RecordLock`` creates ``<run folder>/.lock`` with ``O_CREAT | O_EXCL`` (atomic
on a local disk and on NFS v3+), holding the host, the process id and the time. A lock whose
process is gone (same host) or whose file was not refreshed for ``stale_seconds`` (another host:
a killed or pre-empted worker) is stale and is taken over.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

__all__ = ["RecordLock", "RunLocked", "STALE_SECONDS"]

STALE_SECONDS = float(os.environ.get("ASDKIT_LOCK_STALE", 3600))
WRITING_SECONDS = 10.0  # a lock file with no holder in it for longer than this was left empty, not being written  # an epoch refreshes the lock; an hour without one is a dead worker


class RunLocked(RuntimeError):
    """The run is being trained by another live process."""


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (a zombie, killed but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (macOS): os.kill's answer stands
    return state not in ("Z", "X")


class RecordLock:
    """The lock of one run folder; use as a context manager, call :meth:`refresh` after each epoch."""

    def __init__(self, folder: Path, *, stale_seconds: float | None = None) -> None:
        self.path = Path(folder) / ".lock"
        self.stale_seconds = STALE_SECONDS if stale_seconds is None else stale_seconds
        self.held = False

    def holder(self) -> dict | None:
        """Who holds the lock ({host, pid, since}), or None if nobody does."""
        try:
            return json.loads(self.path.read_text() or "{}")
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, OSError):
            return {"host": "?", "pid": -1, "since": 0.0}

    def stale(self) -> bool:
        """True if the lock's holder is gone: a dead process on this host, or no refresh for ``stale_seconds``."""
        h = self.holder()
        if h is None:
            return False
        if not h.get("host") or int(h.get("pid") or -1) <= 0:  # empty or unreadable: stale unless it is being written now
            try:
                return time.time() - self.path.stat().st_mtime > WRITING_SECONDS
            except FileNotFoundError:
                return False
        if h.get("host") == socket.gethostname() and int(h.get("pid", -1)) > 0:
            return not _alive(int(h["pid"]))
        try:
            return time.time() - self.path.stat().st_mtime > self.stale_seconds
        except FileNotFoundError:
            return False

    def acquire(self) -> None:
        """Take the lock, or take over a stale one; raise :class:`RunLocked` naming the live holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileNotFoundError:  # the folder was removed meanwhile (a refused run tidying up): make it again
                self.path.parent.mkdir(parents=True, exist_ok=True)
                continue
            except FileExistsError:
                if self.stale():
                    try:
                        self.path.unlink()  # a dead worker's lock; the next O_EXCL decides between racing takers
                    except FileNotFoundError:
                        pass
                    continue
                h = self.holder() or {}
                raise RunLocked(f"{self.path.parent.name} is being trained by process {h.get('pid')} on {h.get('host')} "
                                f"since {time.strftime('%H:%M:%S', time.localtime(h.get('since', 0)))} "
                                f"(delete {self.path} if that process is gone)") from None
            with os.fdopen(fd, "w") as f:
                json.dump({"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}, f)
            self.held = True
            return
        raise RunLocked(f"could not take {self.path}: another process keeps taking it")

    def refresh(self) -> None:
        """Touch the lock: its holder is alive (another host's launcher reads the time)."""
        if self.held:
            os.utime(self.path)

    def release(self) -> None:
        if self.held:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            self.held = False

    def __enter__(self) -> "RecordLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
