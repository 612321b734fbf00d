"""What a new user meets first: help, defaults to the latest run, `check` refusing what `run` would refuse,
output that never wraps paths in logs and pipes, event lines in words, an interrupted run that says how to
go on, plait's own log per run, the credentials a profile needs, `plait runs` and `plait logs`."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from plait import api
from plait.agents.base import ErrorKind
from plait.commands.logs import readable
from plait.commands.progress import describe
from plait.run.engine import RunOptions
from plait.state import EventKind
from plait.testing import FakeAgent, VirtualClock
from plait.testing.fake import failure
from plait.text import printable
from runfixtures import latest_run, make_repo, plait, task, write_plan

DEADLINE = 180.0


def test_bare_plait_and_plait_help_show_the_help_and_exit_0(tmp_path: Path) -> None:
    bare = plait(tmp_path)
    assert bare.returncode == 0 and bare.stdout.startswith("Usage: plait") and "run" in bare.stdout
    assert bare.stderr == ""
    helped = plait(tmp_path, "help")
    assert helped.returncode == 0 and helped.stdout == bare.stdout
    one = plait(tmp_path, "help", "runs")
    assert one.returncode == 0 and one.stdout.startswith("Usage: plait runs")
    nosuch = plait(tmp_path, "help", "nosuch")
    assert nosuch.returncode == 1 and nosuch.stderr.strip() == (
        "plait: error: no command 'nosuch' — see `plait help` for the commands")


def test_cancel_and_resume_default_to_the_latest_run(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n"})
    plan = write_plan(repo, [task("a", {"a.txt": "a\n"}, verify="false")], defaults={"agent": "script", "retries": 0})
    failed = plait(repo, "run", str(plan))
    assert failed.returncode == 1
    run_id = latest_run(repo)
    cancelled = plait(repo, "cancel")
    assert cancelled.returncode == 1 and f"run {run_id} is not running" in cancelled.stderr
    plan.write_text(plan.read_text().replace("verify: 'false'", "verify: 'true'"))
    resumed = plait(repo, "resume")  # the plan is frozen at the run's start: the same failure, same run
    assert resumed.returncode == 1 and f"plait resume {run_id}" in resumed.stdout


def test_check_refuses_an_unknown_profile_and_a_broken_plait_toml_like_run(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n"})
    plan = write_plan(repo, [task("a", {"a.txt": "a\n"}, agent="nobody")])
    done = plait(repo, "check", str(plan))
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert "task a: unknown agent profile 'nobody' — define [profiles.nobody] in plait.toml" in line
    doc = json.loads(plait(repo, "check", "--json", str(plan)).stdout)
    assert doc["valid"] is False and "unknown agent profile" in doc["errors"][0]["message"]
    (repo / "plait.toml").write_text('[profiles.nobody]\nadapter = "claud"\n')
    broken = plait(repo, "check", str(plan))
    assert broken.returncode == 1 and "'claud' is not an adapter" in broken.stderr


def test_paths_are_never_wrapped_when_not_on_a_terminal(tmp_path: Path) -> None:
    deep = tmp_path / ("a-very-long-folder-name-" * 4) / ("and-another-long-one-" * 4)
    repo = make_repo(deep / "repo", {"README.md": "x\n"})
    plan = write_plan(repo, [task("a", {"a.txt": "a\n"})], name="plan-with-a-long-name.yaml",
                      defaults={"agent": "script"})
    done = plait(repo, "run", str(plan))
    assert done.returncode == 0
    run_dir = repo / ".plait" / "runs" / latest_run(repo)
    assert f"  report: {run_dir / 'REPORT.md'}" in done.stdout.splitlines()
    checked = plait(repo, "check", str(plan))
    assert any(str(plan) in line for line in checked.stdout.splitlines())


def test_every_event_is_told_in_words() -> None:
    for kind in EventKind:
        line = describe(str(kind), "t", {"x": 1, "by": "u", "was": "running", "why": "budget"})
        assert kind == EventKind.DELIVERED or str(kind) not in line, line
        assert "=" not in line, line


def working(repo: Path) -> bool:
    """Whether the latest run's task a has its agent's command running (it opened its output file)."""
    try:
        run_id = latest_run(repo)
    except (TypeError, sqlite3.OperationalError):
        return False
    return (repo / ".plait" / "runs" / run_id / "tasks" / "a" / "logs" / "attempt-1" / "agent.stdout").exists()


def test_an_interrupted_run_says_how_to_resume_and_its_tasks_show_interrupted(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n"})
    body = task("a", {"a.txt": "a\n"})
    body["script"]["run"] = [f"while [ ! -f {gate} ]; do sleep 0.05; done"]
    plan = write_plan(repo, [body], defaults={"agent": "script"})
    proc = subprocess.Popen([sys.executable, "-m", "plait", "run", str(plan)], cwd=repo, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + DEADLINE
    while True:  # until task a's agent is working (the event), then Ctrl-C
        if working(repo):
            break
        assert time.monotonic() < deadline and proc.poll() is None, "the run did not start"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=DEADLINE)
    run_id = latest_run(repo)
    assert proc.returncode == 130
    assert f"continue it with: plait resume {run_id}" in out
    doc = json.loads(plait(repo, "status", run_id, "--json").stdout)
    assert doc["status"] == "interrupted" and doc["tasks"][0]["state"] == "interrupted"
    assert doc["counts"]["interrupted"] == 1 and doc["counts"]["running"] == 0
    log = (repo / ".plait" / "runs" / run_id / "plait.log").read_text()
    assert "stopping pid" in log, "plait's own decisions are in the run's plait.log"
    assert "WARNING plait." not in out + err


def test_missing_credentials_name_the_variable_the_profile_needs(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n"})
    plan = write_plan(repo, [task("a", {"a.txt": "a\n"})], defaults={"agent": "claude", "retries": 0})
    fake = FakeAgent({"a": [failure(ErrorKind.AUTH, "Invalid API key · Please run /login")]})
    handle, run_id = api.start(plan, RunOptions(jobs=1), cwd=repo)
    assert api.execute(handle, run_id, make_agent=lambda p: fake, clock=VirtualClock()) == "failed"
    (row,) = api.status(run_id, cwd=repo)["failed_tasks"]
    assert "no working credentials" in row["error"] and "set ANTHROPIC_API_KEY" in row["error"]


def test_plait_runs_lists_the_runs(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n"})
    assert "no runs yet" in plait(repo, "runs").stdout
    plan = write_plan(repo, [task("a", {"a.txt": "a\n"}), task("b", {"b.txt": "b\n"})], defaults={"agent": "script"})
    assert plait(repo, "run", str(plan)).returncode == 0
    run_id = latest_run(repo)
    (found,) = json.loads(plait(repo, "runs", "--json").stdout)
    assert found["run_id"] == run_id and found["status"] == "completed" and (found["done"], found["tasks"]) == (2, 2)
    table = plait(repo, "runs").stdout
    assert run_id in table and "completed" in table and "2/2" in table


def test_agent_logs_read_as_text() -> None:
    claude = [json.dumps({"type": "assistant", "message": {"content": [
                 {"type": "text", "text": "Writing it."},
                 {"type": "tool_use", "name": "Write", "input": {"file_path": "a.txt", "content": "a"}}]}}),
              json.dumps({"type": "user", "message": {"content": [
                  {"type": "tool_result", "content": "File created", "is_error": False}]}}),
              json.dumps({"type": "result", "subtype": "success", "result": "Done."})]
    codex = [json.dumps({"type": "item.completed", "item": {"type": "command_execution", "command": "ls",
                                                            "exit_code": 0}}),
             json.dumps({"type": "item.completed", "item": {"type": "agent_message", "text": "All good."}}),
             json.dumps({"type": "turn.completed", "usage": {}})]
    assert list(readable(claude)) == ['Writing it.', '→ Write {"file_path": "a.txt", "content": "a"}',
                                      "← File created", "result (success): Done."]
    assert list(readable(codex)) == ["→ $ ls (exit 0)", "All good."]
    assert list(readable(["plain \x1b[31mtext"])) == [printable("plain \x1b[31mtext")] != ["plain \x1b[31mtext"]


def test_plait_logs_shows_a_task_and_refuses_an_unknown_one(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n"})
    plan = write_plan(repo, [task("a", {"a.txt": "a\n"})], defaults={"agent": "script"})
    assert plait(repo, "run", str(plan)).returncode == 0
    shown = plait(repo, "logs", latest_run(repo), "a")
    assert shown.returncode == 0 and "── a ──" in shown.stdout
    nosuch = plait(repo, "logs", latest_run(repo), "nosuch")
    assert nosuch.returncode == 1 and "has no task 'nosuch'" in nosuch.stderr
