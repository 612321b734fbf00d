"""Kernel-enforced confinement of an agent's whole process tree.

`proc.run(..., confine=Confinement(...))` starts the command through the launcher, `python -m
plait.sandbox` (see `__main__` for what it does and what holds where), forked by the launch server
(`server`, driven by `client`) or, where that server cannot run, started as a process of its own.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path


@dataclass(frozen=True)
class Confinement:
    writable: tuple[Path, ...]  # directories (or files) the process tree may write beneath; the rest is read-only
    landlock: bool = True  # False = no write confinement (profile sandbox="off"); processes are still contained


@dataclass(frozen=True)
class Support:
    landlock_abi: int | None  # None when unavailable
    landlock_reason: str  # "" when available; else one short line why not
    pid_namespace: bool  # can the launcher put the tree in its own PID namespace here?


@cache
def support() -> Support:
    """What this system offers, probed once per process."""
    if sys.platform != "linux":
        return Support(None, "Landlock is Linux-only", False)
    from plait.sandbox import landlock

    try:
        abi: int | None = landlock.abi()
        reason = ""
    except OSError as exc:
        abi, reason = None, landlock.unavailable_reason(exc)
    return Support(abi, reason, _can_unshare_pid())


def _can_unshare_pid() -> bool:
    # Unsharing changes the process for good, so try it, exactly as the launcher would, in a
    # throwaway child: it makes a few syscalls (no imports, no locks) and _exits, which is safe
    # even when the caller has other threads.
    from plait.sandbox import kernel

    pid = os.fork()
    if pid == 0:
        try:
            code = 0 if kernel.enter_namespaces()[0] else 1
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


# What `python -m plait.sandbox` does, but with plait imported from where the caller imported it,
# isolated (-I): the agent's environment (PYTHONPATH) and working directory (a workspace the agent
# wrote, maybe holding a `plait` package) must not choose the launcher's code; and where plait was
# found through PYTHONPATH or the user site, -m would not find it at all. Without `site` (-S): the
# launcher needs the standard library and this root only, and `site` (with the .pth files of the
# venv's packages) was a fifth of its start. The launcher needs only kernel, landlock and __main__:
# an empty stand-in for this package keeps this module's imports (dataclasses and pathlib, slower
# than Python's own start) out of every agent's start. The launch server (`server`) starts the same way.
_BOOTSTRAP = """import sys
root = sys.argv.pop(1)
sys.path.insert(0, root)
package = type(sys)("plait.sandbox")
package.__path__ = [root + "/plait/sandbox"]
sys.modules["plait.sandbox"] = package
from plait.sandbox.{module} import main
main()"""


def python_argv(module: str) -> list[str]:
    """The command line that runs `main()` of `plait.sandbox.<module>` (`__main__`: the launcher,
    `server`: the launch server) as described above; the caller appends its arguments."""
    import_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return [sys.executable, "-I", "-S", "-c", _BOOTSTRAP.format(module=module), import_root]


def launcher_args(confinement: Confinement) -> list[str]:
    """The launcher's options for `confinement`, up to and including the `--` before the command
    (all but `--lifeline`)."""
    args = []
    for path in confinement.writable:
        args += ["--writable", os.path.abspath(path)]
    if not confinement.landlock:
        args.append("--no-landlock")
    if not support().pid_namespace:
        args.append("--no-pid-namespace")
    return [*args, "--"]


def launcher_argv(confinement: Confinement, lifeline_fd: int) -> list[str]:
    """The launcher's command line; the caller appends the real argv.

    `lifeline_fd` is the read end of a pipe whose write end the caller holds until the command
    has ended: EOF on it means the caller is gone, and the launcher then ends the whole tree.
    """
    return [*python_argv("__main__"), "--lifeline", str(lifeline_fd), *launcher_args(confinement)]


def check_executable(program: str, env: Mapping[str, str] | None, cwd: str | Path | None) -> None:
    """Raise what `subprocess.Popen` would if `program` cannot be executed, so a command started
    through the launcher fails to start the same way as one started directly."""
    if "/" in program:
        candidates = [os.path.join(cwd or "", program)]
    else:
        path = (env if env is not None else os.environ).get("PATH", os.defpath)
        candidates = [os.path.join(cwd or "", d, program) for d in path.split(os.pathsep)]
    denied = False
    for candidate in candidates:
        if os.path.isfile(candidate):
            if os.access(candidate, os.X_OK):
                return
            denied = True
    code = errno.EACCES if denied else errno.ENOENT
    raise OSError(code, os.strerror(code), program)
