"""Crash safety: SIGKILL `plait run` at several points; `plait resume` finishes with the same tree and
never re-runs a verified task."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runfixtures import events, git, latest_run, make_repo, plait, task, write_plan

TASKS = [
    task("a", {"a.txt": "a\n"}, delay="0.4s"),
    task("b", {"b.txt": "b\n"}, needs=["a"], delay="0.4s"),
    task("c", {"c.txt": "c\n"}, needs=["a"], delay="0.4s"),
    task("d", {"d.txt": "d\n"}, needs=["b", "c"], delay="0.4s"),
    task("e", {"e.txt": "e\n"}, delay="0.4s"),
]
EXPECTED = {"README.md", "a.txt", "b.txt", "c.txt", "d.txt", "e.txt"}


def kill_when(repo: Path, plan: Path, kind: str, count: int) -> str:
    """Start `plait run` and SIGKILL it once `count` events of `kind` are in the log."""
    proc = subprocess.Popen([sys.executable, "-m", "plait", "run", str(plan), "--jobs", "2"], cwd=repo,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    run_id = ""
    try:
        while time.monotonic() < deadline:
            try:
                run_id = latest_run(repo)
                if sum(1 for e in events(repo, run_id) if e["kind"] == kind) >= count:
                    break
            except Exception:
                pass
            if proc.poll() is not None:
                pytest.fail(f"plait run ended before {count} {kind} events")
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return run_id


@pytest.mark.parametrize(("kind", "count"), [
    ("task.started", 1),   # while the first agents work
    ("task.captured", 2),  # between capture and verify
    ("task.done", 3),      # mid-run, some tasks verified
    ("task.done", 5),      # during integration
])
def test_sigkill_then_resume_finishes_without_rerunning_verified_tasks(tmp_path: Path, kind: str,
                                                                        count: int) -> None:
    repo = make_repo(tmp_path / "repo")
    plan = write_plan(repo, TASKS, integration={"verify": "test -f d.txt && test -f e.txt"})
    run_id = kill_when(repo, plan, kind, count)
    verified_before = {e["task"]: e["data"]["commit"] for e in events(repo, run_id) if e["kind"] == "task.done"}

    status = json.loads(plait(repo, "status", run_id, "--json").stdout)
    assert status["status"] in ("interrupted", "running")

    done = plait(repo, "resume", run_id, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    evts = events(repo, run_id)
    resumed_at = max(i for i, e in enumerate(evts) if e["kind"] == "run.started")
    rerun = {e["task"] for e in evts[resumed_at:] if e["kind"] == "task.started"}
    assert not rerun & set(verified_before), f"re-ran verified tasks {rerun & set(verified_before)}"
    names = set(git(repo, "ls-tree", "-r", "--name-only", f"plait/{run_id}/integration").splitlines())
    assert names == EXPECTED
    for tid, commit in verified_before.items():
        assert git(repo, "rev-parse", f"plait/{run_id}/{tid}") == commit
    # No stale worktrees of unfinished attempts are left registered twice.
    assert "prunable" not in git(repo, "worktree", "list", "--porcelain")
