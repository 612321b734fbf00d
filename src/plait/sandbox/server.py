"""The launch server: the launcher (`__main__`), forked from one process started once, instead of a new
Python started for every confined command.

Starting Python and loading ctypes was two thirds of the launcher's cost (about 20 of 29 ms of CPU per
command). The server has done that once; for each request it forks, and the child becomes exactly the
launcher `python -m plait.sandbox` would have been: its own session, the request's stdin, stdout, stderr,
working directory and environment, every other descriptor closed, then `__main__.launch` (namespaces,
Landlock, the command). The confinement is the launcher's, made in the child; the server itself runs
nothing else and is confined by nothing, like the launcher before its own fork.

Protocol, on a stream socket whose other end only the client (`plait.sandbox.client`) holds: a request is
4 bytes of length, carrying five descriptors (stdin, stdout, stderr, the lifeline's read end, a status
pipe's write end), then that many bytes of JSON: {"args": launcher options up to and including "--" and
the command, "cwd": absolute, "env": {...}}. The reply is one line: the child's pid, or "!" and why it
could not be forked. When the child ends, its raw wait status is written to its status pipe, which is then
closed. EOF on the socket (the client is gone) ends the server; its running children end with their
lifelines (and, in a PID namespace, with the parent-death signal of their launcher).

Single-threaded on purpose: forking a process with threads is unsafe, and a user namespace cannot be
entered by one.
"""

from __future__ import annotations

import array
import contextlib
import gc
import json
import os
import select
import socket
import subprocess  # noqa: F401 - loaded here, the launcher starts commands with it (no copy of memory)
import sys

from plait.sandbox import __main__ as launcher  # ignores INT and TERM: plait stops this server, not a Ctrl-C

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
else:
    import _signal as signal  # as the launcher: `signal` imports enum

HEADER = 4
FDS = 5


def main() -> None:
    serve(socket.socket(fileno=int(sys.argv[1])))


def serve(sock: socket.socket) -> None:
    gc.disable()  # nothing here makes cycles; a collection in a forked child would copy every page it visits
    gc.freeze()
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # only so that SIGCHLD writes to wake_w
    running: dict[int, int] = {}  # pid -> the write end of its status pipe
    poll = select.poll()
    poll.register(sock.fileno(), select.POLLIN)
    poll.register(wake_r, select.POLLIN)
    while True:
        reap(running)
        for fd, _ in poll.poll():
            if fd == wake_r:
                os.read(wake_r, 1024)
                continue
            request = receive(sock)
            if request is None:
                reap(running)
                os._exit(0)
            fds, body = request
            sock.sendall(start(fds, body, running, (sock.fileno(), wake_r, wake_w)))


def reap(running: dict[int, int]) -> None:
    while running:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if not pid:
            return
        fd = running.pop(pid, None)
        if fd is not None:
            with contextlib.suppress(OSError):  # the client may have stopped waiting (torn down)
                os.write(fd, str(status).encode())
            os.close(fd)


def receive(sock: socket.socket) -> tuple[list[int], bytes] | None:
    """The next request's descriptors and body; None at EOF."""
    data, ancillary, _, _ = sock.recvmsg(HEADER, socket.CMSG_SPACE(FDS * 4), socket.MSG_CMSG_CLOEXEC)
    fds: list[int] = []
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += array.array("i", payload[:len(payload) - len(payload) % 4]).tolist()
    if not data:
        for fd in fds:
            os.close(fd)
        return None
    data += read_exactly(sock, HEADER - len(data))
    return fds, read_exactly(sock, int.from_bytes(data, "big"))


def read_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            os._exit(0)  # the client died mid-request
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def start(fds: list[int], body: bytes, running: dict[int, int], ours: tuple[int, ...]) -> bytes:
    if len(fds) != FDS:
        for fd in fds:
            os.close(fd)
        return b"!malformed request\n"
    stdin, stdout, stderr, lifeline, status = fds
    try:
        pid = os.fork()
    except OSError as exc:
        for fd in fds:
            os.close(fd)
        return f"!{exc.errno}\n".encode()
    if pid == 0:
        become_launcher(stdin, stdout, stderr, lifeline, body, ours)
    for fd in (stdin, stdout, stderr, lifeline):
        os.close(fd)
    running[pid] = status
    return f"{pid}\n".encode()


def become_launcher(stdin: int, stdout: int, stderr: int, lifeline: int, body: bytes,
                    ours: tuple[int, ...]) -> None:
    """In the forked child: set up what `subprocess.Popen` would have for the launcher, then be it."""
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in ours:
            os.close(fd)
        os.setsid()
        for target, fd in enumerate((stdin, stdout, stderr)):
            os.dup2(fd, target)  # inheritable, as Popen's are
        os.closerange(3, lifeline)  # the other children's status pipes, these descriptors' originals
        os.closerange(lifeline + 1, os.sysconf("SC_OPEN_MAX"))
        request = json.loads(body)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
    except (OSError, ValueError, KeyError) as exc:
        launcher.fail(f"cannot start: {exc}")
    launcher.launch(launcher.Options(["--lifeline", str(lifeline), *request["args"]]))


if __name__ == "__main__":
    main()
