"""One lock per repository for the operations plait makes on the user's repository's shared state
(ref updates: read, decide, compare-and-swap). They take milliseconds while tasks take minutes, so
the lost parallelism does not matter. (Workspaces need no lock: each is a repository of its own.)

The lock has two layers because either alone is not enough:
- a `threading.RLock` per common dir, shared through a module registry, for the worker threads of
  one plait process (flock is per open file, so two threads holding their own descriptors would
  both get it);
- `fcntl.flock` on `<common-dir>/plait/git.lock` for other plait processes (a detached MCP
  runner, a second `plait run`). The kernel drops it when a process dies, so a killed run never
  leaves the repository locked.

Reentrant within a thread: a caller may hold it around several ref updates, each of which takes it
again. Only the outermost `with` takes and drops the file lock.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from plait.errors import PlaitError

# Admin operations take milliseconds; waiting this long means another process is stuck.
DEFAULT_TIMEOUT_SECONDS = 300.0
_POLL_SECONDS = (0.001, 0.02)  # first and longest pause between non-blocking flock attempts


@dataclass
class _Shared:
    """State for one repository, shared by every RepoLock on it in this process."""

    path: Path
    mutex: threading.RLock = field(default_factory=threading.RLock)
    depth: int = 0  # only read or written by the thread holding `mutex`
    fd: int | None = None


_registry: dict[str, _Shared] = {}
_registry_guard = threading.Lock()


def _forget_after_fork() -> None:
    # A forked child inherits locked mutexes but not the threads that would release them.
    global _registry_guard
    _registry.clear()
    _registry_guard = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


def _shared_for(common_dir: Path) -> _Shared:
    key = os.path.realpath(common_dir)
    with _registry_guard:
        shared = _registry.get(key)
        if shared is None:
            shared = _registry[key] = _Shared(Path(key) / "plait" / "git.lock")
        return shared


class RepoLock:
    """`with RepoLock(common_dir): ...` serializes git admin operations across threads and processes."""

    def __init__(self, common_dir: Path, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self._shared = _shared_for(common_dir)
        self.timeout = timeout

    @property
    def path(self) -> Path:
        return self._shared.path

    def __enter__(self) -> RepoLock:
        shared = self._shared
        deadline = time.monotonic() + self.timeout
        if not shared.mutex.acquire(timeout=self.timeout):
            raise self._timed_out("another thread of this process")
        try:
            if shared.depth == 0:
                shared.fd = self._lock_file(deadline)
            shared.depth += 1
        except BaseException:
            shared.mutex.release()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        shared = self._shared
        shared.depth -= 1
        if shared.depth == 0 and shared.fd is not None:
            fd, shared.fd = shared.fd, None
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        shared.mutex.release()

    def _lock_file(self, deadline: float) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        pause = _POLL_SECONDS[0]
        try:
            # Polling rather than a blocking flock, so a stuck holder becomes an error, not a hang.
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return fd
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise self._timed_out("another process") from None
                    time.sleep(pause)
                    pause = min(pause * 2, _POLL_SECONDS[1])
        except BaseException:
            os.close(fd)
            raise

    def _timed_out(self, holder: str) -> PlaitError:
        return PlaitError(
            f"timed out after {self.timeout:.0f}s waiting for plait's git lock {self.path}, held by {holder}",
            "another plait run is working on this repository; wait for it or stop it (`plait status`)",
        )
