"""plait.git.workspace: task worktrees, their reuse and clean failure, and concurrent creation."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitfixtures import commit_on, git, user_repo
from plait.git import workspace
from plait.git.repo import Git, GitError


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Path]:
    yield from user_repo(tmp_path)


def wt_dir(repo: Path, name: str) -> Path:
    return repo / ".plait" / "worktrees" / "r1" / name


def test_add_checks_out_the_base_commit_on_a_new_branch(repo: Path) -> None:
    g = Git.discover(repo)
    base = commit_on(repo, g.resolve_commit("HEAD"), {"lib.py": "x = 1\n"})
    path = workspace.add_worktree(g, wt_dir(repo, "a"), "plait/r1/a", base)
    assert path == wt_dir(repo, "a")
    assert (path / "lib.py").read_text() == "x = 1\n" and (path / "README.md").read_text() == "# project\n"
    assert not (path / "notes.txt").exists()  # the user's untracked file stays the user's
    assert g.head_branch(path) == "plait/r1/a" and g.rev_parse("HEAD", cwd=path) == base
    assert "branch.plait" not in git(repo, "config", "--list")  # --no-track: no upstream config written
    info = workspace.find_worktree(g, path)
    assert info is not None and info.branch == "plait/r1/a" and info.head == base and not info.prunable
    assert workspace.list_worktrees(g)[0].path == repo


def test_add_is_idempotent_and_reuses_a_branch_left_at_the_base(repo: Path) -> None:
    g = Git.discover(repo)
    base = g.resolve_commit("HEAD")
    path = workspace.add_worktree(g, wt_dir(repo, "a"), "plait/r1/a", base)
    (path / "scratch.txt").write_text("agent work in progress\n")
    assert workspace.add_worktree(g, path, "plait/r1/a", base) == path
    assert (path / "scratch.txt").exists()  # same worktree, untouched
    workspace.remove_worktree(g, path)
    assert not path.exists() and g.rev_parse("refs/heads/plait/r1/a") == base
    workspace.add_worktree(g, path, "plait/r1/a", base)  # resume: the branch is reused
    assert g.head_branch(path) == "plait/r1/a"


def test_a_branch_at_another_commit_is_a_clear_error_and_nothing_is_left(repo: Path) -> None:
    g = Git.discover(repo)
    base = g.resolve_commit("HEAD")
    elsewhere = commit_on(repo, base, {"x": "1"}, branch="plait/r1/a")
    before = workspace.list_worktrees(g)
    with pytest.raises(GitError) as info:
        workspace.add_worktree(g, wt_dir(repo, "a"), "plait/r1/a", base)
    assert f"branch plait/r1/a already exists at {elsewhere[:12]}" in info.value.message
    assert "git branch -D plait/r1/a" in info.value.fix
    assert not wt_dir(repo, "a").exists() and workspace.list_worktrees(g) == before
    assert g.rev_parse("refs/heads/plait/r1/a") == elsewhere


def test_a_worktree_on_another_branch_at_the_path_is_an_error(repo: Path) -> None:
    g = Git.discover(repo)
    base = g.resolve_commit("HEAD")
    workspace.add_worktree(g, wt_dir(repo, "a"), "plait/r1/a", base)
    with pytest.raises(GitError) as info:
        workspace.add_worktree(g, wt_dir(repo, "a"), "plait/r1/b", base)
    assert "already a worktree, on plait/r1/a" in info.value.message
    assert not g.branch_exists("plait/r1/b")


def test_a_failed_add_removes_the_branch_git_made_first(repo: Path) -> None:
    g = Git.discover(repo)
    base = g.resolve_commit("HEAD")
    blocker = repo / ".git" / "worktrees"
    blocker.write_text("")  # git creates the branch, then cannot make the worktree's admin dir
    try:
        with pytest.raises(GitError) as info:
            workspace.add_worktree(g, wt_dir(repo, "a"), "plait/r1/a", base)
        assert "worktree add" in info.value.message and info.value.returncode == 128
        assert not g.branch_exists("plait/r1/a") and not wt_dir(repo, "a").exists()
    finally:
        blocker.unlink()
    workspace.add_worktree(g, wt_dir(repo, "a"), "plait/r1/a", base)  # a retry just works


def test_an_occupied_path_is_refused_and_left_alone(repo: Path) -> None:
    g = Git.discover(repo)
    path = wt_dir(repo, "a")
    path.mkdir(parents=True)
    (path / "precious.txt").write_text("mine\n")
    with pytest.raises(GitError) as info:
        workspace.add_worktree(g, path, "plait/r1/a", g.resolve_commit("HEAD"))
    assert "already exists" in info.value.message and f"remove {path}" in info.value.fix
    assert (path / "precious.txt").read_text() == "mine\n" and not g.branch_exists("plait/r1/a")
    workspace.remove_worktree(g, path)  # not a worktree of ours: stays
    assert (path / "precious.txt").exists()


def test_remove_tolerates_whatever_is_already_gone(repo: Path) -> None:
    g = Git.discover(repo)
    base = g.resolve_commit("HEAD")
    workspace.remove_worktree(g, wt_dir(repo, "never"))
    deleted = workspace.add_worktree(g, wt_dir(repo, "deleted"), "plait/r1/deleted", base)
    subprocess.run(["rm", "-rf", str(deleted)], check=True)
    info = workspace.find_worktree(g, deleted)
    assert info is not None and info.prunable
    workspace.remove_worktree(g, deleted)
    assert workspace.find_worktree(g, deleted) is None
    # A dead worktree: git forgot it (its admin dir is gone) but its directory is still there.
    dead = workspace.add_worktree(g, wt_dir(repo, "dead"), "plait/r1/dead", base)
    subprocess.run(["rm", "-rf", str(repo / ".git" / "worktrees" / "dead")], check=True)
    workspace.prune(g)
    assert workspace.find_worktree(g, dead) is None and dead.exists()
    workspace.remove_worktree(g, dead)
    assert not dead.exists()
    # A dirty, locked worktree goes too (force).
    busy = workspace.add_worktree(g, wt_dir(repo, "busy"), "plait/r1/busy", base)
    (busy / "README.md").write_text("edited\n")
    git(repo, "worktree", "lock", str(busy))
    workspace.remove_worktree(g, busy)
    assert not busy.exists() and workspace.find_worktree(g, busy) is None


# -- concurrency: 8 at a time, many rounds, zero failures -----------------------------------------

WORKER = """
import json, sys, time
from pathlib import Path
from plait.git import workspace
from plait.git.repo import Git
repo, tag, count, base = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
git = Git.discover(repo)
print("ready", flush=True)
sys.stdin.readline()
spans = []
for i in range(count):
    start = time.time()
    name = f"{tag}-{i}"
    workspace.add_worktree(git, repo / ".plait" / "worktrees" / "race" / name, f"plait/race/{name}", base)
    spans.append((start, time.time()))
