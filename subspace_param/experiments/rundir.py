"""One writer per run directory: an exclusive ``fcntl`` lock, and no silent overwrite of a run.

:func:`claim_run_directory` is called by a run before it writes anything into ``--out``:

* it takes an exclusive, non-blocking ``fcntl.flock`` on ``out/.lock`` and writes its PID and host
  there; a second run on the same directory is refused with the holder's PID and host. The kernel
  releases the lock when its process dies, so the lock of a killed run is taken over, with a notice;
* a directory that already holds a run (``summary.json``: finished, ``checkpoint.pt``: unfinished)
  is refused unless the caller resumes it or asks to overwrite it (then only the run's own files
  are removed, nothing else in the folder);
* temporary files that a killed atomic write left behind (``.<name>.<random>.tmp``) are removed.

The lock is held until :meth:`RunLock.release` or the end of the process.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
from pathlib import Path

from ..errors import RunDirectoryError

LOCK_NAME = ".lock"
#: the files a run writes; ``overwrite`` removes exactly these
RUN_FILES = (
    "config.json",
    "history.csv",
    "history.json",
    "checkpoint.pt",
    "model.pt",
    "swa.pt",
    "fge.pt",
    "summary.json",
)


class RunLock:
    """An exclusive lock on one run directory (see :func:`claim_run_directory`)."""

    def __init__(self, directory: Path, fd: int) -> None:
        self.directory = directory
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _holder(path: Path) -> dict[str, object]:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def _alive(pid: object, host: object) -> bool:
    if host != socket.gethostname() or not isinstance(pid, int):
        return True  # another machine: cannot tell, assume alive
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_orphan_temp_files(directory: Path) -> list[Path]:
    """Remove the ``.<name>.<random>.tmp`` files of atomic writes that were killed midway."""
    removed = []
    for tmp in directory.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed.append(tmp)
    return removed


def claim_run_directory(
    out: str | os.PathLike[str], *, resume: bool = False, overwrite: bool = False, notify=None
) -> RunLock:
    """Lock ``out`` for this run, refuse to clobber a run there, tidy what a killed run left.

    Args:
        resume: continue the run in ``out`` (its ``checkpoint.pt`` must exist).
        overwrite: remove the run files already in ``out`` and start afresh.
        notify: called with one line for each notice (stale lock taken over, temp files removed);
            default: print to stderr.
    Raises:
        RunDirectoryError: ``out`` is locked by a live run, holds a run and neither ``resume`` nor
            ``overwrite`` was given, or ``resume`` was given without a checkpoint.
    """
    if resume and overwrite:
        raise RunDirectoryError("resume and overwrite exclude each other: choose one")
    say = notify or (lambda line: print(line, file=sys.stderr))
    directory = Path(out)
    directory.mkdir(parents=True, exist_ok=True)
    lock_path = directory / LOCK_NAME
    previous = _holder(lock_path)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        holder = _holder(lock_path)
        raise RunDirectoryError(
            f"{directory} is in use by another run (PID {holder.get('pid', '?')} on "
            f"{holder.get('host', '?')}, lock file {lock_path}); wait for it to finish or choose another "
            "output directory"
        ) from None
    lock = RunLock(directory, fd)
    try:
        if previous.get("pid") not in (None, os.getpid()) and not _alive(
            previous.get("pid"), previous.get("host")
        ):
            say(
                f"[run] {directory}: taking over the stale lock of PID {previous['pid']} on "
                f"{previous.get('host')} (that process is gone)"
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode(), 0)
        removed = remove_orphan_temp_files(directory)
        if removed:
            say(f"[run] {directory}: removed {len(removed)} temporary file(s) of an interrupted write")
        checkpoint, summary = directory / "checkpoint.pt", directory / "summary.json"
        if resume and not checkpoint.exists():
            raise RunDirectoryError(
                f"{directory}: nothing to resume (no checkpoint.pt); start the run without resume"
            )
        if not resume and not overwrite and (summary.exists() or checkpoint.exists()):
            state = (
                "a finished run (summary.json)" if summary.exists() else "an unfinished run (checkpoint.pt)"
            )
            raise RunDirectoryError(
                f"{directory} already holds {state}; resume it (--resume), replace it (--overwrite) "
                "or choose another output directory"
            )
        if overwrite:
            for name in RUN_FILES:
                with contextlib.suppress(FileNotFoundError):
                    (directory / name).unlink()
    except BaseException:
        lock.release()
        raise
    return lock
