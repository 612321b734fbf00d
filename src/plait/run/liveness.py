"""Is a run's process alive? A lock answers, not a clock.

The process running a run holds a write lock on `<git-common-dir>/plait/runs/<run>.lock` for its
whole life (scheduling, integration, report). The kernel drops it when that process ends, however it
ends, so `status`, `resume` and `cancel` ask the lock and never guess from heartbeats.

The locks are Linux/BSD "open file description" locks (`F_OFD_SETLK`): like `flock` they belong to
the open file, not to the process (closing some other descriptor of the file does not drop them, as
it would a POSIX lock), and unlike `flock` they can be *queried* without being taken (`F_OFD_GETLK`),
so a status check can never make a starting runner think the run is taken. Where OFD locks do not
exist (macOS), `flock` is used, and a query takes and drops a shared lock.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct

TYPE_CHECKING = False  # pathlib and typing cost a status read more than this module; mypy treats this as True
if TYPE_CHECKING:
    from os import PathLike

    Where = str | PathLike[str]

_OFD = hasattr(fcntl, "F_OFD_SETLK")
_FLOCK = "hhqqi4x"  # struct flock on 64-bit Linux: type, whence, start, len, pid


def lock_path(common_dir: Where, run_id: str) -> str:
    return os.path.join(common_dir, "plait", "runs", f"{run_id}.lock")


class Taken(Exception):
    """Another process holds the run: `pid` is what it wrote into the lock file (None if unknown)."""

    def __init__(self, pid: int | None) -> None:
        super().__init__(f"held by pid {pid}")
        self.pid = pid


class RunLock:
    """`with RunLock(path):` holds the run for this process, or raises Taken."""

    def __init__(self, path: Where) -> None:
        self.path = path
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            if _OFD:
                fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0))
            else:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise Taken(holder(self.path)) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # drops the lock
            self._fd = None


def held(path: Where) -> bool:
    """Whether some live process holds the run. Never takes the lock (see the module's docstring)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        if _OFD:
            query = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
            answer = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, query)
            return bool(struct.unpack(_FLOCK, answer)[0] != fcntl.F_UNLCK)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False
    finally:
        os.close(fd)


def holder(path: Where) -> int | None:
    """The pid the holder wrote into the lock file, for messages."""
    try:
        with open(path) as f:
            return int(f.read().strip() or "x")
    except (OSError, ValueError):
        return None
