"""Confined commands started through the launch server (`server`), one per process, started on first use.

`start` hands the server a command with its stdin, stdout, stderr, working directory, environment and
lifeline, and returns a `Launched`: the part of `subprocess.Popen` that `plait.proc` uses (pid, poll,
wait, communicate, returncode). It returns None when no server can be had, and the caller then starts
the launcher as a process of its own: same confinement, a Python start more.
"""

from __future__ import annotations

import array
import atexit
import contextlib
import errno
import json
import logging
import os
import select
import signal
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence

from plait.sandbox import Confinement, launcher_args, python_argv

log = logging.getLogger("plait.sandbox")

ENABLED = True  # False: every confined command starts the launcher as a process of its own (tests use both)
STDOUT = -2  # as subprocess.STDOUT: stderr goes where stdout goes
LOCALE = ("LANG", "LC_ALL", "LC_CTYPE")  # the server decodes paths and the environment as plait does


class Launched:
    """A command the launch server started; its streams are pipes of ours or descriptors we passed."""

    def __init__(self, args: Sequence[str], pid: int, status: int, stdin: int | None, stdout: int | None,
                 stderr: int | None) -> None:
        self.args, self.pid = list(args), pid
        self.returncode: int | None = None
        self._status = status  # read end of the pipe the server writes the wait status to
        self._stdin, self._input = stdin, memoryview(b"")
        # open pipes -> what they gave
        self._streams: dict[int, list[bytes]] = {fd: [] for fd in (stdout, stderr) if fd is not None}
        self._out, self._err = stdout, stderr

    def poll(self) -> int | None:
        self._pump(0.0, streams=False)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._pump(timeout, streams=False):
            raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
        assert self.returncode is not None
        return self.returncode

    def communicate(self, input: bytes | None = None,
                    timeout: float | None = None) -> tuple[bytes | None, bytes | None]:
        """As Popen's: feed `input` (given on the first call), read the pipes to their end and wait; on a
        timeout, TimeoutExpired, and a later call goes on where this one stopped."""
        if input is not None and self._stdin is not None and not self._input:
            self._input = memoryview(input)
            os.set_blocking(self._stdin, False)
        if not self._pump(timeout, streams=True):
            raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
        out = b"".join(self._streams.get(self._out, [])) if self._out is not None else None
        err = b"".join(self._streams.get(self._err, [])) if self._err is not None else None
        return out, err

    def _pump(self, timeout: float | None, streams: bool) -> bool:
        """Wait (up to `timeout`) for the status and, with `streams`, feed stdin and drain the pipes to EOF;
        True once all of that is done."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            watch = {self._status: select.POLLIN} if self.returncode is None else {}
            if streams:
                watch.update({fd: select.POLLIN for fd in self._open_streams()})
                if self._stdin is not None:
                    watch[self._stdin] = select.POLLOUT
            if not watch:
                return True
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            poll = select.poll()
            for fd, events in watch.items():
                poll.register(fd, events)
            ready = poll.poll(None if left is None else int(left * 1000 + 0.999))
            if not ready and left is not None:
                return False
            for fd, _ in ready:
                if fd == self._status:
                    self._read_status()
                elif fd == self._stdin:
                    self._feed()
                else:
                    self._drain(fd)

    def _open_streams(self) -> list[int]:
        return [fd for fd, chunks in self._streams.items() if not chunks or chunks[-1]]  # b"" marks EOF

    def _read_status(self) -> None:
        report = os.read(self._status, 64)
        os.close(self._status)
        if report:
            self.returncode = os.waitstatus_to_exitcode(int(report))
        else:  # the server died: its launcher children die with it (or end with their lifeline)
            log.warning("the sandbox's launch server ended while pid %s was running", self.pid)
            self.returncode = -signal.SIGKILL

    def _feed(self) -> None:
        assert self._stdin is not None
        try:
            written = os.write(self._stdin, self._input[:1 << 16]) if self._input else 0
        except BlockingIOError:
            return
        except BrokenPipeError:
            written = len(self._input)
        self._input = self._input[written:]
        if not self._input:
            os.close(self._stdin)
            self._stdin = None

    def _drain(self, fd: int) -> None:
        chunk = os.read(fd, 1 << 16)
        self._streams[fd].append(chunk)
        if not chunk:
            os.close(fd)

    def __del__(self) -> None:
        for fd in [self._stdin, *self._open_streams(), self._status if self.returncode is None else None]:
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)


class _Server:
    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        try:
            # Its own environment is only its locale: each command gets the one its request carries, and the
            # user's secrets are not copied into another long-lived process. A Ctrl-C is for plait, which stops it.
            self.process = subprocess.Popen([*python_argv("server"), str(theirs.fileno())], pass_fds=(theirs.fileno(),),
                                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, cwd="/",
                                            env={k: v for k, v in os.environ.items() if k in LOCALE},
                                            start_new_session=True)
        finally:
            theirs.close()
        self.socket, self.owner, self.lock = ours, os.getpid(), threading.Lock()

    def request(self, fds: Sequence[int], body: bytes) -> int:
        """The pid of the forked launcher; OSError when the server cannot fork or is gone."""
        with self.lock:
            self.socket.sendmsg([len(body).to_bytes(4, "big")],
                                [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())])
            self.socket.sendall(body)
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = self.socket.recv(64)
                if not chunk:
                    raise ConnectionResetError(errno.ECONNRESET, "the launch server ended")
                reply += chunk
        if reply.startswith(b"!"):
            code = int(reply[1:]) if reply[1:].strip().isdigit() else errno.EIO
            raise OSError(code, os.strerror(code))
        return int(reply)

    def close(self) -> None:
        self.socket.close()  # EOF: the server reaps what has ended and exits
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


_server: _Server | None = None
_server_lock = threading.Lock()


def _get() -> _Server | None:
    global _server
    with _server_lock:
        if _server is not None and _server.owner != os.getpid():
            _server = None  # a forked child of ours: the server belongs to the parent
        if _server is None:
            try:
                _server = _Server()
            except OSError as exc:
                log.warning("cannot start the sandbox's launch server (%s): each command starts its own launcher", exc)
                return None
        return _server


def _drop(server: _Server) -> None:
    global _server
    with _server_lock:
        if _server is server:
            _server = None
    server.socket.close()
    server.process.poll()


@atexit.register
def _close() -> None:
    """At exit, let the server go and reap it (so that its children's CPU is counted as ours)."""
    global _server
    with _server_lock:
        server, _server = _server, None
    if server is not None and server.owner == os.getpid():
        server.close()


def start(command: Sequence[str], confinement: Confinement, *, cwd: str | os.PathLike[str] | None,
          env: Mapping[str, str] | None, stdin: bool, stdout: int | None, stderr: int | None,
          lifeline: int) -> Launched | None:
    """Start `command` confined, through the server. `stdin`: a pipe for input (else /dev/null);
    `stdout`/`stderr`: a descriptor to write to, None for a pipe, STDOUT (stderr only) for stdout's.
    None when there is no server to ask (the caller starts the launcher itself)."""
    if not ENABLED:
        return None
    folder = os.path.abspath(os.fspath(cwd) if cwd is not None else os.getcwd())
    if not stat.S_ISDIR(os.stat(folder).st_mode):  # fail to start as Popen would
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), folder)
    server = _get()
    if server is None:
        return None
    body = json.dumps({"args": [*launcher_args(confinement), *command], "cwd": folder,
                       "env": dict(env) if env is not None else dict(os.environ)}).encode()
    kept: dict[str, int] = {}  # our ends, for the Launched
    theirs: list[int] = []  # the child's ends made here: closed once sent
    try:
        if stdin:
            read, kept["stdin"] = os.pipe()
            theirs.append(read)
        else:
            theirs.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
        streams: list[int] = []
        for name, given in (("stdout", stdout), ("stderr", stderr)):
            if given is None:
                kept[name], write = os.pipe()
                theirs.append(write)
                given = write
            elif given == STDOUT:
                given = streams[0]
            streams.append(given)
        kept["status"], status = os.pipe()
        theirs.append(status)
        pid = server.request([theirs[0], *streams, lifeline, status], body)
    except BaseException as exc:
        for fd in kept.values():
            os.close(fd)
        if isinstance(exc, ConnectionError):
            log.warning("the sandbox's launch server ended: starting a launcher of its own")
            _drop(server)
            return None
        raise
    finally:
        for fd in theirs:
            os.close(fd)
    return Launched(command, pid, kept["status"], kept.get("stdin"), kept.get("stdout"), kept.get("stderr"))
