"""plait.git.merge: checkout-free merges for dependency bases, integration and the conflict radar."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gitfixtures import commit_on, files_at, git, user_repo
from plait.git import merge
from plait.git.repo import Git, GitError


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Path]:
    yield from user_repo(tmp_path)


BASE_FILES = {"README.md": "# project\n", "src/app.py": "print('hi')\n"}


def test_three_branches_merge_cleanly_into_the_base(repo: Path) -> None:
    g = Git.discover(repo)
    base = g.resolve_commit("HEAD")
    heads = [(f"plait/r/{n}", commit_on(repo, base, {f"{n}.txt": f"{n}\n"}, f"task {n}")) for n in "abc"]
    result = merge.merge_commits(g, base, heads, "[plait r] integrate")
    assert result.ok and result.conflict is None and result.merged == ("plait/r/a", "plait/r/b", "plait/r/c")
    assert files_at(repo, result.commit) == {**BASE_FILES, "a.txt": "a\n", "b.txt": "b\n", "c.txt": "c\n"}
    assert all(g.is_ancestor(sha, result.commit) for _, sha in heads)
    # a took the fast-forward; b and c are merge commits, each naming what it merged
    log = git(repo, "log", "--format=%s", "--first-parent", f"{base}..{result.commit}").splitlines()
    assert log == ["[plait r] integrate: merge plait/r/c", "[plait r] integrate: merge plait/r/b", "task a"]


def test_contained_heads_are_skipped_and_a_single_dependency_is_its_own_base(repo: Path) -> None:
    g = Git.discover(repo)
    base = g.resolve_commit("HEAD")
    a = commit_on(repo, base, {"a.txt": "a\n"})
    b = commit_on(repo, a, {"b.txt": "b\n"})
    assert merge.merge_commits(g, base, [("a", a)], "m").commit == a
    result = merge.merge_commits(g, base, [("b", b), ("a", a), ("base", base)], "m")
    assert result.commit == b and result.merged == ("b", "a", "base")
    assert merge.merge_commits(g, base, [], "m").commit == base


def test_a_conflict_names_the_head_the_files_and_who_it_clashes_with(repo: Path) -> None:
    g = Git.discover(repo)
    base = g.resolve_commit("HEAD")
    a = commit_on(repo, base, {"src/app.py": "print('a')\n", "a.txt": "a\n"})
    b = commit_on(repo, base, {"b.txt": "b\n"})
    c = commit_on(repo, base, {"src/app.py": "print('c')\n", "README.md": "# c\n"})
    d = commit_on(repo, base, {"d.txt": "d\n"})
    result = merge.merge_commits(g, base, [("a", a), ("b", b), ("c", c), ("d", d)], "integrate")
    assert result.conflict is not None and not result.ok
    assert result.conflict.name == "c" and result.conflict.sha == c
    assert result.conflict.files == ("src/app.py",) and result.conflict.conflicts_with == ("a",)
    assert str(result.conflict) == f"c ({c[:12]}) conflicts with a in src/app.py"
    # The commit is what merged before the conflict: a and b, not c or d.
    assert result.merged == ("a", "b")
    assert files_at(repo, result.commit) == {**BASE_FILES, "src/app.py": "print('a')\n", "a.txt": "a\n",
                                             "b.txt": "b\n"}


def test_diamond_dependency_base_has_both_parents_work(repo: Path) -> None:
    g = Git.discover(repo)
    base = g.resolve_commit("HEAD")
    a = commit_on(repo, base, {"models.py": "class User: ...\n"}, "task a")
    b = commit_on(repo, a, {"api.py": "from models import User\n"}, "task b")
    c = commit_on(repo, a, {"cli.py": "from models import User\n", "models.py": "class User: ...\nX = 1\n"})
    result = merge.merge_commits(g, base, [("plait/r/b", b), ("plait/r/c", c)], "[plait r] base for d")
    assert result.ok
    assert files_at(repo, result.commit) == {**BASE_FILES, "models.py": "class User: ...\nX = 1\n",
                                             "api.py": "from models import User\n",
                                             "cli.py": "from models import User\n"}
    assert git(repo, "rev-list", "--parents", "-n1", result.commit).split()[1:] == [b, c]


def test_would_conflict_reports_only_the_clashing_files(repo: Path) -> None:
    g = Git.discover(repo)
    base = g.resolve_commit("HEAD")
    a = commit_on(repo, base, {"src/app.py": "print('a')\n", "x y.txt": "a\n", "same.txt": "s\n"})
    b = commit_on(repo, base, {"src/app.py": "print('b')\n", "x y.txt": "b\n", "same.txt": "s\n"})
    c = commit_on(repo, base, {"other.txt": "c\n"})
    deleted = commit_on(repo, base, {"src/app.py": None})
    assert merge.would_conflict(g, a, b) == ("src/app.py", "x y.txt")
    assert merge.would_conflict(g, a, c) == ()
    assert merge.would_conflict(g, a, deleted) == ("src/app.py",)  # modify/delete
    refs_before = g.list_refs("refs/")
    outcome = merge.merge_tree(g, a, c)
    assert outcome.clean and outcome.tree is not None and g.list_refs("refs/") == refs_before
    assert set(files_at(repo, outcome.tree)) == {*BASE_FILES, "x y.txt", "same.txt", "other.txt"}


def test_commit_tree_refuses_a_conflicted_merge_and_unrelated_histories_fail_clearly(repo: Path) -> None:
    g = Git.discover(repo)
    base = g.resolve_commit("HEAD")
    with pytest.raises(ValueError):
        merge.commit_tree(g, None, [base], "no")
    orphan = git(repo, "commit-tree", g.tree_of(base), "-m", "orphan")
    with pytest.raises(GitError) as info:
        merge.merge_tree(g, base, orphan)
    assert "unrelated histories" in info.value.message
