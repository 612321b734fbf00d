"""Workspaces: one independent git repository per task attempt, outside the user's checkout.

A linked worktree shares refs, config, hooks and the stash with the user's repository, so anything
an agent runs there with git reaches the user. A workspace shares nothing writable:

    <root>/<repo>-<hash>/<run>/<task>/home         the agent's private HOME (kept across attempts)
    <root>/<repo>-<hash>/<run>/<task>/a<N>/tree    the work tree, with a repository of its own in tree/.git
    <root>/<repo>-<hash>/<run>/<task>/a<N>/tmp     the agent's private TMPDIR
    <root>/<repo>-<hash>/<run>/<task>/a<N>/capture.index   plait's own index of the work tree
    <root>/<repo>-<hash>/_spare/<spare>/{tree,capture.index}  finished work trees kept for the next workspaces

`tree/.git` borrows the user's objects through `objects/info/alternates` (nothing is copied) and
has its own refs, config, hooks, index and stash: the agent may commit, branch, rewrite or delete
it. plait never asks that repository anything. It checks the work tree out and captures it with
the *user's* git dir and its own index file (`capture.index`, outside what the agent may write), so
whatever happened to `tree/.git`, the captured commit is the file state of the work tree, built on
the base plait chose. The result reaches the user's repository only as objects plus a
compare-and-swap update of `refs/heads/plait/...` made by the caller.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from plait.git.repo import Git, GitError

log = logging.getLogger("plait.git")

AGENT_IDENTITY = ("plait agent", "plait-agent@localhost")


@dataclass(frozen=True)
class Workspace:
    folder: Path  # this attempt's folder: tree/, tmp/, capture.index
    home: Path  # the task's private home
    base: str  # the commit checked out

    @cached_property
    def tree(self) -> Path:
        return self.folder / "tree"

    @cached_property
    def tmp(self) -> Path:
        return self.folder / "tmp"

    @cached_property
    def index(self) -> Path:
        return self.folder / "capture.index"

    @cached_property
    def writable(self) -> tuple[Path, ...]:
        """What the agent's processes may write: its work tree, home and temporary folder."""
        return (self.tree, self.home, self.tmp)


def default_root() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "plait" / "workspaces"


def repo_folder(root: Path, git: Git) -> Path:
    """This repository's folder under `root`: its name plus a hash of where its git dir is."""
    digest = hashlib.sha1(os.fsencode(os.path.realpath(git.common_dir))).hexdigest()[:10]
    return root / f"{git.root.name}-{digest}"


def create(git: Git, folder: Path, home: Path, base: str, branch: str, spares: Path | None = None) -> Workspace:
    """A new workspace at `folder` with `base` checked out on `branch` of its own repository. With `spares`
    (where `park` keeps finished workspaces), a parked one is taken and reset to `base` when there is one: only
    the files that differ are written, instead of every file of the checkout."""
    ws = Workspace(Path(os.path.abspath(folder)), Path(os.path.abspath(home)), base)
    remove(ws.folder)  # an attempt never inherits anything at its path
    ws.home.mkdir(parents=True, exist_ok=True)
    ws.folder.parent.mkdir(parents=True, exist_ok=True)
    if not (spares is not None and _reuse_spare(git, ws, spares)):
        for d in (ws.folder, ws.tmp, ws.tree):
            d.mkdir(exist_ok=True)
        # The files, checked out with the user's git dir and plait's own index.
        git.run(f"--work-tree={ws.tree}", "read-tree", "--reset", "-u", base, cwd=ws.tree,
                env={"GIT_INDEX_FILE": str(ws.index)})
    _agent_repository(git, ws, branch)
    return ws


SPARE_STALE_SECONDS = 600.0  # a hidden entry of a spares folder this old was left by a crash (one in use: seconds)
KEPT = ("tree", "capture.index", "tmp")  # what a kept workspace holds


def spares_folder(repo: Path) -> Path:
    """Where the finished work trees of a repository's runs wait for its next workspaces (`park`), this run's or a
    later one's: in its folder (`repo_folder`), beside its runs' folders (run ids start with a letter)."""
    return repo / "_spare"


