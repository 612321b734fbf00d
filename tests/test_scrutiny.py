"""Deletion guards and the reading of what an agent did to its own workspace repository."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from plait.run import scrutiny
from runfixtures import make_repo, plait, task, write_plan


def test_mass_deletions_and_plaits_own_files_need_allow_deletions() -> None:
    many = [f"f{i}" for i in range(26)]
    assert scrutiny.deletion_problem(many, 1000, ()) == "deleted 26 of the 1000 files of its base"
    assert scrutiny.deletion_problem(many[:25], 1000, ()) is None
    assert scrutiny.deletion_problem(["a", "b"], 3, ()) == "deleted 2 of the 3 files of its base"
    assert scrutiny.deletion_problem(["a"], 2, ()) is None  # one file of two is an ordinary change
    assert scrutiny.deletion_problem(["plait.toml"], 100, ("plait.toml", "plan.yaml")) == \
        "deleted plait's plan or config: plait.toml"
    assert scrutiny.deletion_problem(["docs/plan.yaml"], 100, ("plait.toml", "docs/plan.yaml")) is not None


def test_the_workspace_repository_is_read_as_files_and_changes_are_named(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    subprocess.run(["git", "init", "-q", "-b", "main", str(tree)], check=True)
    before = scrutiny.repo_state(tree)
    assert before[".git"] == "directory" and before["HEAD"] == "ref: refs/heads/main"
    (tree / ".git" / "refs" / "tags").mkdir(exist_ok=True)
    (tree / ".git" / "refs" / "tags" / "v1").write_text("0" * 40 + "\n")
    (tree / ".git" / "HEAD").write_text("ref: refs/heads/other\n")
    notes = scrutiny.repo_notes(before, scrutiny.repo_state(tree))
    assert any("moved HEAD" in n for n in notes) and any("refs/tags/v1" in n for n in notes)
    os.rename(tree / ".git", tmp_path / "moved")
    (tree / ".git").symlink_to(tmp_path / "moved")
    assert scrutiny.repo_notes(before, scrutiny.repo_state(tree)) == [
        f"the agent's workspace repository changed: .git is now symlink to {tmp_path / 'moved'} "
        "(nothing outside the workspace was affected; plait captured the files)"]


def test_allow_deletions_lets_a_task_remove_what_it_must(tmp_path: Path) -> None:
    files = {f"old/m{i}.py": "x\n" for i in range(4)}
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n", **files})
    cleanup = task("cleanup", allow_deletions=True)
    cleanup["script"] = {"delete": sorted(files)}
    plan = write_plan(repo, [cleanup])
    assert plait(repo, "run", str(plan)).returncode == 0
    blocked = task("cleanup2")
    blocked["script"] = {"delete": sorted(files)}
    done = plait(repo, "run", str(write_plan(repo, [blocked], name="p2.yaml")))
    assert done.returncode == 1 and "allow_deletions" in done.stdout
