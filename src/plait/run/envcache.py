"""Dependency caches: a folder (node_modules, .venv) built once per content of its key files, then
shared into every workspace as a symlink to a read-only copy (docs/environment.md says why a symlink).

    <cache root>/<name>-<hash>/          the build folder: the key files, and the built folder in it
    <cache root>/<name>-<hash>.ready     written last, atomically: the entry is complete
    <cache root>/<name>-<hash>.lock      flock'd by the one attempt that builds it

The build runs *in place* (its folder is where the entry stays), because some folders hold their own
absolute path (a virtualenv's scripts name their interpreter): built elsewhere and moved, they break.
Publishing is the `.ready` file, which only plait writes, outside what the build may write. An entry
without it is half built (its builder died): the next builder wipes it and starts again. Attempts
that need a key being built wait on its lock, so one key is never built twice at once, and nobody
uses an entry until it is ready. Once ready, its files are made read-only; the sandbox grants no
write access beneath the cache root, so a write through a workspace's symlink fails in the kernel.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from plait.plan.model import Cache

# Bumped when what a key covers changes, so older entries are not reused by mistake.
KEY_VERSION = "1"
_POLL = 0.1  # seconds between tries of a busy lock (a cancel is noticed this fast)


class CacheError(Exception):
    """The entry could not be made: a missing key file, a failed build (its output is in its log)."""


@dataclass(frozen=True)
class CacheUse:
    path: str  # the folder in the workspace
    key: str  # the hash of the key files (and the build command, the platform)
    entry: Path  # the shared folder the workspace's path points to
    built: bool  # this attempt built it (else it was there, or another attempt built it meanwhile)
    seconds: float  # building it, or waiting for it and linking it

    def summary(self) -> dict[str, object]:
        return {"path": self.path, "key": self.key[:16], "entry": str(self.entry), "built": self.built,
                "seconds": round(self.seconds, 3)}


def key_hash(spec: Cache, tree: Path) -> str:
    """What the entry depends on: the key files' contents, the build command and the platform."""
    h = hashlib.sha256(f"plait-cache {KEY_VERSION}\0{spec.path}\0{spec.build}\0".encode())
    h.update(f"{sys.platform}\0{platform.machine()}\0".encode())
    for name in spec.key:
        file = tree / name
        if not file.is_file():
            raise CacheError(f"cache {spec.path}: its key file {name} is not in the workspace")
        h.update(f"{name}\0{file.stat().st_size}\0".encode())
        h.update(file.read_bytes())
    return h.hexdigest()


def entry_for(root: Path, spec: Cache, key: str) -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", spec.path.strip("/")).lstrip(".") or "cache"
    return root / f"{name}-{key[:16]}"


def ready(entry: Path) -> bool:
    return entry.with_name(entry.name + ".ready").is_file()


def obtain(spec: Cache, tree: Path, root: Path, build: Callable[[Path], str | None],
           cancel: threading.Event) -> CacheUse:
    """The ready entry for `spec` as the workspace's key files ask, building it if nobody has.
    `build(folder)` runs the build command there and returns why it failed, or None."""
    started = time.monotonic()
    key = key_hash(spec, tree)
    entry = entry_for(root, spec, key)
    built = False
    if not ready(entry):
        root.mkdir(parents=True, exist_ok=True)
        with _locked(entry.with_name(entry.name + ".lock"), cancel):
            if not ready(entry):  # nobody built it while we waited: we do
                _build(spec, tree, entry, build)
                built = True
    return CacheUse(spec.path, key, entry / spec.path, built, time.monotonic() - started)


def _build(spec: Cache, tree: Path, entry: Path, build: Callable[[Path], str | None]) -> None:
    remove_entry(entry)  # what a builder that died left
    entry.mkdir(parents=True)
    for name in spec.key:
        (entry / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tree / name, entry / name)
    problem = build(entry)
    if problem is None and not (entry / spec.path).is_dir():
        problem = f"its build `{spec.build}` succeeded but did not create {spec.path}"
    if problem is not None:
        remove_entry(entry)
        raise CacheError(f"cache {spec.path}: {problem}")
    _read_only(entry)
    marker = entry.with_name(entry.name + ".ready")
    partial = marker.with_name(marker.name + f".{os.getpid()}")
    partial.write_text(json.dumps({"path": spec.path, "key": spec.key, "build": spec.build, "at": time.time()}))
    os.replace(partial, marker)  # published


def _read_only(folder: Path) -> None:
    """No write bits, so only the kernel's confinement is not the one guard (it stops root too)."""
    for dirpath, dirs, files in os.walk(folder):
        for name in files + dirs:
            path = os.path.join(dirpath, name)
            with contextlib.suppress(OSError):
                st = os.lstat(path)
                if not stat.S_ISLNK(st.st_mode):
                    os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o222)
    with contextlib.suppress(OSError):
        os.chmod(folder, stat.S_IMODE(os.stat(folder).st_mode) & ~0o222)


def remove_entry(entry: Path) -> None:
    """Delete an entry (read-only folders included); its `.ready` first, so nobody picks it up."""
    entry.with_name(entry.name + ".ready").unlink(missing_ok=True)
    if not entry.exists():
        return

    def writable_again(_func: object, failed: str, _exc: object) -> None:
        for folder in (os.path.dirname(failed), failed):
            if os.path.isdir(folder) and not os.path.islink(folder):
                os.chmod(folder, stat.S_IRWXU)
        if os.path.isdir(failed) and not os.path.islink(failed):
            shutil.rmtree(failed, onerror=writable_again)
        elif os.path.lexists(failed):
            os.unlink(failed)

    os.chmod(entry, stat.S_IRWXU)
    shutil.rmtree(entry, onerror=writable_again)


@contextlib.contextmanager
def _locked(path: Path, cancel: threading.Event) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if cancel.wait(_POLL):
                    raise CacheError(f"cancelled while waiting for {path.stem} to be built") from None
        yield
    finally:
        os.close(fd)  # releases the lock


def inside(path: Path, tree: Path) -> bool:
    """`path`'s folder, symlinks resolved, is within `tree`: plait writes it unconfined, so a symlink the
    repository holds (`config -> /etc`) must not take the write elsewhere."""
    return path.parent.resolve().is_relative_to(tree.resolve())


def link(use: CacheUse, tree: Path) -> None:
    """Point the workspace's folder at the shared entry."""
    target = tree / use.path
    if not inside(target, tree):
        raise CacheError(f"cache {use.path}: it would be linked outside the workspace (through a symlink in the "
                         "repository)")
    if target.is_symlink():
        target.unlink()
    elif target.exists():
        raise CacheError(f"cache {use.path}: the repository itself holds {use.path}; a cache is for folders "
                         "git does not carry")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(use.entry, target_is_directory=True)
