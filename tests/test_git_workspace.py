"""plait.git.workspace: an independent repository per attempt that borrows the user's objects, and a
capture that only trusts the work tree's files — whatever the agent did to the workspace's `.git`."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitfixtures import commit_on, files_at, git, snapshot, user_repo
from plait.git import workspace
from plait.git.repo import Git


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Path]:
    yield from user_repo(tmp_path)


def make(g: Git, tmp_path: Path, name: str = "t", base: str | None = None) -> workspace.Workspace:
    base = base or g.resolve_commit("HEAD")
    return workspace.create(g, tmp_path / "ws" / name / "a1", tmp_path / "ws" / name / "home", base, f"plait/r1/{name}")


def in_workspace(ws: workspace.Workspace, *args: str, check: bool = True) -> str:
    """git as the agent runs it: in the work tree, found by discovery, stopped at the attempt's folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["GIT_CEILING_DIRECTORIES"] = str(ws.folder)
    env.update(GIT_AUTHOR_NAME="agent", GIT_AUTHOR_EMAIL="a@x", GIT_COMMITTER_NAME="agent", GIT_COMMITTER_EMAIL="a@x")
    done = subprocess.run(["git", *args], cwd=ws.tree, env=env, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)}: {done.stderr}")
    return done.stdout.strip()


def test_a_workspace_is_its_own_repository_at_the_base_borrowing_the_users_objects(repo: Path,
                                                                                   tmp_path: Path) -> None:
    g = Git.discover(repo)
    base = commit_on(repo, g.resolve_commit("HEAD"), {"lib.py": "x = 1\n"})
    ws = make(g, tmp_path, base=base)
    assert (ws.tree / "lib.py").read_text() == "x = 1\n" and (ws.tree / "README.md").read_text() == "# project\n"
    assert not (ws.tree / "notes.txt").exists()  # the user's untracked file stays the user's
    assert in_workspace(ws, "rev-parse", "--absolute-git-dir") == str(ws.tree / ".git")
    assert in_workspace(ws, "symbolic-ref", "HEAD") == "refs/heads/plait/r1/t"
    assert in_workspace(ws, "rev-parse", "HEAD") == base
    assert in_workspace(ws, "status", "--porcelain") == ""  # its index matches the files
    alternates = (ws.tree / ".git" / "objects" / "info" / "alternates").read_text().strip()
    assert alternates == str(repo / ".git" / "objects")
    assert not any((ws.tree / ".git" / "objects").glob("??/*")), "no object was copied"
    assert "worktrees" not in os.listdir(repo / ".git")  # not a linked worktree
    assert ws.index.is_file() and not ws.index.is_relative_to(ws.tree)


def test_the_agent_may_do_anything_to_its_repository_and_the_user_sees_none_of_it(repo: Path,
                                                                                  tmp_path: Path) -> None:
    g = Git.discover(repo)
    before = snapshot(repo)
    config = (repo / ".git" / "config").read_text()
    ws = make(g, tmp_path)
    (ws.tree / "work.txt").write_text("agent work\n")
    in_workspace(ws, "add", "-A")
    in_workspace(ws, "commit", "-qm", "agent commit")
    in_workspace(ws, "tag", "v9")
    in_workspace(ws, "checkout", "-qb", "other")
    in_workspace(ws, "update-ref", "refs/heads/main", "HEAD")
    in_workspace(ws, "config", "user.name", "Mallory")
    in_workspace(ws, "config", "core.bare", "true")
    (ws.tree / "more.txt").write_text("uncommitted\n")
    in_workspace(ws, "stash", "-u", check=False)
    assert snapshot(repo) == before
    assert (repo / ".git" / "config").read_text() == config
    assert "v9" not in git(repo, "tag")
    # The capture is the file state, on the base, whatever HEAD or branch the agent left.
    captured = workspace.capture(g, ws, "task t")
    assert git(repo, "rev-parse", f"{captured.commit}^") == ws.base
    assert files_at(repo, captured.commit)["work.txt"] == "agent work\n"


