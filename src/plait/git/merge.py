"""Merging without a checkout: `git merge-tree --write-tree` + `git commit-tree`.

No index, worktree or ref is touched, so merges can run while agents work and while the user
has anything checked out. Used for a task's starting commit (its dependencies merged), for the
integration branch, and for the conflict radar. Merge-tree writes the merged tree's objects; when
nothing references them they are ordinary unreachable objects that `git gc` removes later.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from plait.git import objects
from plait.git.repo import Git, GitError

# Beyond this many files a conflict message lists the first ones and a count.
SHOWN_FILES = 8
MERGES_KEPT = 256  # outcomes a Chain keeps for another sharing its `merges`


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


class Merges:
    """Outcomes of merges through a stand-in, shared by chains that often make the same one (the conflict
    radar's and the integration's, each on a thread of its own): (a chain's tree, the head's starts, the
    head) -> the outcome. An outcome is taken once, by the other chain; at most `kept` wait for it."""

    def __init__(self, kept: int = MERGES_KEPT) -> None:
        self.kept = kept
        self._found: dict[tuple[str, tuple[str, ...], str], MergeOutcome] = {}
        self._lock = threading.Lock()

    def take(self, key: tuple[str, tuple[str, ...], str]) -> MergeOutcome | None:
        with self._lock:
            return self._found.pop(key, None)

    def keep(self, key: tuple[str, tuple[str, ...], str], outcome: MergeOutcome) -> None:
        with self._lock:
            self._found[key] = outcome
            while len(self._found) > self.kept:
                del self._found[next(iter(self._found))]  # the oldest: the other chain has gone past it

    def __len__(self) -> int:
        return len(self._found)


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


def stand_in(git: Git, tree: str, parents: Sequence[str], message: str = "stand-in for the merge so far") -> str:
    """A commit of `tree` with `parents` for `merge-tree` to merge from (see `Chain`), or of an internal chain:
    never named by a ref, so written straight into the object store where git's own form allows (`objects`),
    saving a process."""
    if git.plain_objects:
        return objects.write_commit(git.objects_dir, tree, parents, message)
    return commit_tree(git, tree, parents, message)


class Chain:
    """A merge built head by head, in the order given (`merge_commits`, the integration as tasks finish).

    A head already contained is skipped; a head that contains everything so far is taken as is
    (fast-forward), so a task with one dependency starts exactly at that dependency's commit; one built on
    the chain's commit (`starts` holds it) is a fast-forward without asking git.
    Otherwise each step is a two-parent merge commit. Once the chain has made a merge commit, git is
    asked no more ancestry questions: no existing head can descend from a commit made after it, and a
    head is known to be inside when it was merged before (or is the start). Walking the growing chain
    for each head made integrating n tasks O(n^2) (issue 13); a head contained some other way (a task
    that changed nothing and merged only its dependencies) gets a merge commit that changes nothing.

    `merge-tree` walks both histories for the merge bases, the chain's too. Given `starts` (the commits
    the head was built on: its dependencies' commits, or the base) all in the chain already, it merges
    with a stand-in instead: a commit of the chain's tree whose parents are those starts. The head's
    common ancestors with it are the ones it has with the chain (everything else the chain holds is in
    no ancestor of the head), so the merge is the same, found in a few steps. The stand-in is written straight
    into the object store (`stand_in`): no process.

    A merge through a stand-in depends only on the chain's tree, the starts and the head, so chains that share
    `merges` (the conflict radar and the integration's, which often merge the same head on the same tree) make
    each such merge once; the other takes its outcome and makes only its own merge commit.
    """

    def __init__(self, git: Git, start: str, message: str, merges: Merges | None = None,
                 internal: bool = False) -> None:
        self.git, self.commit, self.message = git, start, message
        self.internal = internal  # no ref will name its commits (the conflict radar's): made like stand-ins
        self.merged: list[tuple[str, str]] = []  # (name, sha), in merge order
        self.inside = {start}
        self.made = False  # `commit` is a merge commit made here
        self.tree: str | None = None  # its tree, when made
        self.merges = merges if merges is not None else Merges()

    def add(self, name: str, sha: str, starts: Sequence[str] = ()) -> Conflict | None:
        """Merge one head into the chain, or the conflict that keeps it out (the chain does not move)."""
        git = self.git
        if sha in self.inside or (not self.made and self.commit not in starts and git.is_ancestor(sha, self.commit)):
            pass  # (a head built on the chain's commit is no ancestor of it, unless it is that commit)
        elif not self.made and (self.commit in starts or git.is_ancestor(self.commit, sha)):
            self.commit = sha
        else:
            outcome = self._merge(sha, starts)
            if outcome.tree is None:
                partners = tuple(n for n, s in self.merged if would_conflict(git, s, sha))
                return Conflict(name, sha, outcome.conflicts, partners)
            parents, message = [self.commit, sha], f"{self.message}: merge {name}"
            self.commit = (stand_in(git, outcome.tree, parents, message) if self.internal
                           else git.commit(outcome.tree, parents, message))
            self.made, self.tree = True, outcome.tree
        self.merged.append((name, sha))
        self.inside.add(sha)
        return None

    def _merge(self, sha: str, starts: Sequence[str]) -> MergeOutcome:
        if self.tree is None or not starts or not all(s in self.inside for s in starts):
            return merge_tree(self.git, self.commit, sha)
        parents = tuple(dict.fromkeys(starts))
        key = (self.tree, parents, sha)
        known = self.merges.take(key)  # the other chain's; neither asks for it again
        if known is not None:
            return known
        outcome = merge_tree(self.git, stand_in(self.git, self.tree, parents), sha)
        self.merges.keep(key, outcome)
        return outcome


class Footprint:
    """Where a set of heads changed the tree (each against the commit it was built on), to tell a head whose merge
    with all of them cannot conflict without asking git: it changes none of their files, makes no folder of
    theirs a file nor a file of theirs a folder, and changes nothing in a folder where a file was deleted, by
    either side (git may take such a folder as renamed, and move what the other side added there)."""

    def __init__(self) -> None:
        self.files: set[str] = set()
        self.folders: set[str] = set()  # every folder above a changed file
        self.vacated: set[str] = set()  # every folder above a deleted file

    def clear_of(self, changed: Sequence[str], deleted: Sequence[str]) -> bool:
        """Whether a head changing `changed` (deleting `deleted`, among them) stays clear of every head added."""
        for path in changed:
            if path in self.files or path in self.folders:
                return False
            if any(folder in self.files or folder in self.vacated for folder in _folders(path)):
                return False
        return not any(folder in self.folders for path in deleted for folder in _folders(path))

    def add(self, changed: Sequence[str], deleted: Sequence[str]) -> None:
        for path in changed:
            self.files.add(path)
            self.folders.update(_folders(path))
        for path in deleted:
            self.vacated.update(_folders(path))


def _folders(path: str) -> list[str]:
    """The folders above `path`, not the top: `a/b/c` -> `a/b`, `a`."""
    parts = path.split("/")[:-1]
    return ["/".join(parts[:n]) for n in range(len(parts), 0, -1)]


def merge_commits(git: Git, base: str, heads: Sequence[tuple[str, str]], message: str) -> MergeResult:
    """Merge `heads` (name, sha) into `base` one at a time, in the order given (see `Chain`). Stops at the
    first conflict."""
    chain = Chain(git, base, message)
    for name, sha in heads:
        conflict = chain.add(name, sha)
        if conflict is not None:
            return MergeResult(chain.commit, tuple(n for n, _ in chain.merged), conflict)
    return MergeResult(chain.commit, tuple(n for n, _ in chain.merged))