def park(ws: Workspace, spares: Path) -> None:
    """Keep a finished workspace (its processes have all ended) in `spares` for a later `create`: its tree, its
    index and its emptied temporary folder; what cannot be kept is removed.

    The workspace's folder is moved there whole, by one rename, once it holds only those: a taker never sees half
    of one, whatever crashed meanwhile. Names sort by age (`trim` keeps the newest)."""
    if ws.tree.is_symlink() or not ws.tree.is_dir() or ws.index.is_symlink() or not ws.index.is_file():
        remove(ws.folder)
        return
    try:
        for entry in os.scandir(ws.folder):  # the agent could not write here; plait may have left something
            if entry.name not in KEPT:
                remove(Path(entry.path))
        _empty(ws.tmp)
        spares.mkdir(parents=True, exist_ok=True)
        os.rename(ws.folder, spares / f"{time.time_ns():016x}-{os.urandom(4).hex()}")
    except OSError as exc:
        log.debug("could not keep %s for reuse: %s", ws.tree, exc)
        remove(ws.folder)


def _empty(folder: Path) -> None:
    """`folder` an empty folder (what the agent left in it removed); OSError if that cannot be."""
    if folder.is_symlink() or not folder.is_dir():
        remove(folder)
        folder.mkdir()
        return
    for entry in os.scandir(folder):
        remove(Path(entry.path))
    if next(os.scandir(folder), None) is not None:
        raise OSError(f"{folder} could not be emptied")


def _parked(spares: Path) -> list[Path]:
    """The spares in view, newest first (hidden entries are being removed, or were left by a crash)."""
    try:
        return sorted((e for e in spares.iterdir() if not e.name.startswith(".")), reverse=True)
    except OSError:
        return []


def _reuse_spare(git: Git, ws: Workspace, spares: Path) -> bool:
    """Take a parked workspace (renaming it to `ws.folder` is atomic: one taker each, and a `trim` can no longer
    remove it) and reset it to `ws.base`: untracked and ignored files go, tracked files that differ from the base
    are rewritten (the agent's repository is `_agent_repository`'s). False when there is none, or it could not be
    reset (then it is removed). A spare is from this run or an earlier one of the repository: the reset does not
    depend on which."""
    for spare in _parked(spares):
        try:
            os.rename(spare, ws.folder)
        except OSError:  # taken by another thread or run, or trimmed
            continue
        try:
            if (ws.folder.is_symlink() or any(p.is_symlink() for p in (ws.tree, ws.index)) or not ws.tree.is_dir()
                    or not ws.index.is_file()):
                raise OSError("not a kept work tree")
            _empty(ws.tmp)  # kept by an earlier version of plait: none
        except OSError as exc:  # incomplete: never used
            log.info("removed an incomplete kept work tree %s: %s", spare, exc)
            remove(ws.folder)
            continue
        try:
            env = {"GIT_INDEX_FILE": str(ws.index)}
            git.run(f"--work-tree={ws.tree}", "clean", "-ffdqx", cwd=ws.tree, env=env)  # leaves .git alone
            _remove_special_files(ws.tree)
            git.run(f"--work-tree={ws.tree}", "read-tree", "--reset", "-u", ws.base, cwd=ws.tree, env=env)
            return True
        except (OSError, GitError) as exc:
            log.warning("could not reuse a finished workspace (%s): checking out afresh", exc)
            remove(ws.folder)
            return False
    return False


