"""Merging without a checkout: `git merge-tree --write-tree` + `git commit-tree`.

No index, worktree or ref is touched, so merges can run while agents work and while the user
has anything checked out. Used for a task's starting commit (its dependencies merged), for the
integration branch, and for the conflict radar. Merge-tree writes the merged tree's objects; when
nothing references them they are ordinary unreachable objects that `git gc` removes later.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from plait.git.repo import Git, GitError

# Beyond this many files a conflict message lists the first ones and a count.
SHOWN_FILES = 8


@dataclass(frozen=True)
class MergeOutcome:
    """A two-way merge: the merged tree when clean, the conflicted paths when not."""

    tree: str | None
    conflicts: tuple[str, ...] = ()

    @property
    def clean(self) -> bool:
        return self.tree is not None


@dataclass(frozen=True)
class Conflict:
    """`name` (at `sha`) does not merge with what was merged before it."""

    name: str
    sha: str
    files: tuple[str, ...]
    # Earlier heads that conflict with this one on their own; empty when only the combination
    # (or the base) conflicts.
    conflicts_with: tuple[str, ...] = ()

    def __str__(self) -> str:
        shown = ", ".join(self.files[:SHOWN_FILES])
        if len(self.files) > SHOWN_FILES:
            shown += f" and {len(self.files) - SHOWN_FILES} more"
        partner = f" with {', '.join(self.conflicts_with)}" if self.conflicts_with else ""
        return f"{self.name} ({self.sha[:12]}) conflicts{partner} in {shown}"


@dataclass(frozen=True)
class MergeResult:
    """`commit` merges the base with every head in `merged`; on a conflict it is the merge of the
    heads before the conflicting one, so callers can still report or resolve from there."""

    commit: str
    merged: tuple[str, ...]
    conflict: Conflict | None = None

    @property
    def ok(self) -> bool:
        return self.conflict is None


def merge_tree(git: Git, ours: str, theirs: str) -> MergeOutcome:
    """Merge two commits in memory (renames and criss-cross histories handled as `git merge` does)."""
    done = git.try_run("merge-tree", "--write-tree", "--name-only", "--no-messages", "-z", ours, theirs)
    if done.returncode not in (0, 1):
        raise GitError.failed(done, "both sides must be commits with a common history")
    tree, *rest = done.stdout.split("\0")
    if done.returncode == 0:
        return MergeOutcome(tree.strip(), ())
    files = tuple(dict.fromkeys(p for p in rest if p))  # one path per conflict, in git's order
    return MergeOutcome(None, files or ("(git named no file)",))


def conflicted_tree(git: Git, ours: str, theirs: str) -> str:
    """The merged tree as `git merge` would leave the work tree: conflicted files hold conflict markers
    (a file deleted on one side and changed on the other holds the changed version)."""
    done = git.try_run("merge-tree", "--write-tree", "--no-messages", "-z", ours, theirs)
    if done.returncode not in (0, 1):
        raise GitError.failed(done, "both sides must be commits with a common history")
    return done.stdout.split("\0")[0].split("\n")[0].strip()


def would_conflict(git: Git, a: str, b: str) -> tuple[str, ...]:
    """The files two commits conflict on if merged; empty when they merge cleanly."""
    return merge_tree(git, a, b).conflicts


def commit_tree(git: Git, tree: str | None, parents: Sequence[str], message: str) -> str:
    """A commit of `tree` with `parents`; no ref moves. `tree` is a clean MergeOutcome's tree."""
    if tree is None:
        raise ValueError("cannot commit a conflicted merge (MergeOutcome.tree is None)")
    args = [arg for parent in parents for arg in ("-p", parent)]
    return git.run("commit-tree", "--no-gpg-sign", tree, *args, "-F", "-", input=message).strip()


def merge_commits(git: Git, base: str, heads: Sequence[tuple[str, str]], message: str) -> MergeResult:
    """Merge `heads` (name, sha) into `base` one at a time, in the order given.

    A head already contained is skipped; a head that contains everything so far is taken as is
    (fast-forward), so a task with one dependency starts exactly at that dependency's commit.
    Otherwise each step is a two-parent merge commit. Stops at the first conflict.
    """
    current = base
    merged: list[str] = []
    for name, sha in heads:
        if git.is_ancestor(sha, current):
            merged.append(name)
            continue
        if git.is_ancestor(current, sha):
            current = sha
            merged.append(name)
            continue
        outcome = merge_tree(git, current, sha)
        if outcome.tree is None:
            partners = tuple(n for n, s in heads if n in merged and would_conflict(git, s, sha))
            return MergeResult(current, tuple(merged), Conflict(name, sha, outcome.conflicts, partners))
        current = commit_tree(git, outcome.tree, [current, sha], f"{message}: merge {name}")
        merged.append(name)
    return MergeResult(current, tuple(merged))
