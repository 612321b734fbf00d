"""The Linux calls the sandbox needs that the os module of Python 3.11 lacks (ctypes on libc).

Imported by the launcher on every start: standard library only, and nothing slow to import.
"""

from __future__ import annotations

import ctypes
import errno
import os

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_pylibc = ctypes.PyDLL(None, use_errno=True)  # the same libc, called without releasing the GIL
_pylibc.syscall.restype = ctypes.c_long

PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000

MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18

_MOUNT_SETATTR = 442
_AT_FDCWD = -100
_AT_RECURSIVE = 0x8000
_MOUNT_ATTR_RDONLY = 1


_CAP_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32))


class _MountAttr(ctypes.Structure):
    _fields_ = (("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64), ("propagation", ctypes.c_uint64),
                ("userns_fd", ctypes.c_uint64))


def _check(result: int, what: str, path: str | None = None) -> int:
    if result == -1:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}", path)
    return result


def syscall(number: int, *args: object) -> int:
    """A raw syscall; ints are passed as C longs, None as NULL, ctypes objects as they are."""
    converted = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    return _check(_libc.syscall(ctypes.c_long(number), *converted), f"syscall {number}")


def prctl(option: int, value: int) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0), f"prctl {option}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int) -> None:
    def b(s: str | None) -> bytes | None:
        return os.fsencode(s) if s is not None else None

    _check(_libc.mount(b(source), b(target), b(fstype), ctypes.c_ulong(flags), None), "mount", target)


def _mount_setattr(path: str, set_: int, clear: int) -> None:
    attr = _MountAttr(set_, clear, 0, 0)
    try:
        syscall(_MOUNT_SETATTR, _AT_FDCWD, ctypes.c_char_p(os.fsencode(path)), _AT_RECURSIVE, ctypes.byref(attr),
                ctypes.sizeof(attr))
    except OSError as exc:
        raise OSError(exc.errno, f"mount_setattr: {os.strerror(exc.errno or 0)}", path) from None


def enter_namespaces() -> tuple[bool, bool]:
    """Unshare a PID and a mount namespace for the children of this process, through a user
    namespace with an identity uid/gid map when we are not privileged enough without one.

    Returns (pid, mount): whether our next child is PID 1 of a new PID namespace, and whether we
    are in a private mount namespace where we may mount. (False, False) when the kernel refuses
    (nothing changed then). Raises
    OSError only when a user namespace was made but could not be set up: this process is then
    half-way and must not run anything.
    """
    uid, gid = os.geteuid(), os.getegid()
    try:
        unshare(CLONE_NEWPID | CLONE_NEWNS)  # root (CAP_SYS_ADMIN) needs no user namespace
    except OSError:
        try:
            unshare(CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS)
        except OSError:
            return False, False
        _map_identity(uid, gid)
    return True, _private_mounts()


_SYS_CLONE = {"x86_64": 56, "aarch64": 220}.get(os.uname().machine)  # clone(2) (no libc wrapper forks alone)
_SIGCHLD = 17
# The flags that made a child in new namespaces here (learned on first use), or () when none can.
_clone_flags: tuple[int, ...] | None = None


def fork_into_namespaces() -> tuple[int, bool]:
    """`os.fork`, with the child made straight into a new PID and mount namespace (through a user namespace
    when we are not privileged enough without one): it is PID 1 there, with no launcher process between.

    Returns (pid, user namespace made): pid 0 in the child, which must first call `enter_cloned` with the
    second value. OSError when the kernel makes no such child here (nothing was made then). The caller must be
    single-threaded, as for any fork; the interpreter is told about the fork exactly as `os.fork` tells it.
    """
    global _clone_flags
    if _clone_flags is None:
        _clone_flags = ((CLONE_NEWPID | CLONE_NEWNS, CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS)
                        if _SYS_CLONE is not None else ())
    for flags in _clone_flags:
        assert _SYS_CLONE is not None
        api = ctypes.pythonapi  # holds the GIL through the call, as os.fork does
        api.PyOS_BeforeFork()
        pid = _pylibc.syscall(ctypes.c_long(_SYS_CLONE), ctypes.c_long(flags | _SIGCHLD), ctypes.c_long(0),
                              ctypes.c_long(0), ctypes.c_long(0), ctypes.c_long(0))
        if pid == 0:
            api.PyOS_AfterFork_Child()
            return 0, bool(flags & CLONE_NEWUSER)
        code = ctypes.get_errno()
        api.PyOS_AfterFork_Parent()
        if pid > 0:
            _clone_flags = (flags,)
            return pid, bool(flags & CLONE_NEWUSER)
        if code not in (errno.EPERM, errno.EINVAL, errno.ENOSPC, errno.EUSERS):
            raise OSError(code, os.strerror(code))
    _clone_flags = ()  # (each refusal is learned once: later commands fork as launchers at once)
    raise OSError(errno.ENOSYS, "no namespaces for a child here")