def _remove_special_files(tree: Path) -> None:
    """Remove what git sees neither as a file nor as a folder (named pipes, sockets), which `git clean` leaves:
    a named pipe left where the next task writes or reads would block it. The agent's repository is
    `_agent_repository`'s. Folder entries' types come with the listing: no file is opened or stat'ed."""
    folders = [str(tree)]
    while folders:
        with os.scandir(folders.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    if entry.name != ".git" or os.path.dirname(entry.path) != str(tree):
                        folders.append(entry.path)
                elif not entry.is_file(follow_symlinks=False) and not entry.is_symlink():
                    remove(Path(entry.path))


def trim(spares: Path, keep: int) -> list[Path]:
    """Leave at most the `keep` newest spares in `spares`, and remove what a crashed `park` or `trim` left
    (hidden entries untouched for SPARE_STALE_SECONDS); the folder goes when empty. Each is claimed by a
    rename before it is removed: one another run took meanwhile is not there to claim, and is left alone.
    Returns the spares removed."""
    try:
        entries = list(spares.iterdir())
    except OSError:
        return []
    now = time.time()
    hidden = [e for e in entries if e.name.startswith(".")]
    doomed = _parked(spares)[max(keep, 0):] + [e for e in hidden if _untouched(e, now) > SPARE_STALE_SECONDS]
    removed: list[Path] = []
    for entry in doomed:
        claimed = spares / f".{os.urandom(8).hex()}.trash"
        try:
            os.rename(entry, claimed)
            os.utime(claimed, follow_symlinks=False)  # fresh: another trim does not take it for a crash's
        except OSError:
            continue
        remove(claimed)
        removed.append(entry)
    with contextlib.suppress(OSError):  # not empty: spares left, or a park under way
        spares.rmdir()
    return removed


def _untouched(path: Path, now: float) -> float:
    try:
        return now - path.lstat().st_mtime
    except OSError:
        return 0.0


_INIT_CONFIG: dict[int, str] = {}  # a file system (st_dev) -> the config `git init` writes on it
_INIT_LOCK = threading.Lock()  # the first workspaces of a run start together: one asks


def _init_config(git: Git, beside: Path) -> str:
    """The config `git init` writes for a repository on the file system of `beside` (it probes file modes,
    symlinks and case, and follows the user's init settings): asked of git once per file system and process,
    with a repository made and removed in `beside`."""
    device = os.stat(beside).st_dev
    with _INIT_LOCK:
        if device not in _INIT_CONFIG:
            probe = beside / f".init-{os.urandom(4).hex()}"
            try:
                probe.mkdir()
                # GIT_DIR/GIT_WORK_TREE are overridden: git init honours GIT_DIR.
                git.run("init", "-q", "--template=", "-b", "plait-probe", cwd=probe,
                        env={"GIT_DIR": str(probe / ".git"), "GIT_WORK_TREE": str(probe)})
                _INIT_CONFIG[device] = (probe / ".git" / "config").read_text()
            finally:
                remove(probe)
        return _INIT_CONFIG[device]


PACKED_REFS_HEADER = "# pack-refs with: peeled fully-peeled sorted \n"


def _agent_repository(git: Git, ws: Workspace, branch: str) -> None:
    """The agent's own repository in `tree/.git`, on `branch` at the base, borrowing the user's objects;
    its index a copy of plait's, so `git status` there starts clean.

    What `git init --template= -b BRANCH` makes, written here (a process less per workspace) with the config git
    init writes on this file system, in as few files and folders as git needs: the branch is in `packed-refs`.
    In a kept work tree, the last agent's repository is rewritten in place when it holds exactly those files
    and folders (nothing added, nothing linked); otherwise it is removed and made anew."""
    dot_git = os.path.join(ws.tree, ".git")
    shallow = git.common_dir / "shallow"
    layout = _AGENT_LAYOUT | ({"shallow": False} if shallow.is_file() else {})
    if not _has_layout(dot_git, layout):
        remove(Path(dot_git))
        os.makedirs(os.path.join(dot_git, "objects", "info"))
        os.mkdir(os.path.join(dot_git, "refs"))
    identity = f"[user]\n\tname = {AGENT_IDENTITY[0]}\n\temail = {AGENT_IDENTITY[1]}\n"
    for name, text in (("HEAD", f"ref: refs/heads/{branch}\n"), ("config", _init_config(git, ws.folder) + identity),
                       ("objects/info/alternates", f"{git.objects_dir}\n"),
                       ("packed-refs", f"{PACKED_REFS_HEADER}{ws.base} refs/heads/{branch}\n")):
        with open(os.path.join(dot_git, name), "w") as f:
            f.write(text)
    if "shallow" in layout:
        shutil.copyfile(shallow, os.path.join(dot_git, "shallow"))
    shutil.copyfile(ws.index, os.path.join(dot_git, "index"))


# The agent's repository as `_agent_repository` makes it: name -> a folder (its entries) or a file (False).
_AGENT_LAYOUT: dict[str, Any] = {"HEAD": False, "config": False, "packed-refs": False, "index": False,
                                 "objects": {"info": {"alternates": False}}, "refs": {}}


def _has_layout(folder: str, layout: dict[str, Any]) -> bool:
    """Whether `folder` holds exactly `layout`: folders and files (regular, one link each), nothing else."""
    try:
        if not stat.S_ISDIR(os.lstat(folder).st_mode):
            return False
        with os.scandir(folder) as it:
            entries = {e.name: e for e in it}
        if entries.keys() != layout.keys():
            return False
        for name, inside in layout.items():
            st = entries[name].stat(follow_symlinks=False)
            if inside is False:
                if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
                    return False
            elif not (stat.S_ISDIR(st.st_mode) and _has_layout(entries[name].path, inside)):
                return False
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class Capture:
    commit: str  # the base itself when nothing changed
    changed: list[tuple[str, str]]  # (status letter A/M/D/T, path), no renames


class WorkspaceGone(Exception):
    """The work tree is missing or was replaced (e.g. by a symlink): there is nothing to capture."""


def capture(git: Git, ws: Workspace, message: str) -> Capture:
    """Commit the work tree's file state on top of the base, in the user's object store; no ref moves.

    Symlinks are recorded as symlinks (git never follows them); `.git` anywhere at the top is
    ignored by git itself, whatever it now is.
    """
    if ws.tree.is_symlink() or not ws.tree.is_dir():
        raise WorkspaceGone(f"the work tree {ws.tree} was removed or replaced")
    env = {"GIT_INDEX_FILE": str(ws.index)}
    git.run(f"--work-tree={ws.tree}", "add", "-A", cwd=ws.tree, env=env)
    out = git.run("diff-index", "--cached", "--name-status", "--no-renames", "-z", ws.base, env=env)
    fields = [f for f in out.split("\0") if f]
    changed = list(zip(fields[0::2], fields[1::2], strict=True))
    if not changed:
        return Capture(ws.base, [])
    tree = git.run("write-tree", env=env).strip()
    commit = git.commit(tree, [ws.base], message)
    return Capture(commit, changed)


def tree_state(git: Git, ws: Workspace) -> str:
    """The work tree's file state, as a git tree (read with plait's own index, like a capture)."""
    env = {"GIT_INDEX_FILE": str(ws.index)}
    git.run(f"--work-tree={ws.tree}", "add", "-A", cwd=ws.tree, env=env)
    return git.run("write-tree", env=env).strip()


def put_back(git: Git, ws: Workspace, tree: str) -> list[str]:
    """Put the work tree back to `tree`: the paths that had changed since (none: nothing to do)."""
    now = tree_state(git, ws)
    if now == tree:
        return []
    changed = [p for p in git.run("diff-tree", "-r", "-z", "--name-only", "--no-renames", tree, now).split("\0") if p]
    git.run(f"--work-tree={ws.tree}", "read-tree", "--reset", "-u", tree, cwd=ws.tree,
            env={"GIT_INDEX_FILE": str(ws.index)})
    return changed


def remove(path: Path) -> None:
    """Delete a workspace folder without following any symlink in it; already gone is fine.

    The agent may have left read-only or unsearchable directories: their permission is restored
    and the removal retried. What still cannot be removed is logged, not raised.
    """
    try:
        kind = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        log.warning("could not remove %s: %s", path, exc)
        return
    if not stat.S_ISDIR(kind):  # a file, a symlink, a FIFO...: unlinked, never opened (a FIFO would block)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError:
            try:
                os.chmod(os.path.dirname(path), stat.S_IRWXU)
                os.unlink(path)
            except OSError as exc:
                log.warning("could not remove %s: %s", path, exc)
        return

    def retry(_func: Callable[..., Any], failed: str, _exc: object) -> None:
        try:
            for folder in (os.path.dirname(failed), failed):
                if os.path.isdir(folder) and not os.path.islink(folder):
                    os.chmod(folder, stat.S_IRWXU)
            if os.path.isdir(failed) and not os.path.islink(failed):
                shutil.rmtree(failed)
            elif os.path.lexists(failed):
                os.unlink(failed)
        except OSError as exc:
            log.warning("could not remove %s: %s", failed, exc)

    shutil.rmtree(path, onerror=retry)


def remove_all(folder: Path) -> list[Path]:
    """Remove every entry of `folder` (a run's or a task's workspaces), then the folder if empty."""
    removed: list[Path] = []
    if not folder.is_dir() or folder.is_symlink():
        return removed
    for entry in sorted(folder.iterdir()):
        remove(entry)
        removed.append(entry)
    with contextlib.suppress(OSError):  # not empty: something could not be removed (logged)
        folder.rmdir()
    return removed
