"""Detached runs: a run executed by a runner process that outlives whoever started it (a terminal, an
MCP server), found again, like any run, through its lock (`plait status`, `cancel`, `resume`).

The starter learns that the runner has started from a pipe, not from a clock: the runner writes
`READY` once the run has started (it holds the run's lock and the run is recorded running), or the
lines of its error if it refuses; its end closes the pipe, so a runner that dies says so too.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from plait import api, proc
from plait.errors import PlaitError

READY = b"\x06"  # ASCII ACK: an error's text never starts with it
START_TIMEOUT = 120.0  # seconds; generous: a loaded machine may take long to start Python


def log_path(root: Path, run_id: str) -> Path:
    """The runner's stdout and stderr, among the run's evidence."""
    return root / ".plait" / "runs" / run_id / "runner.log"


def start_detached(repo: api.Repo, run_id: str, resume: bool = False, timeout: float = START_TIMEOUT) -> int:
    """Start a runner for the recorded run `run_id`, detached from us (see `proc.detach`); return its
    pid once the run has started. Its refusal (e.g. the run is live elsewhere) raises PlaitError."""
    log = log_path(repo.root, run_id)
    log.parent.mkdir(parents=True, exist_ok=True)
    read_end, write_end = os.pipe()
    argv = (sys.executable, "-m", "plait", "_runner", run_id, *(["--resume"] if resume else []),
            "--ready-fd", str(write_end))
    try:
        try:
            pid = proc.detach(argv, cwd=repo.root, log=log, pass_fds=(write_end,))
        finally:
            os.close(write_end)  # the runner holds the only write end now: its end is our EOF
        answer = _answer(read_end, timeout)
    finally:
        os.close(read_end)
    if answer == READY:
        return pid
    if answer is None:
        raise PlaitError(f"run {run_id}'s runner (pid {pid}) has not started it after {timeout:.0f}s",
                         f"it may still: see `plait status {run_id}` and {log}")
    if answer:
        raise PlaitError(" ".join(answer.decode(errors="replace").split("\n")).strip())
    raise PlaitError(f"run {run_id}'s runner (pid {pid}) ended before starting it", f"see its log: {log}")


def resume_detached(repo: api.Repo, run_id: str) -> int:
    """`start_detached` for a run to continue (refused at once if it has completed)."""
    return start_detached(api.resumable(run_id, repo.root), run_id, resume=True)


def _answer(fd: int, timeout: float) -> bytes | None:
    """READY, the runner's error, b"" if it ended without a word, or None if it said nothing in time."""
    deadline = time.monotonic() + timeout
    said = b""
    while not said.startswith(READY):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        chunk = os.read(fd, 4096)
        if not chunk:
            return said
        said += chunk
    return READY


class StartPipe:
    """The runner's end of the pipe to its starter: `ready()` or `refuse(lines)`, once; then closed."""

    def __init__(self, fd: int) -> None:
        os.set_inheritable(fd, False)  # no agent or server we start may hold the starter's EOF back
        self._fd: int | None = fd

    def ready(self) -> None:
        self._say(READY)

    def refuse(self, lines: Iterable[str]) -> None:
        self._say("\n".join(lines).encode())

    def close(self) -> None:
        self._say(b"")

    def _say(self, data: bytes) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):  # the starter may be gone (killed): nobody to tell
            if data:
                os.write(self._fd, data)
        os.close(self._fd)
        self._fd = None