@pytest.mark.parametrize("attack", ["delete", "symlink", "reinit", "file"])
def test_whatever_replaces_dot_git_the_capture_is_the_files_and_the_user_is_untouched(
        repo: Path, tmp_path: Path, attack: str) -> None:
    g = Git.discover(repo)
    before = snapshot(repo)
    ws = make(g, tmp_path)
    (ws.tree / "README.md").write_text("changed by the agent\n")
    (ws.tree / "new.txt").write_text("new\n")
    dot_git = ws.tree / ".git"
    shutil.rmtree(dot_git)  # as `python3 -c 'import shutil; shutil.rmtree(".git")'` would
    if attack == "symlink":
        dot_git.symlink_to(repo / ".git")
    elif attack == "reinit":
        subprocess.run(["git", "init", "-q", str(ws.tree)], check=True, capture_output=True)
    elif attack == "file":
        dot_git.write_text(f"gitdir: {repo / '.git'}\n")
    captured = workspace.capture(g, ws, "task t")
    assert files_at(repo, captured.commit) == {"README.md": "changed by the agent\n", "new.txt": "new\n",
                                               "src/app.py": "print('hi')\n"}
    assert sorted(captured.changed) == [("A", "new.txt"), ("M", "README.md")]
    assert git(repo, "rev-parse", f"{captured.commit}^") == ws.base
    assert snapshot(repo) == before


def test_capture_keeps_symlinks_as_symlinks_and_skips_nothing(repo: Path, tmp_path: Path) -> None:
    g = Git.discover(repo)
    ws = make(g, tmp_path)
    (ws.tree / "to-user-file").symlink_to(repo / "notes.txt")
    (ws.tree / "src").rename(ws.tree / "lib")
    (ws.tree / "src").symlink_to(repo / "src")  # a directory replaced by a symlink out of the workspace
    captured = workspace.capture(g, ws, "task t")
    entries = git(repo, "ls-tree", "-r", captured.commit)
    assert f"120000 blob {git(repo, 'hash-object', '--stdin', input=str(repo / 'notes.txt'))}\tto-user-file" \
        in entries
    assert "\tsrc\n" in entries + "\n" and "src/app.py" not in entries  # never followed
    assert "lib/app.py" in entries


def test_nothing_changed_captures_the_base_and_user_hooks_never_run(repo: Path, tmp_path: Path) -> None:
    g = Git.discover(repo)
    hook = repo / ".git" / "hooks" / "post-commit"
    hook.write_text(f"#!/bin/sh\ntouch {tmp_path / 'hook-ran'}\n")
    hook.chmod(0o755)
    ws = make(g, tmp_path)
    assert workspace.capture(g, ws, "nothing") == workspace.Capture(ws.base, [])
    (ws.tree / "x.txt").write_text("x\n")
    captured = workspace.capture(g, ws, "task t: x")
    assert git(repo, "log", "-1", "--format=%an <%ae>|%s", captured.commit) == "plait <plait@localhost>|task t: x"
    assert not (tmp_path / "hook-ran").exists()


def test_a_work_tree_that_was_removed_or_replaced_is_reported_not_captured(repo: Path, tmp_path: Path) -> None:
    g = Git.discover(repo)
    ws = make(g, tmp_path)
    shutil.rmtree(ws.tree)
    ws.tree.symlink_to(repo)
    with pytest.raises(workspace.WorkspaceGone):
        workspace.capture(g, ws, "task t")


def test_remove_never_follows_a_symlink_and_copes_with_locked_folders(repo: Path, tmp_path: Path) -> None:
    g = Git.discover(repo)
    before = snapshot(repo)
    ws = make(g, tmp_path)
    (ws.tree / "link-to-repo").symlink_to(repo)
    locked = ws.tree / "locked" / "deeper"
    locked.mkdir(parents=True)
    (locked / "f").write_text("x")
    locked.chmod(0)
    (ws.tree / "locked").chmod(0o500)
    workspace.remove(ws.folder)
    assert not ws.folder.exists()
    assert snapshot(repo) == before
    workspace.remove(ws.folder)  # already gone is fine


def test_a_new_workspace_at_a_used_path_starts_empty(repo: Path, tmp_path: Path) -> None:
    g = Git.discover(repo)
    ws = make(g, tmp_path)
    (ws.tree / "left-over.txt").write_text("from an earlier attempt\n")
    again = make(g, tmp_path)
    assert not (again.tree / "left-over.txt").exists()


def test_sixteen_workspaces_made_and_captured_at_once_never_fail(repo: Path, tmp_path: Path) -> None:
    """No shared admin state: creation needs no lock, and captures write only objects."""
    g = Git.discover(repo)
    errors: list[BaseException] = []
    commits: dict[str, str] = {}
    barrier = threading.Barrier(16)

    def one(name: str) -> None:
        try:
            barrier.wait()
            ws = make(g, tmp_path, name)
            (ws.tree / f"{name}.txt").write_text(name)
            commits[name] = workspace.capture(g, ws, name).commit
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(f"t{i}",)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all(files_at(repo, sha)[f"{name}.txt"] == name for name, sha in commits.items())
