"""Landing: bring a result commit onto the user's checked-out branch without losing a user change.

The one place plait moves a branch of the user's, and only when asked (`plait land`). The new
commit is made with plumbing first (the result itself for a fast-forward, else a merge or squashed
commit from `merge-tree`), then the checkout follows with a two-way `read-tree -m -u HEAD NEW`:
only paths that differ between the two trees are written, and git refuses (before writing
anything) when one of them holds a local change. plait checks the same thing first, ignored files
included (read-tree would overwrite those), so a refusal names the files and changes nothing. The
branch then moves by compare-and-swap from the commit the checkout was read from.
"""

from __future__ import annotations

from dataclasses import dataclass

from plait.errors import PlaitError
from plait.git.merge import commit_tree, merge_tree
from plait.git.repo import Git, RefChanged

SHOWN = 5  # files named in a refusal

# Files in the git dir that mean an operation waits for the user to finish it.
IN_PROGRESS = (("MERGE_HEAD", "a merge"), ("rebase-merge", "a rebase"), ("rebase-apply", "a rebase or `git am`"),
               ("CHERRY_PICK_HEAD", "a cherry-pick"), ("REVERT_HEAD", "a revert"))


@dataclass(frozen=True)
class Landed:
    """What landing did: `kind` is fast-forward, merge commit, squashed commit or nothing to do."""

    branch: str
    kind: str
    old: str
    new: str
    files: int

    def describe(self, run_id: str) -> str:
        if self.old == self.new:
            return f"run {run_id} is already on {self.branch}: nothing to land"
        return (f"landed run {run_id} on {self.branch}: {self.kind} {self.old[:7]} → {self.new[:7]} "
                f"({self.files} file{'' if self.files == 1 else 's'})")


def land(git: Git, source: str, squash: bool, message: str) -> Landed:
    """Bring branch `source` (its short name) onto the checked-out branch: a fast-forward when possible,
    else a merge commit, or with `squash` one commit on top of it. `message` is the new commit's."""
    branch = checked_out_branch(git)
    ref = f"refs/heads/{branch}"
    result = git.resolve_commit(f"refs/heads/{source}")
    with git.lock:
        old = git.resolve_commit(ref)
        if git.is_ancestor(result, old):
            return Landed(branch, "nothing to do", old, old, 0)
        kind, new = _new_commit(git, branch, source, old, result, squash, message)
        if git.tree_of(new) == git.tree_of(old):
            return Landed(branch, "nothing to do", old, old, 0)  # squashed before: the same files already
        base = git.run("merge-base", old, result).strip()
        touched = set(git.changed_files(old, new)) | set(git.changed_files(base, result))
        _refuse_local_changes(git, branch, sorted(touched))
        _move(git, ref, old, new)
    return Landed(branch, kind, old, new, len(git.changed_files(old, new)))


def checked_out_branch(git: Git) -> str:
    """The user's branch, or a user error when there is none to land on or git is busy with something."""
    branch = git.head_branch()
    if branch is None:
        raise PlaitError("HEAD is detached: there is no branch to land on",
                         "check out the branch to land on (git switch BRANCH)")
    for name, what in IN_PROGRESS:
        if (git.git_dir / name).exists():
            raise PlaitError(f"{what} is in progress in your checkout",
                             "finish it or abort it (git status says how), then land")
    return branch


def _new_commit(git: Git, branch: str, source: str, old: str, result: str, squash: bool,
                message: str) -> tuple[str, str]:
    on_top = git.is_ancestor(old, result)
    if on_top and not squash:
        return "fast-forward", result
    if on_top:
        tree = git.tree_of(result)
    else:
        merged = merge_tree(git, old, result)
        if merged.tree is None:
            raise PlaitError(f"{source} conflicts with {branch} in {_some(merged.conflicts)}",
                             f"merge it yourself: git merge {source}")
        tree = merged.tree
    if squash:
        return "squashed commit", commit_tree(git, tree, [old], message)
    return "merge commit", commit_tree(git, tree, [old, result], message)


def _refuse_local_changes(git: Git, branch: str, touched: list[str]) -> None:
    """A user error naming the touched files that hold a local change: staged, unstaged, untracked or
    ignored (a file the result would write over)."""
    if not touched:
        return
    out = git.run("status", "--porcelain=v1", "-z", "--untracked-files=all", "--ignored=matching", "--",
                  *touched, env={"GIT_LITERAL_PATHSPECS": "1"})
    entries = iter(out.split("\0"))
    dirty = []
    for entry in entries:
        if entry:
            dirty.append(entry[3:])
            if {"R", "C"} & set(entry[:2]):
                dirty.append(next(entries, ""))  # a rename's or copy's source: its change is the user's too
    if dirty:
        raise PlaitError(f"your checkout has local changes in {len(dirty)} file(s) that landing would change: "
                         f"{_some(dirty)}", f"commit or stash them (git stash -u), then land again; "
                         f"nothing was changed on {branch}")


def _move(git: Git, ref: str, old: str, new: str) -> None:
    git.try_run("update-index", "-q", "--refresh")  # stat info only: read-tree judges changes by it
    done = git.try_run("read-tree", "-m", "-u", old, new)
    if not done.ok:
        why = " | ".join(line.strip() for line in done.stderr.strip().splitlines()[:3])
        raise PlaitError(f"git refused to update your checkout: {why}",
                         "commit or stash those changes (git stash -u), then land again")
    try:
        git.update_ref(ref, new, old)
    except RefChanged:
        git.run("read-tree", "-m", "-u", new, old)  # the branch moved meanwhile: put the checkout back
        raise


def _some(paths: tuple[str, ...] | list[str]) -> str:
    shown = ", ".join(paths[:SHOWN])
    return shown + (f" and {len(paths) - SHOWN} more" if len(paths) > SHOWN else "")
