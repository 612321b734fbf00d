"""Landlock write confinement through its three syscalls (ctypes; no third-party binding).

A ruleset *handles* every write-type filesystem right the running kernel knows; handled rights are
then denied everywhere except beneath the paths given rules. Reading and executing are not handled,
so they stay allowed everywhere; the network is left alone. See the kernel's
Documentation/userspace-api/landlock.rst for the model.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat

from plait.sandbox import kernel

# Syscall numbers 424 and up are the same on every architecture.
_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1

WRITE_FILE = 1 << 1
REMOVE_DIR = 1 << 4
REMOVE_FILE = 1 << 5
MAKE_CHAR = 1 << 6
MAKE_DIR = 1 << 7
MAKE_REG = 1 << 8
MAKE_SOCK = 1 << 9
MAKE_FIFO = 1 << 10
MAKE_BLOCK = 1 << 11
MAKE_SYM = 1 << 12
REFER = 1 << 13  # ABI 2: link or rename into another directory
TRUNCATE = 1 << 14  # ABI 3
SCOPE_SIGNAL = 1 << 1  # ABI 6: no signals to processes outside the domain

_WRITES_ABI1 = (WRITE_FILE | REMOVE_DIR | REMOVE_FILE | MAKE_CHAR | MAKE_DIR | MAKE_REG | MAKE_SOCK | MAKE_FIFO
                | MAKE_BLOCK | MAKE_SYM)
# Rights that apply to a file itself; the others are about a directory's entries, and a rule giving
# one of them to a file is EINVAL.
_FILE_RIGHTS = WRITE_FILE | TRUNCATE
# Handled but granted nowhere: a root agent could otherwise create a device node for a disk in its
# work tree and write the disk through it.
_NEVER = MAKE_CHAR | MAKE_BLOCK

# What programs open for writing outside any project: allowed whenever they exist.
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty", "/dev/ptmx",
           "/dev/pts", "/dev/shm")


class _RulesetAttr(ctypes.Structure):
    # The ABI 6 layout; older kernels accept it as long as the fields they do not know are zero.
    _fields_ = (("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64))


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


def abi() -> int:
    """The Landlock ABI version of the running kernel; OSError when it has none."""
    return kernel.syscall(_CREATE_RULESET, None, 0, _CREATE_RULESET_VERSION)


def unavailable_reason(exc: OSError) -> str:
    """One line saying why `abi()` failed."""
    if exc.errno == errno.ENOSYS:
        return "this kernel has no Landlock (needs Linux 5.13 or later), or seccomp hides it"
    if exc.errno == errno.EOPNOTSUPP:
        return "Landlock is built in but disabled (add landlock to the kernel's lsm= boot parameter)"
    if exc.errno == errno.EPERM:
        return "the Landlock syscalls are blocked (seccomp filter of a container runtime?)"
    return f"Landlock probe failed: {exc.strerror or exc}"


def write_rights(version: int) -> int:
    return _WRITES_ABI1 | (REFER if version >= 2 else 0) | (TRUNCATE if version >= 3 else 0)


def restrict(writable: list[str], extra_files: list[str]) -> None:
    """Confine this process and its future children: writes only beneath `writable` (which must
    exist), the DEVICES, and `extra_files` (existing files, e.g. the log our stdout goes to).
    Irreversible. Raises OSError (with the path in `filename`) when anything fails."""
    version = abi()
    handled = write_rights(version)
    attr = _RulesetAttr(handled, 0, SCOPE_SIGNAL if version >= 6 else 0)
    ruleset = kernel.syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.sizeof(attr), 0)
    try:
        for path in writable:
            _allow(ruleset, path, handled)
        for path in (*DEVICES, *extra_files):
            try:
                _allow(ruleset, path, handled)
            except FileNotFoundError:
                continue  # a device this system lacks
        kernel.prctl(kernel.PR_SET_NO_NEW_PRIVS, 1)  # required to restrict self without CAP_SYS_ADMIN
        kernel.syscall(_RESTRICT_SELF, ruleset, 0)
    finally:
        os.close(ruleset)


def _allow(ruleset: int, path: str, handled: int) -> None:
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        rights = handled & ~_NEVER if stat.S_ISDIR(os.fstat(fd).st_mode) else handled & _FILE_RIGHTS
        rule = _PathBeneathAttr(rights, fd)
        try:
            kernel.syscall(_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0)
        except OSError as exc:
            exc.filename = path
            raise
    finally:
        os.close(fd)
