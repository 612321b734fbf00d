"""`plait run --detach` / `plait resume --detach`: a runner process in its own session runs the run;
status, cancel and resume find it through the run's lock. Real processes throughout; every wait is
for an event (a status, a lock), with a generous outer deadline."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hostile import wait_gone
from plait.run import liveness
from runfixtures import common_dir, git, make_repo, plait, task, write_plan

DEADLINE = 120.0
STARTED = re.compile(r"run (\w+) started in the background \(pid (\d+)\); follow it: plait status \1; "
                     r"stop it: plait cancel \1")
EXPECTED = {"README.md", "a.txt", "b.txt"}


def gated_plan(repo: Path, go: Path) -> Path:
    """Task a works until the test creates `go` (an event, not a delay); b needs a."""
    first = task("a", {"a.txt": "a\n"})
    first["script"]["run"] = [f"while [ ! -f {go} ]; do sleep 0.05; done"]
    return write_plan(repo, [first, task("b", {"b.txt": "b\n"}, needs=["a"])])


def started(done: Any) -> tuple[str, int]:
    """The run and runner pid from `--detach`'s output: its one and only stdout line."""
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stdout.splitlines()
    match = STARTED.fullmatch(lines[0]) if len(lines) == 1 else None
    assert match, f"expected one start line on stdout, got {done.stdout!r}"
    return match.group(1), int(match.group(2))


def status(repo: Path, run_id: str) -> dict[str, Any]:
    done = plait(repo, "status", run_id, "--json")
    assert done.returncode == 0, done.stderr
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


def wait_status(repo: Path, run_id: str, want: str) -> dict[str, Any]:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        doc = status(repo, run_id)
        if doc["status"] == want:
            return doc
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} not {want} after {DEADLINE:.0f}s: {doc['status']}, tasks {doc['counts']}")


def lock(repo: Path, run_id: str) -> Path:
    return liveness.lock_path(common_dir(repo), run_id)


def wait_unlocked(repo: Path, run_id: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while liveness.held(lock(repo, run_id)):
        assert time.monotonic() < deadline, f"run {run_id}'s runner still holds its lock"
        time.sleep(0.05)


def integrated(repo: Path, run_id: str) -> dict[str, str]:
    branch = f"plait/{run_id}/integration"
    return {name: git(repo, "show", f"{branch}:{name}")
            for name in git(repo, "ls-tree", "-r", "--name-only", branch).splitlines()}


@pytest.fixture
def gated(tmp_path: Path) -> Iterator[tuple[Path, Path, Path]]:
    """A repository, a gated plan and its gate; at the end the gate opens and no runner outlives the test."""
    repo = make_repo(tmp_path / "repo")
    go = tmp_path / "go"
    yield repo, gated_plan(repo, go), go
    go.touch()
    for path in (common_dir(repo) / "plait" / "runs").glob("*.lock"):
        pid = liveness.holder(path)
        if liveness.held(path) and pid:
            os.killpg(pid, signal.SIGKILL)  # a runner is its session's (and group's) leader


def test_detached_run_returns_while_running_in_its_own_session_and_completes(
        gated: tuple[Path, Path, Path]) -> None:
    repo, plan, go = gated
    # capture_output: `plait` returning at all shows the runner holds none of the caller's pipes.
    run_id, pid = started(plait(repo, "run", str(plan), "--detach", "--jobs", "2"))
    assert os.getsid(pid) == pid != os.getsid(0), "the runner must lead its own session"
    assert liveness.holder(lock(repo, run_id)) == pid
    doc = status(repo, run_id)  # "started" means recorded running, with its lock held: no wait needed
    assert doc["status"] == "running" and doc["jobs"] == 2
    go.touch()
    doc = wait_status(repo, run_id, "completed")
    assert set(integrated(repo, run_id)) == EXPECTED
    log = (repo / ".plait" / "runs" / run_id / "runner.log").read_text()
    assert "run started (process" in log and f"run {run_id} completed" in log  # progress went there, not to stdout
    again = plait(repo, "resume", run_id, "--detach")
    assert again.returncode == 1 and again.stdout == ""
    assert again.stderr.splitlines() == [f"plait: error: run {run_id} already completed — start a new run "
                                         "with `plait run PLAN`"]


def test_cancel_reaches_a_detached_run_and_a_live_run_refuses_a_second_runner(
        gated: tuple[Path, Path, Path]) -> None:
    repo, plan, _go = gated
    run_id, pid = started(plait(repo, "run", str(plan), "--detach"))
    second = plait(repo, "resume", run_id, "--detach")  # its runner cannot take the lock: its error comes back
    assert second.returncode == 1 and second.stdout == ""
    assert second.stderr.splitlines() == [f"plait: error: run {run_id} is still running (pid {pid}) — wait for "
                                          f"it, or stop it with `plait cancel {run_id}`"]
    done = plait(repo, "cancel", run_id)
    assert done.returncode == 0, done.stderr
    doc = wait_status(repo, run_id, "cancelled")
    assert {t["id"]: t["state"] for t in doc["tasks"]}["b"] in ("cancelled", "blocked")
    wait_unlocked(repo, run_id)  # the runner ended by itself


def test_sigkilled_runner_leaves_an_interrupted_run_that_resume_detach_completes(
        gated: tuple[Path, Path, Path]) -> None:
    repo, plan, go = gated
    run_id, pid = started(plait(repo, "run", str(plan), "--detach"))
    os.kill(pid, signal.SIGKILL)
    wait_status(repo, run_id, "interrupted")
    go.touch()
    resumed, new_pid = started(plait(repo, "resume", run_id, "--detach"))
    assert resumed == run_id and new_pid != pid
    wait_status(repo, run_id, "completed")
    assert integrated(repo, run_id) == {"README.md": "# project", "a.txt": "a", "b.txt": "b"}


def test_the_runner_log_keeps_no_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "hunter2-correct-horse-battery"
    monkeypatch.setenv("DEPLOY_TOKEN", secret)  # the runner inherits it: a secret by its name
    repo = make_repo(tmp_path / "repo")
    leaky = task("a", {"a.txt": "a\n"})
    leaky["script"]["run"] = [f"echo {secret} >&2; exit 3"]  # the failure's message quotes it
    run_id, pid = started(plait(repo, "run", str(write_plan(repo, [leaky])), "--detach"))
    assert wait_gone([pid], timeout=DEADLINE) == [], "the runner did not end"
    log = (repo / ".plait" / "runs" / run_id / "runner.log").read_text()
    assert "exited 3" in log and secret not in log
    assert status(repo, run_id)["status"] == "failed"


@pytest.mark.parametrize("bad", ["missing", "unknown profile"])
def test_bad_plan_with_detach_is_one_line_and_starts_nothing(tmp_path: Path, bad: str) -> None:
    repo = make_repo(tmp_path / "repo")
    plan = tmp_path / "missing.yaml" if bad == "missing" else write_plan(repo, [task("a", agent="nope")])
    done = plait(repo, "run", str(plan), "--detach")
    assert done.returncode == 1 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("plait: error: ")
    assert not (repo / ".plait" / "runs").exists(), "nothing may be recorded or started"