print(json.dumps(spans), flush=True)
"""


def race_dir(repo: Path, name: str) -> Path:
    return repo / ".plait" / "worktrees" / "race" / name


def assert_all_created(g: Git, repo: Path, names: list[str], base: str) -> None:
    found = {w.path: w for w in workspace.list_worktrees(g)}
    for name in names:
        path = race_dir(repo, name)
        info = found[path]
        assert info.branch == f"plait/race/{name}" and info.head == base and not info.prunable
        assert (path / "src" / "app.py").read_text() == "print('hi')\n"
    assert len(found) == len(names) + 1


def test_eight_threads_at_a_time_for_ten_rounds_never_fail(repo: Path) -> None:
    g = Git.discover(repo)
    base = g.resolve_commit("HEAD")
    threads_per_round, rounds = 8, 10
    errors: list[BaseException] = []
    names = [f"t{r}-{i}" for r in range(rounds) for i in range(threads_per_round)]

    def add(name: str, barrier: threading.Barrier) -> None:
        barrier.wait()
        try:
            workspace.add_worktree(g, race_dir(repo, name), f"plait/race/{name}", base)
        except BaseException as exc:
            errors.append(exc)

    for r in range(rounds):
        barrier = threading.Barrier(threads_per_round)
        batch = [threading.Thread(target=add, args=(f"t{r}-{i}", barrier)) for i in range(threads_per_round)]
        for t in batch:
            t.start()
        for t in batch:
            t.join()
    assert errors == []
    assert_all_created(g, repo, names, base)

    def remove(name: str) -> None:
        try:
            workspace.remove_worktree(g, race_dir(repo, name))
        except BaseException as exc:
            errors.append(exc)

    removers = [threading.Thread(target=remove, args=(n,)) for n in names]
    for t in removers:
        t.start()
    for t in removers:
        t.join()
    assert errors == [] and len(workspace.list_worktrees(g)) == 1


def test_eight_processes_creating_worktrees_together_never_fail(repo: Path) -> None:
    g = Git.discover(repo)
    base = g.resolve_commit("HEAD")
    procs, each = 8, 10
    children = [subprocess.Popen([sys.executable, "-c", WORKER, str(repo), f"p{n}", str(each), base],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True) for n in range(procs)]
    for child in children:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
    started = time.time()
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    results = [child.communicate(timeout=300) for child in children]
    assert [(c.returncode, err) for c, (_, err) in zip(children, results, strict=True)] == [(0, "")] * procs
    spans = [json.loads(out) for out, _ in results]
    # They really raced: every process was adding while another one was adding too.
    windows = [(s[0][0], s[-1][1]) for s in spans]
    assert all(started <= w[0] for w in windows)
    assert all(any(o is not w and o[0] < w[1] and w[0] < o[1] for o in windows) for w in windows)
    assert_all_created(g, repo, [f"p{n}-{i}" for n in range(procs) for i in range(each)], base)
