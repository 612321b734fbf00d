"""plait.git.stack.restack: one branch per task, stacked on its first dependency, no checkout touched."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from gitfixtures import commit_on, files_at, git, user_repo
from plait.git import merge, stack
from plait.git.repo import Git

PREFIX = "refs/heads/plait/r1/stack/"


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Path]:
    yield from user_repo(tmp_path)


def run_task(g: Git, repo: Path, base: str, done: Mapping[str, str], needs: Sequence[str],
             writes: Mapping[str, str | None]) -> str:
    """What a task run does to git: start from its dependencies merged, commit its work on top."""
    start = merge.merge_commits(g, base, [(n, done[n]) for n in needs], "base").commit
    return commit_on(repo, start, writes, f"task work: {sorted(writes)}") if writes else start


def parent_of(repo: Path, sha: str) -> list[str]:
    return git(repo, "rev-list", "--parents", "-n1", sha).split()[1:]


def test_a_chain_keeps_its_own_commits(repo: Path) -> None:
    g = Git.discover(repo)
    base = g.resolve_commit("HEAD")
    done: dict[str, str] = {}
    done["a"] = run_task(g, repo, base, done, [], {"a.txt": "a\n"})
    done["b"] = run_task(g, repo, base, done, ["a"], {"b.txt": "b\n"})
    done["c"] = run_task(g, repo, base, done, [], {"c.txt": "c\n"})
    order = [("a", done["a"], []), ("b", done["b"], ["a"]), ("c", done["c"], [])]
    out = stack.restack(g, base, order, PREFIX)
    assert out == {f"plait/r1/stack/{n}": done[n] for n in "abc"}
    assert g.list_refs(PREFIX) == {PREFIX + n: done[n] for n in "abc"}


def test_a_diamond_stacks_on_the_first_dependency_and_every_tip_is_the_verified_tree(repo: Path) -> None:
    g = Git.discover(repo)
    base = g.resolve_commit("HEAD")
    done: dict[str, str] = {}
    done["a"] = run_task(g, repo, base, done, [], {"models.py": "class User: ...\n"})
    done["b"] = run_task(g, repo, base, done, ["a"], {"api.py": "api\n"})
    done["c"] = run_task(g, repo, base, done, ["a"], {"cli.py": "cli\n"})
    # The join task edits both dependencies' files: replaying only its own diff onto b would conflict.
    done["d"] = run_task(g, repo, base, done, ["b", "c"], {"api.py": "api v2\n", "cli.py": "cli v2\n"})
    done["e"] = run_task(g, repo, base, done, ["d"], {"e.txt": "e\n"})
    done["f"] = run_task(g, repo, base, done, ["b", "c"], {})  # changed nothing itself
    order = [("a", done["a"], []), ("b", done["b"], ["a"]), ("c", done["c"], ["a"]),
             ("d", done["d"], ["b", "c"]), ("e", done["e"], ["d"]), ("f", done["f"], ["b", "c"])]
    out = stack.restack(g, base, order, PREFIX)
    tip = {name: out[f"plait/r1/stack/{name}"] for name, _, _ in order}
    for name in tip:
        assert g.tree_of(tip[name]) == g.tree_of(done[name]), name
    assert files_at(repo, tip["d"]) == {"README.md": "# project\n", "src/app.py": "print('hi')\n",
                                        "models.py": "class User: ...\n", "api.py": "api v2\n",
                                        "cli.py": "cli v2\n"}
    assert [tip[n] for n in "abc"] == [done[n] for n in "abc"]  # plain lines: the original commits
    assert parent_of(repo, tip["d"]) == [tip["b"]]  # one new commit, stacked on b
    assert parent_of(repo, tip["e"]) == [tip["d"]]
    assert parent_of(repo, tip["f"]) == [tip["b"]]
    message = g.message_of(tip["d"])
    assert message.startswith("task work: ['api.py', 'cli.py']") and "also carries the work of c" in message
    assert g.list_refs(PREFIX) == {PREFIX + n: tip[n] for n in tip}
    # Delivering again (a resumed run) keeps the same commits.
    assert stack.restack(g, base, order, PREFIX) == out


def test_a_stale_stack_ref_is_replaced_and_an_empty_task_shares_its_parents_commit(repo: Path) -> None:
    g = Git.discover(repo)
    base = g.resolve_commit("HEAD")
    a = commit_on(repo, base, {"a.txt": "a\n"})
    stale = commit_on(repo, base, {"old.txt": "old\n"})
    g.update_ref(PREFIX + "a", stale)
    out = stack.restack(g, base, [("a", a, []), ("noop", a, ["a"])], PREFIX)
    assert out == {"plait/r1/stack/a": a, "plait/r1/stack/noop": a}
    assert g.rev_parse(PREFIX + "a") == a


def test_a_task_before_its_dependency_is_a_caller_bug(repo: Path) -> None:
    g = Git.discover(repo)
    base = g.resolve_commit("HEAD")
    with pytest.raises(ValueError, match="before its dependency a"):
        stack.restack(g, base, [("b", base, ["a"]), ("a", base, [])], PREFIX)
    with pytest.raises(ValueError, match="refs/"):
        stack.restack(g, base, [], "plait/r1/stack/")
    assert g.list_refs(PREFIX) == {}
