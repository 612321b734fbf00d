"""`plait land` and `plait clean --branches` end to end: real runs with the script agent, real git, the real
CLI in a subprocess (so no terminal: no prompt, the clean-up command is printed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from plait import api
from plait.run import liveness
from plait.run.engine import RunOptions
from runfixtures import common_dir, git, make_repo, plait, snapshot, task, write_plan

TASKS = [task("a", {"a.txt": "a\n", "README.md": "# project, by a\n"}), task("b", {"b.txt": "b\n"}, needs=["a"])]


def run_plan(repo: Path, tasks: list[dict[str, Any]] = TASKS, **extra: Any) -> tuple[str, str]:
    handle, run_id = api.start(write_plan(repo, tasks, **extra), RunOptions(jobs=2), cwd=repo)
    return api.execute(handle, run_id), run_id


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"README.md": "# project\n", "other.txt": "other\n"})


def completed(repo: Path) -> str:
    status, run_id = run_plan(repo)
    assert status == "completed"
    return run_id


def user_commit(repo: Path, name: str, content: str) -> str:
    (repo / name).write_text(content)
    git(repo, "add", name)
    git(repo, "-c", "user.name=u", "-c", "user.email=u@x", "commit", "-q", "-m", f"user: {name}")
    return git(repo, "rev-parse", "HEAD")


def test_fast_forward_moves_the_branch_and_checkout_and_prints_the_clean_command(repo: Path) -> None:
    run_id = completed(repo)
    old, result = git(repo, "rev-parse", "HEAD"), git(repo, "rev-parse", f"plait/{run_id}/integration")
    done = plait(repo, "land")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"landed run {run_id} on main: fast-forward {old[:7]} → {result[:7]} (3 files)"
    assert lines[-1] == f"clean up: plait clean --run {run_id} --branches"
    assert "Remove run" not in done.stdout
    assert git(repo, "rev-parse", "HEAD") == result and git(repo, "symbolic-ref", "HEAD") == "refs/heads/main"
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    assert (repo / "README.md").read_text() == "# project, by a\n" and (repo / "b.txt").read_text() == "b\n"


def test_a_branch_that_moved_on_gets_a_merge_commit(repo: Path) -> None:
    run_id = completed(repo)
    mine = user_commit(repo, "mine.txt", "mine\n")
    done = plait(repo, "land", run_id)
    assert done.returncode == 0, done.stderr
    head = git(repo, "rev-parse", "HEAD")
    assert done.stdout.startswith(f"landed run {run_id} on main: merge commit {mine[:7]} → {head[:7]} (3 files)")
    assert git(repo, "rev-parse", "HEAD^1", "HEAD^2").split() == [
        mine, git(repo, "rev-parse", f"plait/{run_id}/integration")]
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    assert {p.name for p in repo.iterdir()} >= {"mine.txt", "a.txt", "b.txt"}


def test_squash_makes_one_commit_with_the_results_tree(repo: Path) -> None:
    run_id = completed(repo)
    old = git(repo, "rev-parse", "HEAD")
    done = plait(repo, "land", "--squash")
    assert done.returncode == 0, done.stderr
    assert f"on main: squashed commit {old[:7]} →" in done.stdout
    assert git(repo, "rev-list", "--parents", "-n1", "HEAD").split()[1:] == [old]
    assert git(repo, "rev-parse", "HEAD^{tree}") == git(repo, "rev-parse", f"plait/{run_id}/integration^{{tree}}")
    assert "- a: task a" in git(repo, "log", "-1", "--format=%B")
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    assert plait(repo, "land", "--squash").stdout.startswith(f"run {run_id} is already on main: nothing to land")


def test_stack_creates_the_stacked_branches_and_leaves_the_users_branch_alone(repo: Path) -> None:
    run_id = completed(repo)
    assert not git(repo, "branch", "--list", f"plait/{run_id}/stack/*")
    before = snapshot(repo)
    done = plait(repo, "land", "--stack")
    assert done.returncode == 0, done.stderr
    assert "created 2 stacked branch(es)" in done.stdout and "your branch was not touched" in done.stdout
    stacked = git(repo, "rev-parse", f"plait/{run_id}/stack/a", f"plait/{run_id}/stack/b").split()
    assert git(repo, "rev-parse", f"{stacked[1]}^") == stacked[0]
    assert git(repo, "rev-parse", f"{stacked[1]}^{{tree}}") == git(repo, "rev-parse", f"plait/{run_id}/b^{{tree}}")
    assert snapshot(repo) == before
    again = plait(repo, "land", "--stack")
    assert f"run {run_id} delivered its stacked branches itself" in again.stdout and snapshot(repo) == before


def staged(repo: Path) -> None:
    (repo / "README.md").write_text("# mine\n")
    git(repo, "add", "README.md")


def unstaged(repo: Path) -> None:
    (repo / "README.md").write_text("# mine\n")


def untracked(repo: Path) -> None:
    (repo / "b.txt").write_text("mine\n")


def ignored(repo: Path) -> None:
    (repo / ".git" / "info" / "exclude").write_text("b.txt\n")
    (repo / "b.txt").write_text("mine\n")


@pytest.mark.parametrize("moved", [False, True], ids=["fast-forward", "merge"])
@pytest.mark.parametrize("dirty", [staged, unstaged, untracked, ignored])
def test_local_changes_in_files_the_result_touches_refuse_and_change_nothing(repo: Path, dirty: Any,
                                                                            moved: bool) -> None:
    run_id = completed(repo)
    if moved:
        user_commit(repo, "mine.txt", "mine\n")
    dirty(repo)
    before = snapshot(repo)
    stage = git(repo, "ls-files", "--stage")
    done = plait(repo, "land", run_id)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("plait: error: your checkout has local changes")
    assert "— commit or stash them" in done.stderr and "Traceback" not in done.stderr
    assert snapshot(repo) == before and git(repo, "ls-files", "--stage") == stage


def test_local_changes_elsewhere_are_kept_exactly(repo: Path) -> None:
    run_id = completed(repo)
    (repo / "other.txt").write_text("staged\n")
    git(repo, "add", "other.txt")
    (repo / "other.txt").write_text("staged, then edited\n")
    (repo / "notes.txt").write_text("untracked\n")
    done = plait(repo, "land")
    assert done.returncode == 0, done.stderr
    assert git(repo, "rev-parse", "HEAD") == git(repo, "rev-parse", f"plait/{run_id}/integration")
    assert git(repo, "status", "--porcelain", "--untracked-files=all").splitlines() == ["MM other.txt", "?? notes.txt"]
    assert git(repo, "show", ":other.txt") == "staged"
    assert (repo / "other.txt").read_text() == "staged, then edited\n"
    assert (repo / "notes.txt").read_text() == "untracked\n" and (repo / "a.txt").read_text() == "a\n"


def test_a_failed_run_is_refused(repo: Path) -> None:
    status, run_id = run_plan(repo, [task("a", {"a.txt": "a\n"}, verify="exit 1")])
    assert status == "failed"
    before = snapshot(repo)
    done = plait(repo, "land", run_id)
    assert done.returncode == 1
    assert done.stderr == (f"plait: error: run {run_id} did not complete (status failed): it has no verified result "
                           f"to land — continue it with `plait resume {run_id}`, or land a completed run\n")
    assert snapshot(repo) == before


def test_detached_head_and_a_merge_in_progress_are_refused(repo: Path) -> None:
    completed(repo)
    (repo / ".git" / "MERGE_HEAD").write_text(git(repo, "rev-parse", "HEAD") + "\n")
    assert "a merge is in progress" in plait(repo, "land").stderr
    (repo / ".git" / "MERGE_HEAD").unlink()
    git(repo, "checkout", "-q", "--detach")
    done = plait(repo, "land")
    assert done.returncode == 1 and done.stderr.startswith("plait: error: HEAD is detached")


def test_clean_branches_removes_that_runs_branches_and_never_a_live_runs(repo: Path) -> None:
    first, live = completed(repo), completed(repo)
    with liveness.RunLock(liveness.lock_path(common_dir(repo), live)):
        done = plait(repo, "clean", "--branches")
    assert done.returncode == 0, done.stderr
    assert f"deleted 3 branch(es): plait/{first}/" in done.stdout and f"kept run {live} (still running)" in done.stdout
    branches = git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/plait/").splitlines()
    assert sorted(branches) == [f"plait/{live}/{name}" for name in ("a", "b", "integration")]
    done = plait(repo, "clean", "--run", live, "--branches")
    assert done.returncode == 0 and not git(repo, "for-each-ref", "refs/heads/plait/")
    assert git(repo, "branch", "--list", "main")


def test_clean_an_unknown_run_is_one_line(repo: Path) -> None:
    done = plait(repo, "clean", "--run", "nosuch")
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert done.stderr.startswith("plait: error: no run 'nosuch' in this repository")


def test_a_conflict_with_the_users_branch_is_refused(repo: Path) -> None:
    run_id = completed(repo)
    user_commit(repo, "README.md", "# mine\n")
    before = snapshot(repo)
    done = plait(repo, "land")
    assert done.returncode == 1
    assert done.stderr == (f"plait: error: plait/{run_id}/integration conflicts with main in README.md — merge it "
                           f"yourself: git merge plait/{run_id}/integration\n")
    assert snapshot(repo) == before
