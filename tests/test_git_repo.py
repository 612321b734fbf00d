"""plait.git.repo: discovery, the clean environment, queries, commits and compare-and-swap refs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gitfixtures import commit_on, files_at, git, make_repo, user_repo
from plait.errors import PlaitError
from plait.git import repo as repo_module
from plait.git.repo import Git, GitError, RefChanged


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Path]:
    yield from user_repo(tmp_path)


def test_discover_finds_top_level_and_absolute_common_dir_from_a_subdirectory(repo: Path) -> None:
    g = Git.discover(repo / "src")
    assert g.root == repo
    assert g.common_dir == repo / ".git" and g.common_dir.is_absolute()


def test_discover_in_a_linked_worktree_shares_the_common_dir(repo: Path, tmp_path: Path) -> None:
    git(repo, "worktree", "add", "-q", "--detach", str(tmp_path / "linked"), "HEAD")
    g = Git.discover(tmp_path / "linked")
    assert g.root == tmp_path / "linked"
    assert g.common_dir == repo / ".git"
    git(repo, "worktree", "remove", "--force", str(tmp_path / "linked"))


def test_outside_a_repository_the_error_says_how_to_fix_it(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    with pytest.raises(PlaitError) as info:
        Git.discover(tmp_path / "plain")
    assert "not inside a git repository" in info.value.message
    assert info.value.fix == "run plait inside a git repository (git init)"
    git(tmp_path, "init", "-q", "--bare", "bare.git")
    with pytest.raises(PlaitError) as info:
        Git.discover(tmp_path / "bare.git")
    assert "has no working tree" in info.value.message


def test_missing_git_is_a_user_error(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    g = Git(repo, repo / ".git", env={"PATH": str(repo / "no-bin")})
    with pytest.raises(PlaitError) as info:
        g.run("status")
    assert not isinstance(info.value, GitError)
    assert "git is not installed" in str(info.value)


def test_children_get_a_clean_environment_and_plaits_identity(repo: Path, monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    # As inside a git hook: these would point every command at another repository.
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere.git"))
    monkeypatch.setenv("GIT_INDEX_FILE", str(tmp_path / "other-index"))
    g = Git.discover(repo)
    assert g.env["GIT_DIR"] == str(repo / ".git") and g.env["GIT_WORK_TREE"] == str(repo)  # no discovery after this
    assert "GIT_INDEX_FILE" not in g.env
    assert g.env["GIT_TERMINAL_PROMPT"] == "0" and g.env["LC_ALL"] == "C"
    assert g.env["GIT_AUTHOR_NAME"] == "plait" and g.env["GIT_COMMITTER_EMAIL"] == "plait@localhost"
    assert g.run("config", "gc.auto").strip() == "0"


def test_update_ref_is_compare_and_swap(repo: Path) -> None:
    g = Git.discover(repo)
    base = g.resolve_commit("HEAD")
    other = commit_on(repo, base, {"x": "1"})
    ref = "refs/heads/plait/r1/integration"
    g.update_ref(ref, base, None)  # create
    with pytest.raises(RefChanged):
        g.update_ref(ref, other, None)  # "create" when it exists
    with pytest.raises(RefChanged) as info:
        g.update_ref(ref, other, other)  # stale expected value
    assert ref in info.value.fix and "failed" in info.value.message
    assert g.rev_parse(ref) == base
    g.update_ref(ref, other, base)
    assert g.rev_parse(ref) == other
    with pytest.raises(ValueError):
        g.update_ref("plait/r1/integration", base, other)


def test_update_refs_is_all_or_nothing(repo: Path) -> None:
    g = Git.discover(repo)
    base = g.resolve_commit("HEAD")
    other = commit_on(repo, base, {"x": "1"})
    g.update_ref("refs/heads/plait/a", base)
    with pytest.raises(RefChanged):
        g.update_refs([("refs/heads/plait/b", other, None), ("refs/heads/plait/a", other, other)])
    assert g.rev_parse("refs/heads/plait/b") is None and g.rev_parse("refs/heads/plait/a") == base
    g.update_refs([("refs/heads/plait/b", other, None), ("refs/heads/plait/a", other, base)])
    assert g.list_refs("refs/heads/plait/") == {"refs/heads/plait/a": other, "refs/heads/plait/b": other}


def test_delete_ref_checks_the_old_value_and_tolerates_a_missing_ref(repo: Path) -> None:
    g = Git.discover(repo)
    base = g.resolve_commit("HEAD")
    other = commit_on(repo, base, {"x": "1"})
    g.update_ref("refs/heads/plait/gone", base)
    with pytest.raises(GitError):
        g.delete_ref("refs/heads/plait/gone", other)
    g.delete_ref("refs/heads/plait/gone", base)
    assert not g.branch_exists("plait/gone")
    g.delete_ref("refs/heads/plait/gone")


def test_queries(repo: Path, tmp_path: Path) -> None:
    g = Git.discover(repo)
    base = g.resolve_commit("main")
    assert g.rev_parse("refs/heads/nope") is None and g.rev_parse("--all") is None
    assert g.head_branch() == "main" and g.branch_exists("main") and not g.branch_exists("nope")
    renamed = commit_on(repo, base, {"src/app.py": None, "lib/app.py": "print('hi')\n",
                                     "sp ace/ünï.txt": "x\n"})
    assert sorted(g.changed_files(base, renamed)) == ["lib/app.py", "sp ace/ünï.txt", "src/app.py"]
    assert g.is_ancestor(base, renamed) and not g.is_ancestor(renamed, base)
    assert g.tree_of(renamed) == git(repo, "rev-parse", f"{renamed}^{{tree}}")
    assert g.message_of(renamed) == "change"
    with pytest.raises(GitError) as info:
        g.is_ancestor("0" * 40, base)
    assert "merge-base --is-ancestor" in info.value.message and info.value.returncode == 128


def test_resolve_commit_errors_say_what_to_do(repo: Path, tmp_path: Path) -> None:
    g = Git.discover(repo)
    with pytest.raises(PlaitError) as info:
        g.resolve_commit("no-such-branch")
    assert "'no-such-branch' is not a commit" in info.value.message and "git log" in info.value.fix
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    with pytest.raises(PlaitError) as info:
        Git.discover(empty).resolve_commit("HEAD")
    assert "no commits yet" in info.value.message


def test_init_makes_a_first_commit(tmp_path: Path) -> None:
    target = tmp_path / "demo"
    target.mkdir()
    (target / "a.py").write_text("a = 1\n")
    g = Git.init(target, initial_commit="demo project")
    assert g.head_branch() == "main" and files_at(target, "HEAD") == {"a.py": "a = 1\n"}
    assert g.status_porcelain() == ""


def test_old_git_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A fake `git` first on PATH: the only way to meet an old git on this machine.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "git").write_text("#!/bin/sh\necho 'git version 2.30.1'\n")
    (bin_dir / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    repo_module._check_version.cache_clear()
    try:
        with pytest.raises(PlaitError) as info:
            Git.discover(make_repo(tmp_path / "r"))
        assert "needs git 2.38 or newer, found 2.30" in info.value.message
    finally:
        repo_module._check_version.cache_clear()
