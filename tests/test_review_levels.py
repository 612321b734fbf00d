"""`review: per-level` (seed 001's review loop per phase), fast: FakeAgent plays implementers, the level's
reviewer (its requests carry the task id `level-<n>`) and the fixers; git, SQLite and workspaces are real."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from plait import api
from plait.agents.base import ErrorKind
from plait.commands.progress import describe
from plait.plan.model import Plan
from plait.run.engine import RunOptions
from plait.run.levels import parse_level_verdict
from plait.run.rehearse import level_scenarios, scenarios
from plait.testing import FakeAgent, VirtualClock
from plait.testing.fake import Outcome, answer, approve, edits, failure
from runfixtures import events, git, latest_run, make_repo, plait, require_cli, task, write_plan


def rejects(**tasks: list[str]) -> Outcome:
    return answer("Some tasks need work.\n" + json.dumps({"verdict": "changes_requested", "tasks": tasks}))


def start(tmp_path: Path, tasks: list[dict[str, Any]], **defaults: Any) -> tuple[api.Repo, str]:
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n"})
    plan = write_plan(repo, tasks, defaults={"agent": "claude", "review": "per-level", **defaults})
    return api.start(plan, RunOptions(jobs=2), cwd=repo)


def run(tmp_path: Path, tasks: list[dict[str, Any]], fake: FakeAgent, **defaults: Any) -> tuple[str, str, api.Repo]:
    handle, run_id = start(tmp_path, tasks, **defaults)
    return api.execute(handle, run_id, make_agent=lambda profile: fake, clock=VirtualClock()), run_id, handle


def two_levels() -> list[dict[str, Any]]:
    return [task("a", verify="test -f a.txt"), task("b", verify="test -f b.txt"),
            task("c", needs=["a", "b"], verify="test -f c.txt")]


def implementers() -> dict[str, list[Outcome]]:
    return {t: [edits({f"{t}.txt": f"{t}\n"})] for t in "abcd"}


def shown(repo: api.Repo, run_id: str) -> dict[str, dict[str, Any]]:
    return {t["id"]: t for t in api.status(run_id, cwd=repo.root)["tasks"]}


def results(repo: api.Repo, run_id: str, tid: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads((repo.root / ".plait" / "runs" / run_id / "tasks" / tid / "results.json")
                                       .read_text())
    return found


def test_a_level_is_reviewed_together_a_rejected_task_is_fixed_and_the_next_level_waits(tmp_path: Path) -> None:
    fake = FakeAgent(implementers(), roles={"reviewer": {"level-0": [rejects(b=["b.txt:1: say hello"]), approve()]},
                                            "fixer": {"b": [edits({"b.txt": "hello\n"})]}})
    status, run_id, repo = run(tmp_path, two_levels(), fake)
    assert status == "completed"
    first, second, third = fake.requests_for("reviewer")
    assert [r.task_id for r in (first, second, third)] == ["level-0", "level-0", "level-1"]
    for part in ("# Task a: task a", "# Task b: task b", "+a\n", "+b\n", '"tasks": {"<task id>"'):
        assert part in first.prompt, part
    assert "# Task b" in second.prompt and "# Task a" not in second.prompt, "only what is not yet approved"
    assert "b.txt:1: say hello" in second.prompt and "+hello\n" in second.prompt
    (fix,) = fake.requests_for("fixer")
    assert fix.task_id == "b" and "b.txt:1: say hello" in fix.prompt
    assert git(repo.root, "show", f"plait/{run_id}/integration:b.txt") == "hello"

    evts = events(repo.root, run_id)
    seq = {(e["kind"], e["task"], e["data"].get("round")): e["seq"] for e in evts}
    assert seq[("task.started", "c", None)] > max(seq[("task.done", "a", None)], seq[("task.done", "b", None)])
    assert seq[("task.done", "b", None)] > seq[("task.reviewed", "b", 2)] > seq[("task.fixed", "b", 1)]
    assert {e["data"]["level"] for e in evts if e["kind"].startswith("task.review")} == {0, 1}

    b = results(repo, run_id, "b")
    assert b["files_changed"] == ["b.txt"], "captured against the task's own base, not its reviewed commit"
    assert [r["verdict"] for r in b["review"]["rounds"]] == ["changes_requested", "approved"]
    assert [r["verdict"] for r in results(repo, run_id, "a")["review"]["rounds"]] == ["approved"]
    tasks = shown(repo, run_id)
    assert tasks["b"]["review"]["rounds"] == 2 and tasks["b"]["review"]["approved"]
    assert tasks["c"]["review"]["rounds"] == 1 and all(t["state"] == "done" for t in tasks.values())


def test_a_task_still_rejected_after_max_rounds_needs_a_human_and_blocks_its_dependents(tmp_path: Path) -> None:
    tasks = [*two_levels(), task("d", needs=["a"], verify="test -f d.txt")]
    fake = FakeAgent(implementers(), roles={"reviewer": {"level-0": [rejects(b=["b.txt: still wrong"])]}})
    status, run_id, repo = run(tmp_path, tasks, fake, max_rounds=2)
    assert status == "failed"
    found = shown(repo, run_id)
    assert found["b"]["state"] == "failed" and "needs a human: b.txt: still wrong" in found["b"]["error"]
    assert found["b"]["review"]["rounds"] == 2 and not found["b"]["review"]["approved"]
    assert found["c"]["state"] == "blocked"
    assert found["a"]["state"] == found["d"]["state"] == "done", "what needs only approved work goes on"
    assert len(fake.requests_for("fixer", "b")) == 1, "a fix between two reviews, none after the last"
    assert "## Review" in (repo.root / ".plait" / "runs" / run_id / "tasks" / "b" / "EVIDENCE.md").read_text()


def test_an_unreadable_verdict_is_asked_for_once_more(tmp_path: Path) -> None:
    fake = FakeAgent(implementers(), roles={"reviewer": {"level-0": [answer("Looks fine to me."), approve()]}})
    status, run_id, repo = run(tmp_path, [task("a"), task("b")], fake)
    assert status == "completed"
    retry = fake.requests_for("reviewer")[1]
    assert "ended without a verdict plait could read" in retry.prompt
    assert retry.log_dir.name == "review-1-retry"
    assert shown(repo, run_id)["a"]["review"]["history"] == [{"round": 1, "verdict": "approved", "comments": 0,
                                                               "malformed": False}]


def test_unreadable_twice_counts_as_changes_requested_for_every_task(tmp_path: Path) -> None:
    fake = FakeAgent(implementers(), roles={"reviewer": {"level-0": [answer("hmm"), answer("\x1b[2Jstill hmm"),
                                                                     approve()]}})
    status, run_id, repo = run(tmp_path, [task("a"), task("b")], fake)
    assert status == "completed"
    assert sorted(r.task_id for r in fake.requests_for("fixer")) == ["a", "b"]
    for tid in "ab":
        rounds = results(repo, run_id, tid)["review"]["rounds"]
        assert [(r["verdict"], r["malformed"]) for r in rounds] == [("changes_requested", True), ("approved", False)]
        assert "no readable verdict" in rounds[0]["comments"][0] and "\x1b" not in rounds[0]["comments"][0]


def test_resume_restarts_a_task_its_level_review_did_not_approve_from_its_implementer(tmp_path: Path) -> None:
    handle, run_id = start(tmp_path, two_levels(), max_rounds=1)
    fake = FakeAgent(implementers(), roles={"reviewer": {"level-0": [rejects(b=["no"])]}})
    assert api.execute(handle, run_id, make_agent=lambda profile: fake, clock=VirtualClock()) == "failed"
    again = FakeAgent(implementers())
    assert api.execute(handle, run_id, resume=True, make_agent=lambda profile: again, clock=VirtualClock()) == (
        "completed")
    assert [r.task_id for r in again.requests_for("software-engineer")] == ["b", "c"], "a was approved: kept"
    assert [r.task_id for r in again.requests_for("reviewer")] == ["level-0", "level-1"]


def test_a_failing_level_reviewer_fails_every_task_it_was_reviewing(tmp_path: Path) -> None:
    fake = FakeAgent(implementers(), roles={"reviewer": {"level-0": [failure(ErrorKind.AUTH, "401 bad key")]}})
    status, run_id, repo = run(tmp_path, two_levels(), fake)
    assert status == "failed"
    found = shown(repo, run_id)
    for tid in "ab":
        assert found[tid]["state"] == "failed"
        assert found[tid]["error"].startswith("review round 1: reviewer claude: auth: 401 bad key")
    assert found["c"]["state"] == "blocked" and not fake.requests_for("fixer")


def test_level_review_events_say_their_level() -> None:
    assert describe("task.reviewing", "a", {"level": 0, "round": 1, "reviewer": "codex"}) == (
        "a: level 0 review round 1 by codex")
    assert describe("task.reviewed", "a", {"level": 2, "round": 1, "verdict": "approved"}) == (
        "a: level 2 review round 1: approved")


@pytest.mark.parametrize(("text", "rejected"), [
    ('{"verdict": "approved"}', {}),
    ('{"verdict": "approved", "tasks": {"a": ["ignored"]}}', {}),
    ('{"verdict": "changes_requested", "tasks": {"b": ["b.py:1: x", {"line": 2}]}}',
     {"b": ("b.py:1: x", '{"line": 2}')}),
    ('{"verdict": "changes_requested", "tasks": {"b": [], "zz": ["not under review"]}}',
     {"b": ("(the reviewer requested changes without comments)",)}),
    ('{"verdict": "changes_requested", "tasks": ["a"], "comments": ["both wrong"]}', {"a": ("both wrong",)}),
    # changes requested without naming a task under review: every task is rejected, none approved by omission
    ('{"verdict": "rejected", "comments": ["no"]}', {"a": ("no",), "b": ("no",)}),
    ('{"verdict": "changes_requested", "tasks": {"zz": ["x"]}}', {"a": ("(the reviewer requested changes without "
                                                                      "comments)",)} | {"b": ("(the reviewer "
                                                                      "requested changes without comments)",)}),
])
def test_a_level_verdict_names_the_rejected_tasks(text: str, rejected: dict[str, tuple[str, ...]]) -> None:
    assert parse_level_verdict(text, ["a", "b"]) == rejected


@pytest.mark.parametrize("text", ["", "LGTM", '{"verdict": "maybe", "tasks": {}}', '{"tasks": {"a": ["x"]}}',
                                  "{" * 50_000, '{"verdict": "approved"'])
def test_no_readable_level_verdict_is_none(text: str) -> None:
    assert parse_level_verdict(text, ["a"]) is None


def test_per_level_and_end_load_and_say_what_they_review() -> None:
    doc: dict[str, Any] = {"plait": 1, "name": "p", "defaults": {"review": "per-level"}, "tasks": [
        {"id": "a", "title": "a", "prompt": "p"}, {"id": "b", "title": "b", "prompt": "p", "review": "end"}]}
    plan = Plan.model_validate(doc)
    a, b = plan.tasks
    assert plan.level_reviewed(a) and not plan.reviewed(a) and not plan.level_reviewed(b)
    assert plan.review_at_end and not Plan.model_validate({**doc, "tasks": doc["tasks"][:1]}).review_at_end


def test_a_rehearsal_scripts_each_level_review_from_the_tasks_review_answers() -> None:
    plan = Plan.model_validate({"plait": 1, "name": "p", "defaults": {"review": "per-level", "max_rounds": 2},
                                "tasks": [{"id": "a", "title": "a", "prompt": "p", "script": {
                                    "fix": {"a.txt": "y"}, "review": [{"verdict": "changes_requested",
                                                                       "comments": ["more"]},
                                                                      {"verdict": "approved"}]}},
                                          {"id": "b", "title": "b", "prompt": "p", "needs": ["a"]}]})
    found = level_scenarios(plan, 0.0)
    assert sorted(found) == ["level-0/review-1", "level-0/review-1-retry", "level-0/review-2",
                             "level-0/review-2-retry", "level-1/review-1", "level-1/review-1-retry",
                             "level-1/review-2", "level-1/review-2-retry"]
    assert parse_level_verdict(found["level-0/review-1"].final, ["a"]) == {"a": ("more",)}
    assert parse_level_verdict(found["level-0/review-2"].final, ["a"]) == {}
    assert sorted(scenarios(plan, plan.tasks[0], 0.0)) == ["a", "a/fix-1", "a/fix-2"]


def test_a_rehearsal_with_real_claude_code_runs_a_per_level_review(tmp_path: Path) -> None:
    """The real CLI against the scripted model server: the level-0 reviewer rejects `a` once (its `script:
    review:`), a's fixer writes `script: fix:`, the re-review approves, then `c` runs and its level is reviewed."""
    binary = require_cli("claude")
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n",
                                         "plait.toml": f'[profiles.claude]\nadapter = "claude"\nbinary = "{binary}"\n'})
    a = task("a", {"a.txt": "draft\n"}, verify="test -f a.txt")
    a["script"] |= {"review": [{"verdict": "changes_requested", "comments": ["a.txt:1: say hello"]},
                               {"verdict": "approved"}], "fix": {"a.txt": "hello\n"}}
    plan = write_plan(repo, [a, task("b", {"b.txt": "b\n"}), task("c", {"c.txt": "c\n"}, needs=["a", "b"])],
                      defaults={"agent": "claude", "review": "per-level", "timeout": "3m"})
    done = plait(repo, "run", str(plan), "--rehearse", timeout=400)
    run_id = latest_run(repo)
    assert done.returncode == 0, done.stdout + done.stderr
    assert git(repo, "show", f"plait/{run_id}/integration:a.txt") == "hello"
    tasks = {t["id"]: t for t in json.loads(plait(repo, "status", run_id, "--json").stdout)["tasks"]}
    assert [h["verdict"] for h in tasks["a"]["review"]["history"]] == ["changes_requested", "approved"]
    assert [h["verdict"] for h in tasks["b"]["review"]["history"]] == ["approved"]
    levels = repo / ".plait" / "runs" / run_id / "levels"
    argv = json.loads((levels / "0" / "review-1" / "agent.argv.json").read_text())
    assert argv[argv.index("--permission-mode") + 1] == "dontAsk", "the reviewer's CLI may only read"
    assert (levels / "1" / "review-1").is_dir() and not (levels / "1" / "review-2").exists()
