"""plait.git.merge: checkout-free merges for dependency bases, integration and the conflict radar."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gitfixtures import commit_on, files_at, git, make_repo, user_repo
from plait.git import merge, objects
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


# -- stand-ins written straight into the object store (plait.git.objects) -------------------------------------------

def test_a_stand_in_written_by_hand_is_a_commit_git_reads_and_fsck_accepts(repo: Path) -> None:
    g = Git.discover(repo)
    base = g.resolve_commit("HEAD")
    a = commit_on(repo, base, {"a.txt": "a\n"})
    b = commit_on(repo, base, {"b.txt": "b\n"})
    assert g.plain_objects
    sha = objects.write_commit(g.objects_dir, g.tree_of(a), [a, b], "stand-in")
    body = objects.commit_bytes(g.tree_of(a), [a, b], "stand-in").decode()
    assert git(repo, "cat-file", "-t", sha) == "commit"
    assert git(repo, "cat-file", "-p", sha, strip=False) == body
    assert git(repo, "hash-object", "-t", "commit", "--stdin", input=body) == sha
    assert git(repo, "rev-list", "--parents", "-n1", sha).split() == [sha, a, b]
    git(repo, "fsck", "--strict", "--no-progress")  # raises if git finds anything wrong
    path = g.objects_dir / sha[:2] / sha[2:]
    assert path.stat().st_mode & 0o777 == 0o444
    assert objects.write_commit(g.objects_dir, g.tree_of(a), [a, b], "stand-in") == sha  # already there: kept
    assert [p.name for p in path.parent.iterdir() if p.name.startswith("tmp_obj_")] == []
    with pytest.raises(ValueError):
        objects.write_commit(g.objects_dir, "HEAD", [a], "not an id")


def test_merging_through_a_hand_written_stand_in_is_merging_through_commit_tree(repo: Path) -> None:
    g = Git.discover(repo)
    base = g.resolve_commit("HEAD")
    a = commit_on(repo, base, {"src/app.py": "print('a')\n", "a.txt": "a\n"})
    b = commit_on(repo, base, {"b.txt": "b\n", "README.md": None})
    chain = merge.Chain(g, base, "m")
    assert chain.add("a", a, [base]) is None and chain.add("b", b, [base]) is None and chain.tree is not None
    heads = [commit_on(repo, base, {"src/app.py": "print('c')\n"}),  # conflicts with a
             commit_on(repo, base, {"README.md": "# d\n"}),  # modify/delete with b
             commit_on(repo, a, {"a.txt": "a by e\n", "e.txt": "e\n"}),  # built on a
             commit_on(repo, base, {"f.txt": "f\n"})]
    for head, starts in zip(heads, ([base], [base], [a], [base]), strict=True):
        by_hand = merge.stand_in(g, chain.tree, starts)
        by_git = merge.commit_tree(g, chain.tree, starts, "stand-in for the merge so far")
        assert by_hand != by_git and git(repo, "rev-parse", f"{by_hand}^{{tree}}") == chain.tree
        assert merge.merge_tree(g, by_hand, head) == merge.merge_tree(g, by_git, head)
    assert [merge.merge_tree(g, chain.commit, h).clean for h in heads] == [False, False, True, True]


def test_other_object_formats_and_shared_repositories_keep_git_commit_tree(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    sha256 = tmp_path / "sha256"
    sha256.mkdir()
    git(sha256, "init", "-q", "-b", "main", "--object-format=sha256")
    git(sha256, "commit", "-q", "--allow-empty", "-m", "initial")
    g = Git.discover(sha256)
    assert not g.plain_objects
    wrote: list[str] = []
    monkeypatch.setattr(objects, "write_commit", lambda *args: wrote.append("by hand") or "")
    base = g.resolve_commit("HEAD")
    heads = [(n, commit_on(sha256, base, {f"{n}.txt": f"{n}\n"})) for n in "abc"]
    chain = merge.Chain(g, base, "m")
    assert all(chain.add(n, sha, [base]) is None for n, sha in heads)  # c through a stand-in of commit-tree's
    assert len(chain.commit) == 64 and set(files_at(sha256, chain.commit)) == {"a.txt", "b.txt", "c.txt"}
    assert wrote == []
    shared = make_repo(tmp_path / "shared")
    git(shared, "config", "core.sharedRepository", "group")
    assert not Git.discover(shared).plain_objects
    git(shared, "config", "core.sharedRepository", "umask")
    assert Git.discover(shared).plain_objects


def test_a_run_integrates_the_same_tree_with_stand_ins_written_by_hand(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from plait import api
    from plait.run.engine import RunOptions
    from runfixtures import task, write_plan

    tasks = [task("a", {"a.txt": "a\n"}), task("b", {"b.txt": "b\n"}), task("c", {"c.txt": "c\n"}),
             task("d", {"d.txt": "d\n"}, needs=["a", "b"]), task("e", {"e.txt": "e\n"}, needs=["d"]),
             task("f", {"f.txt": "f\n"}, needs=["c"])]
    real = objects.write_commit
    wrote: list[str] = []

    def spy(*args: Any) -> str:
        wrote.append(sha := real(*args))
        return sha

    monkeypatch.setattr(objects, "write_commit", spy)
    trees = {}
    for by_hand in (False, True):
        repo = make_repo(tmp_path / f"by-hand-{by_hand}")
        monkeypatch.setattr(Git, "plain_objects", by_hand)
        handle, run_id = api.start(write_plan(repo, tasks), RunOptions(jobs=3), cwd=repo)
        assert api.execute(handle, run_id) == "completed"
        trees[by_hand] = git(repo, "rev-parse", f"plait/{run_id}/integration^{{tree}}")
        assert bool(wrote) == by_hand
        if by_hand:
            git(repo, "fsck", "--strict", "--no-progress")
    assert trees[True] == trees[False]


def test_in_a_linked_worktree_stand_ins_go_to_the_shared_object_store(tmp_path: Path) -> None:
    main = make_repo(tmp_path / "main")
    git(main, "worktree", "add", "-q", "--detach", str(tmp_path / "linked"))
    g = Git.discover(tmp_path / "linked")
    assert g.objects_dir == main / ".git" / "objects" and g.plain_objects
    base = g.resolve_commit("HEAD")
    old = objects.write_commit(g.objects_dir, g.tree_of(base), [base], "stand-in")
    path = g.objects_dir / old[:2] / old[2:]
    os.utime(path, (0, 0))
    assert objects.write_commit(g.objects_dir, g.tree_of(base), [base], "stand-in") == old
    assert path.stat().st_mtime > 0  # freshened, as git does, so a prune of old objects spares it
    assert git(tmp_path / "linked", "cat-file", "-t", old) == "commit" == git(main, "cat-file", "-t", old)
