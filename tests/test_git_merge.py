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


def test_plaits_own_commits_written_by_hand_are_the_commits_git_commit_tree_makes(repo: Path, tmp_path: Path,
                                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                                  ) -> None:
    g = Git.discover(repo)
    base = g.resolve_commit("HEAD")
    a = commit_on(repo, base, {"a.txt": "a\n"})
    monkeypatch.setenv("TZ", "Asia/Kolkata")  # +0530: the offset is the local one, minutes included
    objects.time.tzset()
    monkeypatch.setattr(objects.time, "time", lambda: 1_900_000_000.25)
    assert g.plain_commits
    message = "[plait r1] t: änderung — a title\n"
    by_hand = g.commit(g.tree_of(a), [base, a], message)
    dated = {"GIT_AUTHOR_DATE": "1900000000 +0530", "GIT_COMMITTER_DATE": "1900000000 +0530"}
    by_git = git(repo, "commit-tree", g.tree_of(a), "-p", base, "-p", a, "-F", "-", input=message,
                 env={**dated, "GIT_AUTHOR_NAME": "plait", "GIT_AUTHOR_EMAIL": "plait@localhost",
                      "GIT_COMMITTER_NAME": "plait", "GIT_COMMITTER_EMAIL": "plait@localhost"})
    monkeypatch.undo()
    objects.time.tzset()
    assert git(repo, "cat-file", "-p", by_hand) == git(repo, "cat-file", "-p", by_git)
    assert by_hand == by_git
    git(repo, "fsck", "--strict", "--no-progress")
    latin = make_repo(tmp_path / "latin")
    git(latin, "config", "i18n.commitEncoding", "ISO-8859-1")  # git records the encoding: git writes these
    g = Git.discover(latin)
    assert g.plain_objects and not g.plain_commits
    head = g.resolve_commit("HEAD")
    assert "encoding ISO-8859-1" in git(latin, "cat-file", "-p", g.commit(g.tree_of(head), [head], "é\n"))


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


FOOTPRINT_BASE = {"a/x.txt": "x\n", "a/y.txt": "y\n", "b/z.txt": "z\n", "top.txt": "t\n", "d/e/f.txt": "f\n"}



def _changes(files: dict[str, str | None]) -> tuple[list[str], list[str]]:
    return sorted(files), sorted(p for p, text in files.items() if text is None)


@pytest.mark.parametrize(("one", "other", "clear"), [
    ({"a/new1.txt": "1\n"}, {"a/new2.txt": "2\n"}, True),  # new files side by side
    ({"top.txt": "changed\n"}, {"b/z.txt": "changed\n", "b/w.txt": "w\n"}, True),
    ({"a/x.txt": "1\n"}, {"a/x.txt": "2\n"}, False),  # the same file
    ({"n": "a file\n"}, {"n/inner.txt": "in a folder\n"}, False),  # a file where the other makes a folder
    # a folder moved: git takes what the other adds there as moved too
    ({"a/x.txt": None, "a/y.txt": None, "c/x.txt": "x\n", "c/y.txt": "y\n"}, {"a/new.txt": "n\n"}, False),
    ({"d/e/f.txt": None}, {"d/g.txt": "g\n"}, False),  # a deletion keeps others out of its folders
])
def test_a_footprint_clears_only_heads_that_cannot_conflict(tmp_path: Path, one: dict[str, str | None],
                                                           other: dict[str, str | None], clear: bool) -> None:
    repo = make_repo(tmp_path / "repo", FOOTPRINT_BASE)
    g = Git.discover(repo)
    base = g.resolve_commit("HEAD")
    a, b = commit_on(repo, base, one), commit_on(repo, base, other)
    for first, second in ((one, other), (other, one)):
        footprint = merge.Footprint()
        footprint.add(*_changes(first))
        assert footprint.clear_of(*_changes(second)) == clear
    if clear:
        assert merge.merge_tree(g, a, b).clean
    elif len(one) == 1 and "a/x.txt" in one:
        assert not merge.merge_tree(g, a, b).clean


def test_whatever_heads_change_a_footprint_never_clears_one_that_conflicts(tmp_path: Path) -> None:
    """Random changes (adds, edits, deletions, files and folders of the same name) to a small tree: every head
    the footprint of the others clears merges with their merge without a conflict."""
    import random

    rng = random.Random(7)
    names = ["a", "a/b", "a/b/c", "a/c", "b", "b/a", "c"]
    repo = make_repo(tmp_path / "repo", {"a/b/c": "1\n2\n3\n", "a/c": "x\n", "b/a": "y\n", "c": "z\n"})
    g = Git.discover(repo)
    base = g.resolve_commit("HEAD")
    start = {"a/b/c", "a/c", "b/a", "c"}
    cleared = 0
    for _ in range(30):
        heads = []
        for _ in range(3):
            changes: dict[str, str | None] = {}
            files = set(start)
            for _ in range(rng.randint(1, 3)):
                path = rng.choice(names)
                if path in files and rng.random() < 0.4:
                    files.discard(path)
                    changes[path] = None
                elif not any(f != path and (f.startswith(path + "/") or path.startswith(f + "/")) for f in files):
                    files.add(path)
                    changes[path] = f"{rng.random()}\n"
            if changes:
                heads.append((commit_on(repo, base, changes), changes))
        footprint = merge.Footprint()
        chain = merge.Chain(g, base, "m")
        for sha, changes in heads:
            clear = footprint.clear_of(*_changes(changes))
            footprint.add(*_changes(changes))
            conflict = chain.add(sha, sha, [base])
            if clear:
                cleared += 1
                assert conflict is None, (heads, sha)
    assert cleared >= 10  # the footprint clears heads often enough for the check to mean something
