"""Atomic file writes, shared by the data cache and the run records (below every layer that writes a file)."""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["save_atomic", "save_atomic_text", "NoSpace"]

LOW_SPACE = 64 * 2**20  # a failed write with less free space than this was a full disk (torch's zip writer hides ENOSPC)


class NoSpace(ValueError):
    """The disk filled up during a write: nothing is half-written, the files written before are kept."""


def _write_atomic(path: Path, write) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, flush it to disk, then move it into place (``os.replace``).

    An interrupted write never leaves a half-written file under ``path``; the file is made
    readable by everyone (records and data caches are meant to be shared).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(err, Exception) and (getattr(err, "errno", None) == errno.ENOSPC or shutil.disk_usage(path.parent).free < LOW_SPACE):
            raise NoSpace(f"no space left in {path.parent} (writing {path.name}); what was written before is kept "
                          "(a run resumes from its last finished epoch): free some space and run again.") from None
        raise


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` ``obj`` to ``path`` atomically."""
    _write_atomic(path, lambda f: torch.save(obj, f))


def save_atomic_text(text: str, path: Path) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (the figures' README and index)."""
    _write_atomic(path, lambda f: f.write(text.encode("utf-8")))
