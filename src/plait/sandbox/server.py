"""The launch server: the sandbox's launcher (`__main__`), from one process started once, instead of a new
Python started for every confined command.

Starting Python and loading ctypes was two thirds of the launcher's cost (about 20 of 29 ms of CPU per
command). The server has done that once. For each request it makes the namespaces' PID 1 itself
(`kernel.fork_into_namespaces`: a fork straight into new PID and mount namespaces, through a user namespace
when it must), which becomes the init the launcher would have forked: its own session, the request's stdin,
stdout, stderr, working directory and environment, every other descriptor closed, then `__main__.run_init`
(its /proc, read-only mounts, capabilities, Landlock, the command started with vfork). Its wait status is
the command's, which it reports on a pipe of its own, as it reported it to the launcher. Where the kernel
makes no such child (no PID namespace here, or the request says so), the server forks and the child becomes
exactly the launcher `python -m plait.sandbox` would have been. The confinement is made in the child; the
server itself runs nothing else and is confined by nothing, like the launcher before its own fork.

Protocol, on a stream socket whose other end only the client (`plait.sandbox.client`) holds: a request is
4 bytes of length, carrying five descriptors (stdin, stdout, stderr, the lifeline's read end, a status
pipe's write end), then that many bytes of JSON: {"args": launcher options up to and including "--" and
the command, "cwd": absolute, "env": {...}}. The reply is one line: the child's pid, or "!" and why it
could not be forked. When the child ends, its raw wait status is written to its status pipe, which is then
closed. EOF on the socket (the client is gone) ends the server; its running children end with it (PID 1 by
its parent-death signal, and the kernel ends the rest of its namespace) or with their lifelines (a launcher).

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
from plait.sandbox import kernel

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
    running: dict[int, tuple[int, int | None]] = {}  # pid -> the write end of its status pipe, PID 1's report
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


def reap(running: dict[int, tuple[int, int | None]]) -> None:
    while running:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if not pid:
            return
        fd, report = running.pop(pid, (None, None))
        if report is not None:  # a namespace's PID 1: the command's own status, unless it died first
            said = os.read(report, 64)
            os.close(report)
            status = int(said) if said else status
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


def start(fds: list[int], body: bytes, running: dict[int, tuple[int, int | None]], ours: tuple[int, ...]) -> bytes:
    if len(fds) != FDS:
        for fd in fds:
            os.close(fd)
        return b"!malformed request\n"
    stdin, stdout, stderr, lifeline, status = fds
    try:
        request = json.loads(body)
        args, cwd, env = request["args"], request["cwd"], request["env"]
    except (ValueError, KeyError, TypeError):
        for fd in fds:
            os.close(fd)
        return b"!malformed request\n"
    report: int | None = None
    try:
        pid = -1
        if "--no-pid-namespace" not in args[:args.index("--") if "--" in args else len(args)]:
            report, report_w = os.pipe()  # the command's status, from PID 1 (it cannot die of the command's signal)
            uid, gid = os.geteuid(), os.getegid()
            try:
                pid, user_namespace = kernel.fork_into_namespaces()
            except OSError:
                os.close(report)
                os.close(report_w)
                report = None
            else:
                if pid == 0:
                    become_init(stdin, stdout, stderr, lifeline, report_w, (args, cwd, env), ours, user_namespace,
                                uid, gid)
                os.close(report_w)
        if pid < 0:
            pid = os.fork()
            if pid == 0:
                become_launcher(stdin, stdout, stderr, lifeline, (args, cwd, env), ours)
    except OSError as exc:
        for fd in fds:
            os.close(fd)
        return f"!{exc.errno}\n".encode()
    for fd in (stdin, stdout, stderr, lifeline):
        os.close(fd)
    running[pid] = (status, report)
    return f"{pid}\n".encode()


Request = tuple[list[str], str, dict[str, str]]  # launcher options up to "--" and the command, folder, environment


def _as_child(stdin: int, stdout: int, stderr: int, keep: tuple[int, ...], request: Request,
              ours: tuple[int, ...]) -> None:
    """In a forked child: what `subprocess.Popen` would have set up for the launcher (its own session, the
    request's streams, folder and environment, no descriptor but 0, 1, 2 and `keep`)."""
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in ours:
            os.close(fd)
        os.setsid()
        for target, fd in enumerate((stdin, stdout, stderr)):
            os.dup2(fd, target)  # inheritable, as Popen's are
        low = 3
        for fd in sorted(keep):  # the other children's status pipes, these descriptors' originals
            os.closerange(low, fd)
            low = fd + 1
        os.closerange(low, os.sysconf("SC_OPEN_MAX"))
        _, cwd, env = request
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
    except (OSError, ValueError, KeyError) as exc:
        launcher.fail(f"cannot start: {exc}")


def become_launcher(stdin: int, stdout: int, stderr: int, lifeline: int, request: Request,
                    ours: tuple[int, ...]) -> None:
    """In a forked child: become the launcher `python -m plait.sandbox` would have been."""
    _as_child(stdin, stdout, stderr, (lifeline,), request, ours)
    launcher.launch(launcher.Options(["--lifeline", str(lifeline), *request[0]]))


def become_init(stdin: int, stdout: int, stderr: int, lifeline: int, report: int, request: Request,
                ours: tuple[int, ...], user_namespace: bool, uid: int, gid: int) -> None:
    """In a child made straight into its namespaces (`kernel.fork_into_namespaces`): become the PID 1 the
    launcher would have forked, reporting the command's wait status on `report`; this server is its parent
    (its death ends the namespace, as the launcher's did). One fork less per command."""
    _as_child(stdin, stdout, stderr, (lifeline, report), request, ours)
    opts = launcher.Options(["--lifeline", str(lifeline), *request[0]])
    try:
        mount = kernel.enter_cloned(user_namespace, uid, gid)
    except OSError as exc:
        launcher.fail(f"cannot set up a user namespace: {exc.strerror}")
    launcher.run_init(opts, mount, report)


if __name__ == "__main__":
    main()
