"""`plait run --rehearse` with the real Claude Code binary against the scripted model server, and
`--max-cost` stopping the schedule once the agents' reported cost is spent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runfixtures import (
    events,
    git,
    latest_run,
    make_repo,
    overlaps,
    plait,
    require_cli,
    snapshot,
    spans,
    task,
    write_plan,
)


def cli_repo(tmp_path: Path, cli: str = "claude") -> Path:
    binary = require_cli(cli)
    toml = f'[profiles.{cli}]\nadapter = "{cli}"\nbinary = "{binary}"\n'
    return make_repo(tmp_path / "repo", {"README.md": "x\n", "plait.toml": toml})


def failure_details(repo: Path, run_id: str) -> str:
    """The agents' own output, for a failure message worth reading."""
    out = []
    for log in sorted((repo / ".plait" / "runs" / run_id / "tasks").glob("*/logs/*/agent*")):
        out.append(f"--- {log.relative_to(repo)}\n{log.read_text(errors='replace')[-2000:]}")
    return "\n".join(out)


@pytest.mark.parametrize("cli", ["claude", "codex", "gemini", "opencode", "aider"])
def test_each_real_cli_completes_a_task_under_plait_run(tmp_path: Path, cli: str) -> None:
    """The real binary edits files in its worktree; plait captures, verifies and integrates them."""
    repo = cli_repo(tmp_path, cli)
    before = snapshot(repo)
    plan = write_plan(repo, [
        task("new", {"notes/new.txt": "written by the agent\n"}, verify="grep -q 'written by the agent' notes/new.txt"),
        {"id": "edit", "title": "edit the readme", "prompt": "Change x to y in README.md", "files": ["README.md"],
         "script": {"replace": {"README.md": {"x": "y"}}}, "verify": "grep -q y README.md"},
    ], defaults={"agent": cli, "timeout": "3m"}, integration={"verify": "test -f notes/new.txt && grep -q y README.md"})
    done = plait(repo, "run", str(plan), "--jobs", "2", "--rehearse", timeout=400)
    run_id = latest_run(repo)
    assert done.returncode == 0, done.stdout + done.stderr + failure_details(repo, run_id)
    assert git(repo, "show", f"plait/{run_id}/integration:notes/new.txt") == "written by the agent"
    assert git(repo, "show", f"plait/{run_id}/integration:README.md") == "y"
    status = json.loads(plait(repo, "status", run_id, "--json").stdout)
    assert {t["state"] for t in status["tasks"]} == {"done"}
    assert snapshot(repo) == before, "the user's checkout, index, config and refs are untouched"


def test_rehearsal_runs_real_claude_code_through_the_whole_pipeline(tmp_path: Path) -> None:
    repo = cli_repo(tmp_path)
    plan = write_plan(repo, [
        task("a", {"a.txt": "alpha\n"}, verify="grep -q alpha a.txt"),
        task("b", {"b.txt": "beta\n"}, verify="grep -q beta b.txt"),
        task("c", {"c.txt": "gamma\n"}, needs=["a", "b"], verify="test -f a.txt && test -f b.txt"),
    ], defaults={"agent": "claude"}, integration={"verify": "test -f c.txt"})
    done = plait(repo, "run", str(plan), "--jobs", "2", "--rehearse", "--rehearse-latency", "0.5", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = latest_run(repo)
    names = set(git(repo, "ls-tree", "-r", "--name-only", f"plait/{run_id}/integration").splitlines())
    assert {"a.txt", "b.txt", "c.txt"} <= names
    s = spans(events(repo, run_id))
    assert overlaps(s["a"], s["b"])
    status = json.loads(plait(repo, "status", run_id, "--json").stdout)
    assert all(t["cost_usd"] for t in status["tasks"]), "Claude Code reports a cost per task"
    assert status["metrics"]["cost_usd"] > 0
    agent_log = repo / ".plait" / "runs" / run_id / "tasks" / "a" / "logs" / "attempt-1" / "agent.jsonl"
    assert '"type":"result"' in agent_log.read_text().replace(" ", "")


def test_max_cost_stops_new_tasks_and_lets_running_ones_finish(tmp_path: Path) -> None:
    repo = cli_repo(tmp_path)
    plan = write_plan(repo, [task(f"t{i}", {f"t{i}.txt": "x\n"}) for i in range(4)], defaults={"agent": "claude"})
    done = plait(repo, "run", str(plan), "--jobs", "1", "--rehearse", "--max-cost", "0.000001", timeout=300)
    assert done.returncode == 1
    run_id = latest_run(repo)
    evts = events(repo, run_id)
    budget = [e for e in evts if e["kind"] == "run.budget_spent"]
    assert len(budget) == 1 and budget[0]["data"]["not_started"] == ["t1", "t2", "t3"]
    assert [e["task"] for e in evts if e["kind"] == "task.done"] == ["t0"]
    assert "budget" in done.stdout + done.stderr or "max-cost" in done.stdout + done.stderr
