"""`gate: true`: everything that (transitively) needs a gate waits until it is verified (and approved, when
reviewed); a gate that fails for good stops the run from starting anything new, and the run says why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from plait import api, report
from plait.agents.base import ErrorKind
from plait.run.engine import RunOptions
from plait.testing import FakeAgent, VirtualClock
from plait.testing.fake import approve, crash, edits, failure, request_changes
from runfixtures import events, make_repo, task, write_plan


def run(tmp_path: Path, tasks: list[dict[str, Any]], fake: FakeAgent, jobs: int = 1,
        **defaults: Any) -> tuple[str, str, api.Repo]:
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n"})
    plan = write_plan(repo, tasks, defaults={"agent": "claude", **defaults})
    handle, run_id = api.start(plan, RunOptions(jobs=jobs), cwd=repo)
    return api.execute(handle, run_id, make_agent=lambda p: fake, clock=VirtualClock()), run_id, handle


def seq(evts: list[dict[str, Any]], kind: str, tid: str, **data: Any) -> int:
    return next(e["seq"] for e in evts if e["kind"] == kind and e["task"] == tid
                and all(e["data"].get(k) == v for k, v in data.items()))


def states(repo: api.Repo, run_id: str) -> dict[str, tuple[str, str | None]]:
    return {t["id"]: (t["state"], t["error"]) for t in api.status(run_id, cwd=repo.root)["tasks"]}


def plan_with_a_gate(gate: bool = True) -> list[dict[str, Any]]:
    """g (the gate) <- b <- c, and x, which does not need the gate."""
    return [task("g", gate=gate, estimate="3h"), task("b", needs=["g"], estimate="2h"),
            task("c", needs=["b"], estimate="1h"), task("x", estimate="30m")]


def test_dependents_of_a_reviewed_gate_start_only_after_its_approval(tmp_path: Path) -> None:
    fake = FakeAgent({t: [edits({f"{t}.txt": t})] for t in "gbcx"},
                     roles={"reviewer": {"g": [request_changes("g.txt: more"), approve()]}})
    tasks = plan_with_a_gate()
    tasks[0]["review"] = "per-task"
    status, run_id, repo = run(tmp_path, tasks, fake, jobs=4)
    assert status == "completed"
    evts = events(repo.root, run_id)
    approved = seq(evts, "task.reviewed", "g", verdict="approved")
    assert seq(evts, "task.verified", "g") < seq(evts, "task.reviewed", "g", verdict="changes_requested")
    assert approved < seq(evts, "task.done", "g") < seq(evts, "task.started", "b") < seq(evts, "task.started", "c")
    assert seq(evts, "task.started", "x") < approved, "what does not need the gate runs beside it"
    assert next(t for t in api.status(run_id, cwd=repo.root)["tasks"] if t["id"] == "g")["gate"] is True


def test_a_failed_gate_blocks_its_dependents_stops_new_work_and_the_run_says_why(tmp_path: Path) -> None:
    fake = FakeAgent({"g": [failure(ErrorKind.AUTH, "401 invalid api key")], "x": [edits({"x.txt": "x"})]})
    status, run_id, repo = run(tmp_path, plan_with_a_gate(), fake)  # one job: g starts first (longest path)
    assert status == "failed"
    found = states(repo, run_id)
    assert found["g"][0] == "failed"
    assert found["b"] == ("blocked", "gate g failed") and found["c"] == ("blocked", "gate g failed")
    assert found["x"] == ("cancelled", "not started: gate g failed")
    assert [r.task_id for r in fake.requests] == ["g"], "nothing started after the gate failed"
    (stop,) = [e for e in events(repo.root, run_id) if e["kind"] == "run.gate_failed"]
    assert stop["data"]["gate"] == "g" and stop["data"]["not_started"] == ["x"]
    finished = [e for e in events(repo.root, run_id) if e["kind"] == "run.finished"][-1]
    assert finished["data"]["why"].startswith("gate g failed, so nothing after it started (agent claude: auth")
    metrics = api.final_metrics(repo, run_id)
    assert metrics.failed_gate == "g" and any(line.startswith("why: gate g failed") for line in report.lines(metrics))


def test_a_failing_task_that_is_not_a_gate_lets_independent_work_go_on(tmp_path: Path) -> None:
    fake = FakeAgent({"g": [failure(ErrorKind.AUTH, "401")], "x": [edits({"x.txt": "x"})]})
    status, run_id, repo = run(tmp_path, plan_with_a_gate(gate=False), fake)
    assert status == "failed"
    found = states(repo, run_id)
    assert found["x"] == ("done", None) and found["b"] == ("blocked", "needs g, which failed")
    assert not [e for e in events(repo.root, run_id) if e["kind"] == "run.gate_failed"]


def test_a_gate_retried_after_a_transient_failure_does_not_stop_the_run(tmp_path: Path) -> None:
    fake = FakeAgent({"g": [crash(), edits({"g.txt": "g"})], **{t: [edits({f"{t}.txt": t})] for t in "bcx"}})
    status, run_id, repo = run(tmp_path, plan_with_a_gate(), fake)
    assert status == "completed"
    assert {t: s for t, (s, _) in states(repo, run_id).items()} == dict.fromkeys("gbcx", "done")


def test_a_gate_that_review_rejects_to_the_end_stops_the_run(tmp_path: Path) -> None:
    fake = FakeAgent({t: [edits({f"{t}.txt": t})] for t in "gbcx"},
                     roles={"reviewer": {"g": [request_changes("g.txt: wrong")]}})
    status, run_id, repo = run(tmp_path, plan_with_a_gate(), fake, review="per-task", max_rounds=2)
    assert status == "failed"
    found = states(repo, run_id)
    assert "needs a human" in str(found["g"][1]) and found["b"] == ("blocked", "gate g failed")
    assert found["x"][0] == "cancelled"
