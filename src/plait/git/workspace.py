"""Worktrees: one per task, each on its own branch, created and removed under the repository lock.

Creation is idempotent for resume (the branch at the right commit, or the worktree already
there, is reused) and leaves nothing half-made when it fails: git creates the branch before the
worktree, so a failed add would otherwise block every retry with "a branch named ... already exists".
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from plait.git.repo import Git, GitError


@dataclass(frozen=True)
class WorktreeInfo:
    path: Path
    head: str | None  # None for a worktree on an unborn branch
    branch: str | None  # short name; None when detached
    prunable: bool = False  # registered, but its directory is gone


def list_worktrees(git: Git) -> list[WorktreeInfo]:
    """Every worktree git knows of, the main one first (`git worktree list --porcelain -z`)."""
    out = git.run("worktree", "list", "--porcelain", "-z")
    found: list[WorktreeInfo] = []
    fields: dict[str, str] = {}
    for item in out.split("\0"):
        if item:
            key, _, value = item.partition(" ")
            fields[key] = value
            continue
        if "worktree" in fields:  # an empty item ends a record
            branch = fields.get("branch")
            found.append(WorktreeInfo(Path(fields["worktree"]), fields.get("HEAD"),
                                      branch.removeprefix("refs/heads/") if branch else None,
                                      "prunable" in fields))
        fields = {}
    return found


def find_worktree(git: Git, path: Path) -> WorktreeInfo | None:
    wanted = _real(path)
    return next((w for w in list_worktrees(git) if _real(w.path) == wanted), None)


def add_worktree(git: Git, path: Path, branch: str, base_sha: str) -> Path:
    """A worktree at `path` with `branch` checked out, the branch created at `base_sha` if new.

    Reuses what an earlier attempt left: the same worktree on the same branch, or the branch
    alone when it still points at `base_sha`. A branch elsewhere is an error (its work would be
    silently dropped or built on); the caller decides whether to delete it.
    """
    path = Path(os.path.abspath(path))
    ref = f"refs/heads/{branch}"
    with git.lock:
        current = find_worktree(git, path)
        if current is not None and not current.prunable:
            if current.branch == branch:
                return path
            on = current.branch or "a detached HEAD"
            raise GitError(f"{path} is already a worktree, on {on} rather than {branch}",
                           "remove it first (`plait clean` or `git worktree remove --force PATH`)")
        if current is not None:
            git.run("worktree", "prune")
        existing = git.rev_parse(ref)
        if existing is not None and existing != base_sha:
            raise GitError(f"branch {branch} already exists at {existing[:12]}, not at {base_sha[:12]}",
                           f"delete it (`git branch -D {branch}`) or start a new run")
        path_existed = path.exists()
        where = (str(path), branch) if existing else ("--no-track", "-b", branch, str(path), base_sha)
        done = git.try_run("worktree", "add", "--quiet", *where)
        if done.ok:
            return path
        _undo_add(git, path, path_existed, ref, base_sha if existing is None else None)
        fix = f"remove {path} first" if path_existed else "see git's message; `git worktree prune` may help"
        raise GitError.failed(done, fix)


def _undo_add(git: Git, path: Path, path_existed: bool, made_ref: str, base_sha: str | None) -> None:
    """Take back what a failed `worktree add` left: its admin entry, directory and new branch."""
    if not path_existed and path.exists():
        shutil.rmtree(path, ignore_errors=True)
    git.try_run("worktree", "prune")
    # Only a branch we were creating, and only where we would have created it.
    if base_sha is not None and git.rev_parse(made_ref) == base_sha:
        git.try_run("update-ref", "-d", made_ref, base_sha)


def remove_worktree(git: Git, path: Path, force: bool = True) -> None:
    """Remove a worktree and its directory (the branch stays). Already gone is fine."""
    path = Path(os.path.abspath(path))
    with git.lock:
        current = find_worktree(git, path)
        if current is None:
            _remove_leftover_dir(git, path)
            return
        if current.prunable or not path.exists():
            git.run("worktree", "prune")
            return
        # Twice --force also removes a locked worktree, as a killed `worktree add` can leave one.
        git.run("worktree", "remove", *(["--force", "--force"] if force else []), str(path))


def _remove_leftover_dir(git: Git, path: Path) -> None:
    """A directory at `path` that git no longer knows: remove it only if it is clearly a dead
    worktree of this repository (its `.git` file points into our worktrees admin dir) or empty."""
    if not path.is_dir():
        return
    dot_git = path / ".git"
    if dot_git.is_file():
        target = dot_git.read_text(errors="replace").removeprefix("gitdir:").strip()
        if _real(Path(target)).startswith(_real(git.common_dir / "worktrees") + os.sep):
            shutil.rmtree(path, ignore_errors=True)
    elif not any(path.iterdir()):
        path.rmdir()


def prune(git: Git) -> None:
    """Forget worktrees whose directories are gone."""
    with git.lock:
        git.run("worktree", "prune")


def _real(path: Path) -> str:
    return os.path.realpath(path)