def enter_cloned(user_namespace: bool, uid: int, gid: int) -> bool:
    """In a child of `fork_into_namespaces`: map its user namespace (the command keeps `uid` and `gid`, the
    parent's) and make the mount namespace private. Whether it may mount (False: a read-only layer cannot be
    made). OSError when the user namespace cannot be set up: nothing may run then."""
    if user_namespace:
        _map_identity(uid, gid)
    return _private_mounts()


def _private_mounts() -> bool:
    """Make this mount namespace's mounts private; False when the kernel refuses (then no mount may be made)."""
    try:
        # Without this, a bind mount below could propagate back into the caller's namespace.
        mount(None, "/", None, MS_REC | MS_PRIVATE)
    except OSError:
        return False
    return True


def _map_identity(uid: int, gid: int) -> None:
    # The agent keeps its own uid and gid (and so its files' ownership); setgroups must be
    # denied before an unprivileged process may write its gid_map.
    for name, line in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(line)


def mount_proc() -> bool:
    """A /proc of our own PID namespace (call as its PID 1), so `ps`, `pkill`, `/proc/$$` agree with
    the PIDs the tree sees. False when the kernel refuses (e.g. a container masks parts of /proc)."""
    try:
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError:
        return False
    return True


def read_only_except(writable: list[str]) -> None:
    """Make every mount read-only except bind mounts of `writable` onto themselves.

    Landlock guards file contents and directory entries, not metadata (chmod, chown, utime,
    xattrs); a read-only mount refuses those too. Device nodes stay usable on a read-only mount.
    """
    for path in writable:
        mount(path, path, None, MS_BIND | MS_REC)
    _mount_setattr("/", _MOUNT_ATTR_RDONLY, 0)
    for path in writable:
        _mount_setattr(path, 0, _MOUNT_ATTR_RDONLY)
    # Our working directory still points into the mount that is now beneath the bind mount.
    os.chdir(os.getcwd())


# What a root command keeps (the set container runtimes give by default, less MKNOD): enough to own,
# chmod and serve its own files; not enough to load kernel modules, reach raw devices, reconfigure the
# network, reboot, trace other processes or undo the read-only mounts (SYS_ADMIN: Landlock refuses
# mount(2) but has no hook on mount_setattr(2)).
KEEP_CAPABILITIES = frozenset({
    0,  # CHOWN
    1,  # DAC_OVERRIDE
    3,  # FOWNER
    4,  # FSETID
    5,  # KILL
    6,  # SETGID
    7,  # SETUID
    8,  # SETPCAP
    10,  # NET_BIND_SERVICE
    13,  # NET_RAW
    18,  # SYS_CHROOT
    29,  # AUDIT_WRITE
    31,  # SETFCAP
})


def drop_capabilities() -> None:
    """Take every other capability out of what our exec'd command can have: out of the bounding set
    (root's exec gains only what it allows) and the inheritable set (ambient capabilities follow it).
    A process without capabilities (an ordinary user outside a user namespace) has nothing to drop."""
    header, data = _CapHeader(_CAP_VERSION_3, 0), (_CapData * 2)()
    _check(_libc.capget(ctypes.byref(header), data), "capget")
    if not any(d.effective for d in data):
        return
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last = int(f.read())
    for cap in range(last + 1):
        if cap not in KEEP_CAPABILITIES:
            prctl(PR_CAPBSET_DROP, cap)
            data[cap // 32].inheritable &= ~(1 << (cap % 32))
    _check(_libc.capset(ctypes.byref(header), data), "capset")
