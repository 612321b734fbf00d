"""Incremental re-runs (plait.run.reuse): after a fix, a new `plait run` runs only what the fix touched and what
builds on it; every other task takes an earlier run's verified work. Real git, SQLite and the `script` agent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from plait import api
from plait.run.engine import RunOptions
from plait.testing import VirtualClock
from runfixtures import events, git, latest_run, make_repo, plait, task, write_plan

# Ten tasks: a b i are roots; f needs c and d (which need a); g needs f; h needs e (which needs b); j joins g, h.
NEEDS = {"a": [], "b": [], "c": ["a"], "d": ["a"], "e": ["b"], "f": ["c", "d"], "g": ["f"], "h": ["e"], "i": [],
         "j": ["g", "h"]}
ALL = set(NEEDS)


def tasks(**changes: dict[str, Any]) -> list[dict[str, Any]]:
    """The plan's tasks, each writing `<id>.txt` and verifying it, with `changes` applied per task."""
    return [{**task(t, {f"{t}.txt": f"{t}\n"}, needs=needs, verify=f"test -f {t}.txt"), **changes.get(t, {})}
            for t, needs in NEEDS.items()]


def run(repo: Path, plan_tasks: list[dict[str, Any]], **options: Any) -> tuple[str, str]:
    plan = write_plan(repo, plan_tasks, integration={"verify": "test -f j.txt && test -f i.txt"})
    handle, run_id = api.start(plan, RunOptions(jobs=4, **options), cwd=repo)
    return api.execute(handle, run_id, clock=VirtualClock()), run_id


def started(repo: Path, run_id: str) -> set[str]:
    return {e["task"] for e in events(repo, run_id) if e["kind"] == "task.started"}


def reused(repo: Path, run_id: str) -> dict[str, str]:
    return {e["task"]: e["data"]["from_run"] for e in events(repo, run_id) if e["kind"] == "task.reused"}


def test_after_a_fix_only_the_fixed_task_and_its_dependents_run_again(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n"})
    status, first = run(repo, tasks(f={"verify": "test -f nope.txt"}))
    assert status == "failed" and started(repo, first) == ALL - {"g", "j"}  # blocked by f

    plan = write_plan(repo, tasks(), integration={"verify": "test -f j.txt && test -f i.txt"})
    done = plait(repo, "run", str(plan))  # the CLI: its console says what it reused
    assert done.returncode == 0, done.stdout + done.stderr
    second = latest_run(repo)
    assert "reused 7 verified task(s) from run " + first + ": a, b, c, d, e, h, i; running 3" in done.stdout
    assert started(repo, second) == {"f", "g", "j"}
    assert reused(repo, second) == dict.fromkeys(ALL - {"f", "g", "j"}, first)

    doc = api.status(second, cwd=repo)
    assert doc["status"] == "completed" and doc["counts"]["done"] == 10
    by_id = {t["id"]: t for t in doc["tasks"]}
    assert by_id["a"]["reused_from"] == first and by_id["f"]["reused_from"] is None
    assert by_id["a"]["verify"] == {"exit_code": 0, "seconds": by_id["a"]["verify"]["seconds"]}
    assert git(repo, "rev-parse", f"plait/{second}/a") == git(repo, "rev-parse", f"plait/{first}/a")
    assert git(repo, "show", f"plait/{second}/j:a.txt") == "a"  # the dependents started from the reused work
    assert set(doc["metrics"]["reused"]) == ALL - {"f", "g", "j"}
    run_dir = repo / ".plait" / "runs" / second
    assert "reused 7 verified task(s)" in (run_dir / "REPORT.md").read_text()
    assert f"Reused from run `{first}`" in (run_dir / "tasks" / "a" / "EVIDENCE.md").read_text()
    assert (run_dir / "tasks" / "a" / "context.json").is_file()

    done = plait(repo, "run", str(plan), "--fresh")
    fresh = latest_run(repo)
    assert done.returncode == 0 and "reused" not in done.stdout, done.stdout + done.stderr
    assert started(repo, fresh) == ALL and not reused(repo, fresh)


def test_a_change_upstream_at_head_or_a_lost_commit_runs_what_it_touches(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n"})
    status, first = run(repo, tasks())
    assert status == "completed" and started(repo, first) == ALL

    status, prompt = run(repo, tasks(c={"prompt": "do c, differently"}))  # c, then what builds on it
    assert status == "completed" and started(repo, prompt) == {"c", "f", "g", "j"}
    assert set(reused(repo, prompt)) == ALL - {"c", "f", "g", "j"}

    # A task's environment is an input too (docs/environment.md): a new setup command runs h again, and j.
    status, setup = run(repo, tasks(c={"prompt": "do c, differently"}, h={"setup": "true"}))
    assert status == "completed" and started(repo, setup) == {"h", "j"}

    # e's work is gone from every run (its branches deleted): e runs again, and h and j that build on it.
    for ref in git(repo, "for-each-ref", "--format=%(refname)", "refs/heads/plait/").splitlines():
        if ref.endswith("/e"):
            git(repo, "update-ref", "-d", ref)
    status, lost = run(repo, tasks(c={"prompt": "do c, differently"}))
    assert status == "completed" and started(repo, lost) == {"e", "h", "j"}
    assert reused(repo, lost)["c"] == prompt and reused(repo, lost)["a"] == first
    evidence = (repo / ".plait" / "runs" / lost / "tasks" / "a" / "EVIDENCE.md").read_text()
    assert evidence.count("Reused from run") == 1 and f"`{first}`" in evidence  # reused twice, done once

    (repo / "README.md").write_text("y\n")  # a new commit at HEAD: every task's base changed
    git(repo, "commit", "-qam", "change at HEAD")
    status, head = run(repo, tasks(c={"prompt": "do c, differently"}))
    assert status == "completed" and started(repo, head) == ALL and not reused(repo, head)
