"""The launcher: `python -m plait.sandbox --lifeline FD [--writable PATH]... [--no-landlock]
[--no-pid-namespace] -- argv...` runs argv so that every process it starts ends with it, writing
only beneath the writable paths.

With a PID namespace (root, or any user where unprivileged user namespaces are allowed):
  launcher (outside)  -- unshares PID + mount namespaces (through a user namespace with an identity
     |                   uid/gid map when not root), forks, waits; exits like the command did
     `- init (PID 1)   -- mounts its own /proc; confines writes (read-only mounts + Landlock);
          |              forks the command, reaps every orphan, exits when the command does
          `- command   -- signal dispositions reset, exec'd
  When init exits the kernel kills everything left in the namespace: daemons, `setsid` children,
  servers, fork bombs. If plait dies however it dies, the lifeline pipe hits EOF and the launcher
  kills init; if the launcher dies, init's parent-death signal (SIGKILL) does the same.
  Writes are confined in init, not in the launcher: init has to mount its /proc first, and a
  Landlocked process may not mount. The launcher runs only this code, outside the namespace where
  the command can neither see nor signal it. A root command also loses every capability but the
  few container runtimes keep (kernel.KEEP_CAPABILITIES): no module loading, raw devices, network
  reconfiguration, or CAP_SYS_ADMIN, which could otherwise make the read-only mounts writable again.

Without one (--no-pid-namespace, or the kernel refuses): the launcher is a child subreaper, so
orphans reparent to it, and once the command has ended (or the lifeline breaks) it SIGKILLs every
descendant it finds in /proc until none is left. Weaker: if the launcher itself is SIGKILLed (also
the last step of `proc.stop_group`), descendants that left the process group survive; and there
is no mount layer, so metadata (chmod, utime, xattrs) outside the writable paths is not guarded.

Signals: plait's INT and TERM go to the whole process group, so the command gets them directly;
the launcher ignores them (and init, as PID 1, never receives them) so they cannot end the tree
before the command has decided what to do. If confinement was asked for and cannot be set up,
one line goes to stderr and the exit code is 125: the command never runs unconfined.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing takes longer to import than all the rest; mypy treats this as True
if TYPE_CHECKING:
    import signal
    from collections.abc import Callable
    from typing import Any, NoReturn
else:
    # The builtin behind `signal`, with the same functions and numbers: `signal` wraps them in
    # enums, and importing `enum` took an eighth of the launcher's start.
    import _signal as signal

# First thing: an early INT/TERM is for the command, not for us.
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)

import os  # noqa: E402 - after the signal setup on purpose
import select  # noqa: E402
import stat  # noqa: E402
import sys  # noqa: E402

from plait.sandbox import kernel, landlock  # noqa: E402

SETUP_FAILED = 125
_RESET_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE, signal.SIGXFSZ)  # Python changes these


class Options:
    def __init__(self, args: list[str]) -> None:
        self.writable: list[str] = []
        self.landlock = True
        self.pid_namespace = True
        self.lifeline = -1
        if "--" not in args or args.index("--") == len(args) - 1:
            fail("usage: python -m plait.sandbox --lifeline FD [--writable PATH]... [--no-landlock] -- argv...")
        split = args.index("--")
        self.argv = args[split + 1:]
        options = iter(args[:split])
        for option in options:
            if option == "--writable":
                self.writable.append(next(options, ""))
            elif option == "--lifeline":
                self.lifeline = int(next(options, "-1"))
            elif option == "--no-landlock":
                self.landlock = False
            elif option == "--no-pid-namespace":
                self.pid_namespace = False
            else:
                fail(f"unknown option {option}")


def fail(message: str) -> NoReturn:
    print(f"plait.sandbox: {message}", file=sys.stderr, flush=True)
    os._exit(SETUP_FAILED)


def main() -> NoReturn:
    launch(Options(sys.argv[1:]))


def launch(opts: Options) -> NoReturn:
    """Be the launcher for `opts`: also what a child of the launch server (`server`) becomes."""
    if opts.lifeline >= 0:
        os.set_inheritable(opts.lifeline, False)  # the command must not hold it
    pid_namespace, mount_namespace = False, False
    if opts.pid_namespace:
        try:
            pid_namespace, mount_namespace = kernel.enter_namespaces()
        except OSError as exc:
            fail(f"cannot set up a user namespace: {exc.strerror}")
    if pid_namespace:
        # Dying with plait ends the namespace (through init's own death signal). The lifeline
        # covers the moment before this call.
        kernel.prctl(kernel.PR_SET_PDEATHSIG, signal.SIGKILL)
        supervise_namespace(opts, mount_namespace)
    supervise_descendants(opts)  # no death signal here: we must outlive plait to end the descendants


def supervise_namespace(opts: Options, mount: bool) -> NoReturn:
    # init reports the command's raw wait status through this pipe: as PID 1 it cannot die of
    # a signal it sends itself. Our holding the read end also tells init we are alive.
    status_r, status_w = os.pipe()
    init = os.fork()
    if init == 0:
        os.close(status_r)
        run_init(opts, mount, status_w)
    os.close(status_w)
    status = wait_for(init, opts.lifeline, lambda: os.kill(init, signal.SIGKILL))
    report = os.read(status_r, 32)
    exit_like(int(report) if report else status)


def run_init(opts: Options, mount: bool, status_w: int) -> NoReturn:
    kernel.prctl(kernel.PR_SET_PDEATHSIG, signal.SIGKILL)
    poll = select.poll()
    poll.register(status_w, 0)
    if poll.poll(0):  # POLLERR: the launcher died before the line above took effect
        os._exit(1)
    if mount:
        kernel.mount_proc()
    confine(opts, mount)
    command = spawn(opts.argv)
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == command:
            os.write(status_w, str(status).encode())
            os._exit(0)  # the kernel now kills the rest of the namespace


def supervise_descendants(opts: Options) -> NoReturn:
    kernel.prctl(kernel.PR_SET_CHILD_SUBREAPER, 1)
    confine(opts, mount=False)
    command = spawn(opts.argv)
    status = wait_for(command, opts.lifeline, end_descendants)
    end_descendants()
    exit_like(status)


def confine(opts: Options, mount: bool) -> None:
    if not opts.landlock:
        return
    try:
        if mount:
            kernel.read_only_except([*opts.writable, *(p for p in ("/dev/shm",) if os.path.isdir(p))])
        kernel.drop_capabilities()
        landlock.restrict(opts.writable, output_files())
    except OSError as exc:
        fail(f"cannot confine writes: {exc.strerror}" + (f": {exc.filename}" if exc.filename else ""))


def output_files() -> list[str]:
    # A command may reopen its stdout/stderr by name (`> /dev/stderr`); when plait sends them to a
    # log file, allow that file: the command can write it through the descriptor anyway.
    return [f"/proc/self/fd/{fd}" for fd in (1, 2) if _is_regular(fd)]


def _is_regular(fd: int) -> bool:
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        return False


def spawn(argv: list[str]) -> int:
    popen = getattr(sys.modules.get("subprocess"), "Popen", None)
    if popen is not None:
        return _spawn_vfork(popen, argv)
    pid = os.fork()
    if pid:
        return pid
    try:
        for sig in _RESET_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        execvp(argv)
    except OSError as exc:
        print(f"plait.sandbox: cannot run {argv[0]}: {exc.strerror}", file=sys.stderr, flush=True)
    os._exit(127)


def _spawn_vfork(popen: Callable[..., Any], argv: list[str]) -> int:
    # Where subprocess is loaded already (the launch server loads it), the command is started as Popen
    # starts one: vfork and exec, no copy of this process's memory. Dispositions survive exec only when
    # ignored: INT and TERM get a handler here (we still never die of them), so the command starts with
    # their defaults, as Popen's restore_signals gives it PIPE's and XFSZ's.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _ignore)
    try:
        _spawned.append(popen(argv, restore_signals=True, close_fds=False))  # kept: a dropped Popen reaps
        return int(_spawned[-1].pid)
    except OSError as exc:
        print(f"plait.sandbox: cannot run {argv[0]}: {exc.strerror}", file=sys.stderr, flush=True)
        os._exit(127)


_spawned: list[Any] = []


def _ignore(*_: object) -> None:
    pass


def execvp(argv: list[str]) -> NoReturn:
    """`os.execvp`, whose PATH search imports `warnings` (a tenth of the launcher's start). Not
    `os.posix_spawnp`: glibc's leaves its two internal signals ignored in the command."""
    if os.sep in argv[0]:
        os.execv(argv[0], argv)
    first: OSError | None = None  # as execvp: the first error that is not "no such file here", else the last
    last: OSError = FileNotFoundError(2, os.strerror(2), argv[0])
    for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
        try:
            os.execv(os.path.join(folder, argv[0]), argv)
        except (FileNotFoundError, NotADirectoryError) as exc:
            last = exc
        except OSError as exc:
            first, last = first or exc, exc
    raise first or last


def wait_for(child: int, lifeline: int, teardown: Callable[[], object]) -> int:
    """Reap children until `child` ends and return its wait status. If the lifeline breaks first
    (plait is gone, however it died), tear down and die. No threads for this: a process that has
    unshared a PID namespace cannot create any."""
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # only so that SIGCHLD writes to wake_w
    poll = select.poll()
    poll.register(wake_r, select.POLLIN)
    if lifeline >= 0:
        poll.register(lifeline, select.POLLIN)
    while True:
        # Reap before waiting: a child may have ended before the handler was in place.
        while (ended := os.waitpid(-1, os.WNOHANG))[0]:
            if ended[0] == child:
                return ended[1]
        for fd, _ in poll.poll():
            if fd == lifeline and not os.read(lifeline, 1024):
                teardown()
                os.kill(os.getpid(), signal.SIGKILL)
            elif fd == wake_r:
                os.read(wake_r, 1024)


def end_descendants() -> None:
    """SIGKILL every descendant (they reparent to us, the subreaper) until none is left."""
    while True:
        for pid in descendants(os.getpid()):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
        try:
            os.waitpid(-1, 0)
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            return


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])  # the name may hold spaces and ')'
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(name))
    found, todo = [], [root]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def exit_like(status: int) -> NoReturn:
    """Exit as the command did: same code, or die of the same signal."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(sig, signal.SIG_DFL)
        import resource  # rare path; a crash of the command is not ours to dump core for

        resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)
    os._exit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    main()
