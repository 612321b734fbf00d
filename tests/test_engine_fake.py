"""What the engine decides — retries, back-off, retry-after, AIMD, session resume, budgets, cancel, empty
work, timeouts, every outcome counted — proven fast with plait.testing's FakeAgent and VirtualClock.
Git, SQLite, workspaces and the sandbox are real; only the agent and the waiting are not."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from plait import api
from plait.agents.base import ErrorKind
from plait.run.engine import RunOptions
from plait.testing import FakeAgent, VirtualClock
from plait.testing.fake import crash, edits, failure, hang, nothing, overloaded, rate_limited, refused
from runfixtures import events, make_repo, task, write_plan


def run(tmp_path: Path, tasks: list[dict[str, Any]], fake: FakeAgent, clock: VirtualClock | None = None,
        toml: str = "", **options: Any) -> tuple[str, str, api.Repo]:
    files = {"README.md": "x\n", **({"plait.toml": toml} if toml else {})}
    repo = make_repo(tmp_path / "repo", files)
    plan = write_plan(repo, tasks, defaults={"agent": "claude", "retries": options.pop("retries", 2)})
    handle, run_id = api.start(plan, RunOptions(**{"jobs": 4, **options}), cwd=repo)
    status = api.execute(handle, run_id, make_agent=lambda profile: fake, clock=clock or VirtualClock())
    return status, run_id, handle


def kinds(repo: api.Repo, run_id: str, kind: str) -> list[dict[str, Any]]:
    return [e for e in events(repo.root, run_id) if e["kind"] == kind]


def test_a_rate_limit_waits_out_retry_after_on_the_clock_and_resumes_the_session(tmp_path: Path) -> None:
    clock = VirtualClock()
    fake = FakeAgent({"a": [rate_limited(retry_after=45, session="s-123"), edits({"a.txt": "a\n"})]})
    started = time.monotonic()
    status, run_id, repo = run(tmp_path, [task("a")], fake, clock)
    assert status == "completed"
    (retry,) = kinds(repo, run_id, "task.retry")
    assert retry["data"]["delay"] >= 45 and retry["data"]["kind"] == "rate_limit"
    assert clock.slept >= 45 and time.monotonic() - started < 45, "the wait was virtual"
    assert [r.resume_session for r in fake.requests] == [None, "s-123"]


def test_throttling_lowers_the_profiles_concurrency_and_success_raises_it_again(tmp_path: Path) -> None:
    fake = FakeAgent({t: [overloaded(), edits({f"{t}.txt": t})] for t in "abcd"})
    status, run_id, repo = run(tmp_path, [task(t) for t in "abcd"], fake)
    assert status == "completed"
    backoffs = kinds(repo, run_id, "limits.backoff")
    assert backoffs and {e["data"]["reason"] for e in backoffs} == {"overloaded"}
    assert min(e["data"]["concurrency"] for e in backoffs) < 4
    assert kinds(repo, run_id, "limits.increase")


def test_back_off_grows_with_jitter_and_the_last_failure_is_failed_not_retry(tmp_path: Path) -> None:
    fake = FakeAgent({"a": [crash()]})
    status, run_id, repo = run(tmp_path, [task("a")], fake, retries=3, retry_base_seconds=10)
    assert status == "failed"
    delays = [e["data"]["delay"] for e in kinds(repo, run_id, "task.retry")]
    assert len(delays) == 3 and all(5 * 2 ** i <= d <= 10 * 2 ** i for i, d in enumerate(delays)), delays
    outcomes = [e["data"]["outcome"] for e in kinds(repo, run_id, "task.attempt_done")]
    assert outcomes == ["retry", "retry", "retry", "failed"]
    doc = api.status(run_id, cwd=repo.root)
    assert doc["counts"]["failed"] == 1 and doc["tasks"][0]["state"] == "failed"


def test_max_cost_stops_new_work_and_every_task_ends_in_a_counted_state(tmp_path: Path) -> None:
    fake = FakeAgent({t: [edits({f"{t}.txt": t}, cost=1.0)] for t in "abc"})
    tasks = [task("a"), task("b", needs=["a"]), task("c", needs=["b"])]
    status, run_id, repo = run(tmp_path, tasks, fake, max_cost=1.5)
    assert status == "failed"
    doc = api.status(run_id, cwd=repo.root)
    assert {t["id"]: t["state"] for t in doc["tasks"]} == {"a": "done", "b": "done", "c": "cancelled"}
    assert sum(doc["counts"].values()) == 3
    assert kinds(repo, run_id, "run.budget_spent")


def test_plait_cancel_stops_a_hanging_agent(tmp_path: Path) -> None:
    repo_dir = make_repo(tmp_path / "repo", {"README.md": "x\n"})
    plan = write_plan(repo_dir, [task("a"), task("b", needs=["a"])], defaults={"agent": "claude"})
    handle, run_id = api.start(plan, RunOptions(jobs=2), cwd=repo_dir)
    fake = FakeAgent({"a": [hang()]})
    result: list[str] = []
    runner = threading.Thread(target=lambda: result.append(
        api.execute(handle, run_id, make_agent=lambda p: fake, clock=VirtualClock())))
    runner.start()
    deadline = time.monotonic() + 60
    while not fake.requests:
        assert time.monotonic() < deadline, "the agent never started"
        time.sleep(0.01)
    assert api.cancel(run_id, cwd=repo_dir).startswith("cancelling")
    runner.join(60)
    assert result == ["cancelled"]
    states = {t["id"]: t["state"] for t in api.status(run_id, cwd=repo_dir)["tasks"]}
    assert states == {"a": "cancelled", "b": "blocked"} or states == {"a": "cancelled", "b": "cancelled"}


def test_an_agent_that_changed_nothing_fails_unless_the_task_allows_it(tmp_path: Path) -> None:
    fake = FakeAgent({}, default=nothing())
    status, run_id, repo = run(tmp_path, [task("a"), task("b", allow_empty=True)], fake)
    assert status == "failed"
    doc = api.status(run_id, cwd=repo.root)
    states = {t["id"]: (t["state"], t["error"]) for t in doc["tasks"]}
    assert states["b"] == ("done", None)
    assert states["a"][0] == "failed" and "changed nothing" in states["a"][1] and "allow_empty" in states["a"][1]


def test_a_refused_tool_is_reported_with_the_task(tmp_path: Path) -> None:
    fake = FakeAgent({"a": [refused("Bash(rm -rf /)", {"a.txt": "a"})]})
    status, run_id, repo = run(tmp_path, [task("a")], fake)
    assert status == "completed"
    (t,) = api.status(run_id, cwd=repo.root)["tasks"]
    assert any("refused by the CLI: Bash(rm -rf /)" in i for i in t["incidents"])


def test_the_tasks_own_timeout_wins_over_the_profiles(tmp_path: Path) -> None:
    fake = FakeAgent({}, default=edits({"x.txt": "x"}))
    toml = '[profiles.claude]\nadapter = "claude"\ntimeout = "10m"\n'
    status, _, _ = run(tmp_path, [task("a", timeout="45s"), task("b", {"b.txt": "b"})], fake, toml=toml)
    assert status == "completed"
    timeouts = {r.task_id: r.timeout for r in fake.requests}
    assert timeouts == {"a": 45.0, "b": 600.0}


def test_a_non_transient_failure_is_not_retried(tmp_path: Path) -> None:
    fake = FakeAgent({"a": [failure(ErrorKind.AUTH, "401 invalid api key")]})
    status, run_id, repo = run(tmp_path, [task("a"), task("b", needs=["a"])], fake)
    assert status == "failed" and not kinds(repo, run_id, "task.retry")
    doc = api.status(run_id, cwd=repo.root)
    assert doc["counts"]["failed"] == 1 and doc["counts"]["blocked"] == 1
    assert doc["metrics"]["failed"] == ["a"] and doc["metrics"]["blocked"] == ["b"]


def test_huge_and_hostile_agent_text_is_bounded_and_made_printable_in_evidence_and_database(tmp_path: Path) -> None:
    from dataclasses import replace

    from runfixtures import common_dir

    noisy = "\x1b]52;c;ZXZpbA==\x07\x1b[2J\x00" + "y" * 3_000_000  # a clipboard write, a screen clear, NUL
    outcome = edits({"a.txt": "a"})
    fake = FakeAgent({"a": [replace(outcome, result=replace(outcome.result, summary=noisy))]})
    status, run_id, repo = run(tmp_path, [task("a")], fake)
    assert status == "completed"
    folder = repo.root / ".plait" / "runs" / run_id / "tasks" / "a"
    for name in ("EVIDENCE.md", "results.json", "context.json"):
        data = (folder / name).read_bytes()
        assert len(data) < 50_000, name
        assert not any(c in data for c in (b"\x1b", b"\x07", b"\x00")), name
        assert name == "context.json" or "characters cut" in data.decode(), name  # its summary is shorter still
    assert (common_dir(repo.root) / "plait" / "state.db").stat().st_size < 2_000_000
