"""The one place plait runs subprocesses.

Every child runs in its own process group so a timeout or a cancel can stop the whole tree:
SIGINT, then SIGTERM, then SIGKILL, each step logged. Output goes to files when asked, so an
agent that prints megabytes never fills a pipe or our memory; a child whose output files stop
growing for `stall` seconds is stopped the same way (it is stuck, e.g. reconnecting for ever).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from plait import sandbox
from plait.sandbox import client

log = logging.getLogger("plait.proc")

# How long each stop signal gets before the next, stronger one.
STOP_GRACE_SECONDS = (2.0, 3.0)


@dataclass(frozen=True)
class Completed:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    duration: float
    timed_out: bool = False
    stalled: bool = False  # stopped because its output files stopped growing (see `run`'s `stall`)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and not self.stalled


def stop_group(proc: subprocess.Popen[bytes] | client.Launched, grace: Sequence[float] | None = None) -> int:
    """Stop a child and its process group: INT -> TERM -> KILL (grace: STOP_GRACE_SECONDS, read when
    called). Returns the exit code."""
    grace = STOP_GRACE_SECONDS if grace is None else grace
    for sig, wait in ((signal.SIGINT, grace[0]), (signal.SIGTERM, grace[1]), (signal.SIGKILL, None)):
        if proc.poll() is not None:
            break
        log.info("stopping pid %s with %s", proc.pid, sig.name)
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            log.info("pid %s still alive %.1fs after %s", proc.pid, wait, sig.name)
    rc = proc.wait()
    # The leader may be gone while children it left behind still hold the group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    return rc


def run(
    argv: Sequence[str] | str,
    *,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    input: str | bytes | None = None,
    timeout: float | None = None,
    shell: bool = False,
    stdout_path: Path | None = None,
    stderr_path: Path | None = None,
    cancel: threading.Event | None = None,
    confine: sandbox.Confinement | None = None,
    stall: float | None = None,
    quiet: re.Pattern[bytes] | None = None,
) -> Completed:
    """Run a child to completion (or timeout) in its own process group.

    `shell=True` is only for commands the user wrote as a string (a plan's `verify:`), where
    the shell is the point. When `stdout_path`/`stderr_path` are given the streams go to those
    files and the returned text is their tail. Setting `cancel` stops the child like a timeout
    (returncode from the stop, `timed_out` False).

    With `confine` the child is started through the sandbox launcher (`plait.sandbox`), which
    runs the command confined and ends every process it started when it ends, also if plait
    dies: that is what the "lifeline" pipe is for, whose write end only we hold until the child
    has ended. Exit codes, signals and stops are as without it.

    With `stall` (seconds) and output going to files, a child whose files have not grown for that
    long is stopped like a timeout and the result says `stalled`. Lines matching `quiet` (a CLI's
    "Reconnecting..." notices) do not count as growth: a child that only retries is stuck too.
    """
    if shell:
        assert isinstance(argv, str), "shell commands are strings"
        args: Sequence[str] | str = argv
        shown: tuple[str, ...] = ("sh", "-c", argv)
    else:
        assert not isinstance(argv, str), "argv must be a sequence when shell=False"
        args = list(argv)
        shown = tuple(argv)
    if confine is not None and sys.platform != "linux":
        confine = None  # the launcher is Linux-only; `plait run` warned that agents are not confined
    if confine is not None and not shell:
        sandbox.check_executable(shown[0], env, cwd)  # fail to start as Popen would
    data = input.encode() if isinstance(input, str) else input
    out_file = open(stdout_path, "wb") if stdout_path else None  # noqa: SIM115 - closed below
    # The same path for both streams interleaves them in one log, as a terminal would.
    same = stderr_path is not None and stderr_path == stdout_path
    err_file = open(stderr_path, "wb") if stderr_path and not same else None  # noqa: SIM115 - closed below
    lifeline: tuple[int, int] | None = None
    start = time.monotonic()
    try:
        proc: subprocess.Popen[bytes] | client.Launched | None = None
        if confine is not None:
            command = ["/bin/sh", "-c", str(argv)] if shell else list(shown)  # what the launcher runs
            lifeline = os.pipe()
            proc = client.start(command, confine, cwd=cwd, env=env, stdin=data is not None,
                                stdout=out_file.fileno() if out_file else None,
                                stderr=client.STDOUT if same else err_file.fileno() if err_file else None,
                                lifeline=lifeline[0])
            if proc is None:  # no launch server here: the launcher starts as a process of its own
                args = [*sandbox.launcher_argv(confine, lifeline[0]), *command]
        if proc is None:
            proc = subprocess.Popen(
                args,
                cwd=cwd,
                env=dict(env) if env is not None else None,
                shell=shell and confine is None,
                pass_fds=lifeline[:1] if lifeline else (),
                stdin=subprocess.PIPE if data is not None else subprocess.DEVNULL,
                stdout=out_file or subprocess.PIPE,
                stderr=subprocess.STDOUT if same else err_file or subprocess.PIPE,
                start_new_session=True,
            )
    except OSError:
        for f in (out_file, err_file):
            if f:
                f.close()
        _close(lifeline)
        raise
    timed_out = stalled = False
    deadline = start + timeout if timeout is not None else None
    watch = _Growth((stdout_path, stderr_path), quiet) if stall is not None and (stdout_path or stderr_path) else None
    grown_at = start
    try:
        while True:
            # Short slices so a cancel or a stall is noticed; retrying communicate() loses no output.
            wait = None if cancel is None and watch is None else 0.2
            if deadline is not None:
                left = max(0.0, deadline - time.monotonic())
                wait = left if wait is None else min(wait, left)
            try:
                out, err = proc.communicate(data, timeout=wait)
                break
            except subprocess.TimeoutExpired:
                data = None
                now = time.monotonic()
                if watch is not None and watch.grew():
                    grown_at = now
                if deadline is not None and now >= deadline:
                    timed_out = True
                    log.warning("%s timed out after %ss", shown[0], timeout)
                elif stall is not None and watch is not None and now - grown_at >= stall:
                    stalled = True
                    log.warning("%s stalled: its output did not grow for %ss", shown[0], stall)
                elif cancel is None or not cancel.is_set():
                    continue
                stop_group(proc)
                out, err = proc.communicate()
                break
    except BaseException:
        stop_group(proc)
        raise
    finally:
        for f in (out_file, err_file):
            if f:
                f.close()
        _close(lifeline)  # the child has ended by now (or we are being torn down: so should it)
    duration = time.monotonic() - start
    stdout = tail(stdout_path) if stdout_path else (out or b"").decode(errors="replace")
    stderr = "" if same else tail(stderr_path) if stderr_path else (err or b"").decode(errors="replace")
    rc = proc.returncode if proc.returncode is not None else -1
    return Completed(shown, rc, stdout, stderr, duration, timed_out, stalled)



def detach(argv: Sequence[str], *, cwd: Path, log: Path, pass_fds: Sequence[int] = ()) -> int:
    """Start a child that outlives us; returns its pid. It gets its own session, so no terminal,
    SIGHUP, Ctrl-C or process-group kill of ours reaches it; stdin is /dev/null and its stdout and
    stderr are appended to `log` (never our stdout, which may be an MCP server's protocol).

    A daemon thread waits for it, so a long-lived caller (an MCP server starts many runs) keeps no
    zombie; if the caller ends first, init (or the nearest subreaper) adopts and reaps it. Not a double
    fork: forking a caller that has threads is unsafe, and the pid we return would be a grandchild's."""
    with open(log, "ab") as out:
        child = subprocess.Popen(list(argv), cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT, close_fds=True, pass_fds=tuple(pass_fds),
                                 start_new_session=True)
    threading.Thread(target=child.wait, name=f"reap-{child.pid}", daemon=True).start()
    return child.pid


class _Growth:
    """Whether a child's output files grew since the last look, by anything but `quiet` lines."""

    _CHUNK = 1 << 16

    def __init__(self, paths: Sequence[Path | None], quiet: re.Pattern[bytes] | None) -> None:
        self.offsets = {path: 0 for path in paths if path is not None}
        self.quiet = quiet

    def grew(self) -> bool:
        grew = False
        for path, seen in self.offsets.items():
            try:
                size = path.stat().st_size
            except OSError:
                continue
            if size <= seen:
                self.offsets[path] = size
                continue
            if self.quiet is None or size - seen > self._CHUNK:
                self.offsets[path], grew = size, True
                continue
            with open(path, "rb") as f:
                f.seek(seen)
                chunk = f.read(size - seen)
            end = chunk.rfind(b"\n")
            if end < 0:
                continue  # an unfinished line is judged when it ends
            self.offsets[path] = seen + end + 1
            grew = grew or any(line.strip() and not self.quiet.search(line) for line in chunk[:end].splitlines())
        return grew


def _close(fds: tuple[int, int] | None) -> None:
    for fd in fds or ():
        os.close(fd)


def tail(path: Path, limit: int = 4000) -> str:
    """The last `limit` bytes of a file, decoded."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
