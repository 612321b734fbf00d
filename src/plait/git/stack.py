"""`--deliver stack`: one branch per task, each stacked on its first dependency's stacked branch
(seed 001's `gs stack` picture), written without touching any checkout.

What a stacked branch holds: exactly the tree the task verified. Each task's work was built on
*all* of its dependencies merged, and a stack is a tree of branches, so a task with several
dependencies cannot sit on all of them. Replaying only its own diff onto the first dependency
would leave out the others' files and conflict whenever the task edits them (the usual reason to
have a join task). Instead its stacked commit carries the other dependencies' work too; every
branch tip then builds and passes what the task passed, and restacking cannot conflict. The price:
a review of that branch against its parent also shows the other dependencies' changes, until
those are merged.

Where a task's branch already sits on its parent's stacked commit as a plain line of commits,
the branch's own commits are used unchanged; otherwise one new commit (the task's tree, on the
parent) stands in for them.
"""

from __future__ import annotations

from collections.abc import Sequence

from plait.git.merge import commit_tree
from plait.git.repo import Git

Entry = tuple[str, str, Sequence[str]]  # (task name, its branch's commit, its dependencies)


def restack(git: Git, base: str, order: Sequence[Entry], prefix: str) -> dict[str, str]:
    """Stack `order`'s tasks `(name, branch_sha, dependency_names)` on `base` in that order (each
    task after its first dependency) and point `<prefix><name>` at each, all refs in one
    transaction. Returns `{branch: sha}` (the ref without `refs/heads/`), in `order`'s order."""
    if not prefix.startswith("refs/"):
        raise ValueError(f"prefix must be a full ref prefix (refs/...), got {prefix!r}")
    existing = git.list_refs(prefix)
    stacked: dict[str, str] = {}
    for name, sha, needs in order:
        parent = needs[0] if needs else None
        if parent is not None and parent not in stacked:
            raise ValueError(f"{name} is listed before its dependency {parent}, or {parent} is missing")
        onto = stacked[parent] if parent is not None else base
        stacked[name] = _stack_one(git, name, sha, onto, parent, needs, existing.get(prefix + name))
    refs = {prefix + name: sha for name, sha in stacked.items()}
    git.update_refs([(ref, sha, existing.get(ref)) for ref, sha in refs.items() if existing.get(ref) != sha])
    return {ref.removeprefix("refs/heads/"): sha for ref, sha in refs.items()}


def _stack_one(git: Git, name: str, sha: str, onto: str, parent: str | None, needs: Sequence[str],
               previous: str | None) -> str:
    if git.is_ancestor(onto, sha) and not git.run("rev-list", "--merges", f"{onto}..{sha}").strip():
        return sha  # already a clean line of the task's own commits on its parent
    tree = git.tree_of(sha)
    if tree == git.tree_of(onto):
        return onto  # nothing of its own and nothing new from other dependencies
    if previous is not None and git.rev_parse(f"{previous}^") == onto and git.tree_of(previous) == tree:
        return previous  # delivered before (a resumed run): keep the same commit
    others = [n for n in needs if n != parent]
    note = f"Stacked by plait on {parent or 'the base'}; the tree is {name}'s commit {sha[:12]}"
    note += f", so it also carries the work of {', '.join(others)}." if others else "."
    return commit_tree(git, tree, [onto], f"{git.message_of(sha)}\n\n{note}\n")
