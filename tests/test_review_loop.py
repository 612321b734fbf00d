"""The review and fix loop (seed 001), fast: FakeAgent plays implementer, reviewer and fixer; git, SQLite,
workspaces and the sandbox are real. One test runs a real reviewer process in the real sandbox."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from hostile import require_landlock
from plait import api, report
from plait.agents.base import ErrorKind, Permission
from plait.commands.run import render_status
from plait.errors import PlaitError
from plait.run.engine import RunOptions
from plait.run.review import parse_verdict
from plait.sandbox import support
from plait.testing import FakeAgent, VirtualClock
from plait.testing.fake import answer, approve, edits, failure, request_changes
from runfixtures import events, git, latest_run, make_repo, plait, require_cli, task, write_plan


def run(tmp_path: Path, tasks: list[dict[str, Any]], fake: FakeAgent | None, toml: str = "",
        **defaults: Any) -> tuple[str, str, api.Repo]:
    files = {"README.md": "x\n", **({"plait.toml": toml} if toml else {})}
    repo = make_repo(tmp_path / "repo", files)
    defaults = {"agent": "claude", "review": "per-task", **defaults}
    plan = write_plan(repo, tasks, defaults={k: v for k, v in defaults.items() if v is not None})
    handle, run_id = api.start(plan, RunOptions(jobs=2), cwd=repo)
    status = api.execute(handle, run_id, make_agent=(lambda profile: fake) if fake else None, clock=VirtualClock())
    return status, run_id, handle


def results(repo: api.Repo, run_id: str, tid: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((repo.root / ".plait" / "runs" / run_id / "tasks" / tid / "results.json")
                                     .read_text())
    return doc


def kinds(repo: api.Repo, run_id: str, *wanted: str) -> list[dict[str, Any]]:
    return [e for e in events(repo.root, run_id) if e["kind"] in wanted]


def status_of(repo: api.Repo, run_id: str, tid: str) -> dict[str, Any]:
    found: dict[str, Any] = next(t for t in api.status(run_id, cwd=repo.root)["tasks"] if t["id"] == tid)
    return found


def test_a_review_that_approves_at_once_passes_the_task(tmp_path: Path) -> None:
    fake = FakeAgent({"a": [edits({"a.txt": "a\n"}, cost=1.0)]}, roles={"reviewer": {"a": [approve(cost=0.25)]}})
    spec = task("a", acceptance=["a.txt exists"], verify="test -f a.txt")
    status, run_id, repo = run(tmp_path, [spec], fake)
    assert status == "completed"
    (reviewer,) = fake.requests_for("reviewer")
    assert reviewer.prompt.startswith("You are the reviewer.")
    for part in ("# Task a: task a", "a.txt exists", "`test -f a.txt` passed", "+a\n", '"verdict": "approved"'):
        assert part in reviewer.prompt, part
    review = results(repo, run_id, "a")["review"]
    assert review["approved"] and [r["verdict"] for r in review["rounds"]] == ["approved"]
    shown = status_of(repo, run_id, "a")
    assert shown["review"]["verdict"] == "approved" and shown["review"]["rounds"] == 1
    assert shown["cost_usd"] == pytest.approx(1.25)  # the reviewer's cost counts with the task's
    assert not fake.requests_for("fixer")


def test_changes_requested_once_then_the_fixer_fixes_and_the_second_review_approves(tmp_path: Path) -> None:
    fake = FakeAgent({"a": [edits({"a.txt": "draft\n"})]}, roles={
        "reviewer": {"a": [request_changes("a.txt:1: say hello", cost=0.1), approve(cost=0.1)]},
        "fixer": {"a": [edits({"a.txt": "hello\n"}, cost=0.5)]}})
    status, run_id, repo = run(tmp_path, [task("a", verify="test -s a.txt")], fake)
    assert status == "completed"
    (fixer,) = fake.requests_for("fixer")
    assert fixer.prompt.startswith("You are the fixer.") and "- a.txt:1: say hello" in fixer.prompt
    assert fixer.confine is not None and fixer.worktree in fixer.confine.writable  # the fixer writes
    second = fake.requests_for("reviewer")[1]
    assert "+hello" in second.prompt and "say hello" in second.prompt  # the new diff, the old comments
    assert git(repo.root, "show", f"plait/{run_id}/a:a.txt") == "hello"
    review = results(repo, run_id, "a")["review"]
    assert [r["verdict"] for r in review["rounds"]] == ["changes_requested", "approved"]
    assert review["rounds"][0]["comments"] == ["a.txt:1: say hello"] and review["cost_usd"] == pytest.approx(0.7)
    doc = api.status(run_id, cwd=repo.root)
    assert doc["tasks"][0]["review"]["rounds"] == 2 and doc["tasks"][0]["review"]["approved"]
    assert [e["data"]["verdict"] for e in kinds(repo, run_id, "task.reviewed")] == ["changes_requested", "approved"]
    assert [e["data"]["ok"] for e in kinds(repo, run_id, "task.fixed")] == [True]
    evidence = (repo.root / ".plait" / "runs" / run_id / "tasks" / "a" / "EVIDENCE.md").read_text()
    assert "## Review" in evidence and "Round 1: changes requested" in evidence and "say hello" in evidence
    out = io.StringIO()
    render_status(doc, Console(file=out, width=220))
    assert "approved 2/3" in out.getvalue()
    text = "\n".join(report.lines(api.final_metrics(repo, run_id)))
    assert "review: 1 task(s) reviewed, 1 approved (0 at the first round), 2 round(s)" in text


def test_an_unreadable_verdict_is_asked_for_once_more_then_counts_as_changes_requested(tmp_path: Path) -> None:
    fake = FakeAgent({"a": [edits({"a.txt": "a\n"})]}, roles={
        "reviewer": {"a": [answer("Looks fine to me!"), answer('{"verdict": "maybe"}'), approve()]}})
    status, run_id, repo = run(tmp_path, [task("a")], fake)
    assert status == "completed"
    first, again, third = fake.requests_for("reviewer")
    assert "without a verdict plait could read" in again.prompt and "without a verdict" not in first.prompt
    assert "without a verdict" not in third.prompt
    rounds = results(repo, run_id, "a")["review"]["rounds"]
    assert [(r["verdict"], r["malformed"]) for r in rounds] == [("changes_requested", True), ("approved", False)]
    assert "no readable verdict" in rounds[0]["comments"][0] and '"maybe"' in rounds[0]["comments"][0]
    (fixer,) = fake.requests_for("fixer")
    assert "no readable verdict" in fixer.prompt  # the fixer sees what the reviewer said


def test_a_reviewer_that_never_gives_a_verdict_never_approves(tmp_path: Path) -> None:
    fake = FakeAgent({"a": [edits({"a.txt": "a\n"})]}, roles={"reviewer": {"a": [answer("approved, ship it")]}})
    status, run_id, repo = run(tmp_path, [task("a")], fake, max_rounds=1)
    assert status == "failed"
    assert len(fake.requests_for("reviewer")) == 2 and not fake.requests_for("fixer")
    assert "needs a human" in status_of(repo, run_id, "a")["error"]


def test_out_of_rounds_the_task_fails_with_the_last_review_and_the_run_says_why(tmp_path: Path) -> None:
    fake = FakeAgent({"a": [edits({"a.txt": "a\n"})]}, roles={
        "reviewer": {"a": [request_changes("a.txt: wrong", "README.md: mention a")]},
        "fixer": {"a": [edits({"a.txt": "a2\n"})]}})
    tasks = [task("a", max_rounds=2), task("b", needs=["a"])]
    status, run_id, repo = run(tmp_path, tasks, fake)
    assert status == "failed"
    a = status_of(repo, run_id, "a")
    assert a["state"] == "failed" and "changes still requested after 2 round(s), needs a human" in a["error"]
    assert a["review"]["comments"] == ["a.txt: wrong", "README.md: mention a"] and not a["review"]["approved"]
    assert status_of(repo, run_id, "b")["state"] == "blocked"
    assert len(fake.requests_for("reviewer")) == 2 and len(fake.requests_for("fixer")) == 1
    assert [e["data"]["outcome"] for e in kinds(repo, run_id, "task.attempt_done")] == ["failed"]  # no retry
    context = json.loads((repo.root / ".plait" / "runs" / run_id / "tasks" / "a" / "context.json").read_text())
    assert "review comment: a.txt: wrong" in context["pending_actions"]
    metrics = api.final_metrics(repo, run_id)
    text = "\n".join(report.lines(metrics))
    assert "needs a human: a" in text and "why: a: review: changes still requested" in text
    assert "a.txt: wrong" in (repo.root / ".plait" / "runs" / run_id / "REPORT.md").read_text()


def test_a_fix_that_breaks_verification_is_sent_back_without_asking_the_reviewer(tmp_path: Path) -> None:
    fake = FakeAgent({"a": [edits({"a.txt": "a"})]}, roles={
        "reviewer": {"a": [request_changes("a.txt: more"), approve()]},
        "fixer": {"a": [edits({"state.txt": "broken"}), edits({"state.txt": "fixed"})]}})
    status, run_id, repo = run(tmp_path, [task("a", verify="! grep -q broken state.txt")], fake)
    assert status == "completed"
    rounds = results(repo, run_id, "a")["review"]["rounds"]
    assert [r["verdict"] for r in rounds] == ["changes_requested", "changes_requested", "approved"]
    assert rounds[1]["comments"][0].startswith("verify `! grep -q broken state.txt` exited 1 after the fix")
    assert len(fake.requests_for("reviewer")) == 2  # round 2 needed no reviewer: verification said it
    assert "exited 1 after the fix" in fake.requests_for("fixer")[1].prompt
    assert git(repo.root, "show", f"plait/{run_id}/a:state.txt") == "fixed"


def test_the_reviewer_runs_read_only(tmp_path: Path) -> None:
    fake = FakeAgent({"a": [edits({"a.txt": "a\n"})]})
    status, run_id, repo = run(tmp_path, [task("a", verify="echo ran > verify-artifact.txt")], fake)
    assert status == "completed"
    assert not status_of(repo, run_id, "a")["incidents"], "what verify wrote is not the reviewer's doing"
    (implementer,) = fake.requests_for("software-engineer")
    (reviewer,) = fake.requests_for("reviewer")
    assert reviewer.confine is not None and implementer.confine is not None
    assert reviewer.worktree not in reviewer.confine.writable  # no repository path it may write
    assert implementer.worktree in implementer.confine.writable
    assert set(reviewer.confine.writable) <= set(implementer.confine.writable)
    assert reviewer.profile.permission is Permission.READ_ONLY  # and its CLI is told so too
    assert reviewer.confine.landlock == (support().landlock_abi is not None)


def test_what_a_reviewer_changes_anyway_is_put_back_and_reported(tmp_path: Path) -> None:
    """FakeAgent writes from plait's own process, which no sandbox confines: like a machine without Landlock."""
    tamper = replace(approve(), edits={"a.txt": "tampered\n", "extra.txt": "x"})
    fake = FakeAgent({"a": [edits({"a.txt": "a\n"})]}, roles={"reviewer": {"a": [tamper]}})
    status, run_id, repo = run(tmp_path, [task("a")], fake)
    assert status == "completed"
    assert git(repo.root, "show", f"plait/{run_id}/a:a.txt") == "a"
    assert git(repo.root, "ls-tree", "--name-only", f"plait/{run_id}/a") == "README.md\na.txt"
    assert any("reviewer: changed a.txt, extra.txt" in i for i in status_of(repo, run_id, "a")["incidents"])


def test_a_real_reviewer_process_cannot_write_its_work_tree(tmp_path: Path) -> None:
    require_landlock()
    verdict = '{"verdict": "approved", "comments": []}'
    toml = ("[profiles.reviewer]\nadapter = \"shell\"\n"
            f"command = '''echo pwned > a.txt; echo new > new.txt; echo '{verdict}' '''\n")
    tasks = [task("a", {"a.txt": "a\n"})]
    status, run_id, repo = run(tmp_path, tasks, None, toml=toml, agent="script")
    assert status == "completed"
    assert git(repo.root, "show", f"plait/{run_id}/a:a.txt") == "a"
    assert "new.txt" not in git(repo.root, "ls-tree", "--name-only", f"plait/{run_id}/a")
    incidents = status_of(repo, run_id, "a")["incidents"]
    assert any(i.startswith("reviewer: refused") for i in incidents), incidents
    assert not any("put back" in i for i in incidents), "the kernel refused the writes: nothing to put back"


def test_review_never_behaves_as_before(tmp_path: Path) -> None:
    before = ["task.started", "task.workspace", "task.agent_done", "task.captured", "task.verified",
              "task.attempt_done", "task.done"]
    for name, review in (("unset", None), ("never", "never")):
        fake = FakeAgent({"a": [edits({"a.txt": "a\n"})], "b": [edits({"b.txt": "b\n"})]})
        status, run_id, repo = run(tmp_path / name, [task("a"), task("b", needs=["a"])], fake, review=review)
        assert status == "completed"
        for tid in "ab":
            assert [e["kind"] for e in events(repo.root, run_id) if e["task"] == tid] == before
            assert results(repo, run_id, tid)["review"] is None and status_of(repo, run_id, tid)["review"] is None
        assert {r.role for r in fake.requests} == {"software-engineer"}
        assert "review" not in "\n".join(report.lines(api.final_metrics(repo, run_id)))


def test_a_task_may_opt_out_of_the_plans_review(tmp_path: Path) -> None:
    fake = FakeAgent({"a": [edits({"a.txt": "a\n"})], "b": [edits({"b.txt": "b\n"})]})
    status, run_id, repo = run(tmp_path, [task("a"), task("b", review="never")], fake)
    assert status == "completed"
    assert [r.task_id for r in fake.requests_for("reviewer")] == ["a"]
    assert status_of(repo, run_id, "b")["review"] is None


def test_the_reviewer_profile_is_used_when_the_project_defines_one(tmp_path: Path) -> None:
    fake = FakeAgent({"a": [edits({"a.txt": "a\n"})]})
    toml = '[profiles.reviewer]\nadapter = "codex"\n[profiles.fixer]\nadapter = "claude"\n'
    status, _, _ = run(tmp_path, [task("a")], fake, toml=toml)
    assert status == "completed"
    assert [r.profile.name for r in fake.requests_for("reviewer")] == ["reviewer"]
    assert [r.profile.name for r in fake.requests_for("software-engineer")] == ["claude"]


def test_a_failing_reviewer_agent_fails_the_attempt_with_its_error(tmp_path: Path) -> None:
    fake = FakeAgent({"a": [edits({"a.txt": "a\n"})]},
                     roles={"reviewer": {"a": [failure(ErrorKind.AUTH, "401 invalid api key")]}})
    status, run_id, repo = run(tmp_path, [task("a")], fake)
    assert status == "failed"
    error = status_of(repo, run_id, "a")["error"]
    assert error.startswith("review round 1: reviewer claude: auth: 401 invalid api key")
    assert not kinds(repo, run_id, "task.retry")


def test_a_script_agent_cannot_review_and_the_run_says_so_before_it_starts(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n"})
    plan = write_plan(repo, [task("a", {"a.txt": "a"})], defaults={"agent": "script", "review": "per-task"})
    with pytest.raises(PlaitError) as caught:
        api.start(plan, RunOptions(), cwd=repo)
    text = str(caught.value)
    assert "\n" not in text and text.startswith(f"{plan}:") and "`script` agent cannot review" in text
    assert "[profiles.reviewer]" in text and api.open_repo(repo).store.runs() == []


# -- reading the verdict ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "approved", "comments"), [
    ('{"verdict": "approved", "comments": []}', True, ()),
    ('Done.\n```json\n{"verdict": "changes_requested", "comments": ["a.py:3: off by one"]}\n```\n', False,
     ("a.py:3: off by one",)),
    # the format echoed from the prompt, then the real answer: the last one counts
    ('I will answer {"verdict": "approved", "comments": []}. Then: {"verdict": "changes_requested", '
     '"comments": ["x"]}', False, ("x",)),
    ('{"verdict": "changes_requested", "comments": [{"file": "a.py", "line": 2}]} thanks {"note": 1}', False,
     ('{"file": "a.py", "line": 2}',)),
    ('{"verdict": "Changes-Requested"}', False, ("(the reviewer requested changes without comments)",)),
    ('{"verdict": "approved", "comments": "nit: spacing"}', True, ("nit: spacing",)),
])
def test_a_verdict_is_read_from_the_last_json_object_that_has_one(text: str, approved: bool,
                                                                   comments: tuple[str, ...]) -> None:
    found = parse_verdict(text)
    assert found is not None and (found.approved, found.comments) == (approved, comments)


@pytest.mark.parametrize("text", [
    "", "approved", "LGTM!", '{"verdict": "maybe"}', '{"verdict": null}', '{"verdict": "approved"',
    '["verdict", "approved"]', '{"comments": ["approved"]}', "{" * 100_000, '{"a":' * 50_000,
    '{"verdict": "approved", "comments": []} but actually {"verdict": "perhaps"}', "\x00\x1b[2J{}" * 1000,
])
def test_no_readable_verdict_is_none_and_never_an_approval(text: str) -> None:
    assert parse_verdict(text) is None


def test_a_rehearsal_with_real_claude_code_plays_reviewer_and_fixer(tmp_path: Path) -> None:
    """The real CLI against the scripted model server: the reviewer rejects once, the fixer edits, the
    second review approves (the plan's `script: review:` and `fix:`)."""
    binary = require_cli("claude")
    toml = f'[profiles.claude]\nadapter = "claude"\nbinary = "{binary}"\n'
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n", "plait.toml": toml})
    spec = task("a", {"a.txt": "draft\n"}, verify="test -f a.txt")
    spec["script"] |= {"review": [{"verdict": "changes_requested", "comments": ["a.txt:1: say hello"]},
                                  {"verdict": "approved"}], "fix": {"a.txt": "hello\n"}}
    plan = write_plan(repo, [spec], defaults={"agent": "claude", "review": "per-task", "timeout": "3m"})
    done = plait(repo, "run", str(plan), "--rehearse", timeout=400)
    run_id = latest_run(repo)
    assert done.returncode == 0, done.stdout + done.stderr
    assert git(repo, "show", f"plait/{run_id}/integration:a.txt") == "hello"
    review = json.loads(plait(repo, "status", run_id, "--json").stdout)["tasks"][0]["review"]
    assert [h["verdict"] for h in review["history"]] == ["changes_requested", "approved"]
    assert review["approved"] and review["cost_usd"] > 0, "the reviewer's and fixer's simulated cost"
    logs = repo / ".plait" / "runs" / run_id / "tasks" / "a" / "logs" / "attempt-1"
    argv = json.loads((logs / "review-1" / "agent.argv.json").read_text())
    assert argv[argv.index("--permission-mode") + 1] == "dontAsk", "the reviewer's CLI may only read"
    assert "Edit" not in argv[argv.index("--allowedTools") + 1].split(",")
    assert (logs / "fix-1" / "agent.jsonl").is_file() and not (logs / "fix-2").exists()


def test_a_rehearsal_gives_each_review_round_its_own_scripted_reviewer_and_fixer() -> None:
    from plait.plan.model import Plan
    from plait.run.rehearse import scenarios

    plan = Plan.model_validate({"plait": 1, "name": "p", "defaults": {"review": "per-task", "max_rounds": 2},
                                "tasks": [{"id": "a", "title": "a", "prompt": "p", "script": {
                                    "write": {"a.txt": "x"}, "fix": {"a.txt": "y"},
                                    "review": [{"verdict": "changes_requested", "comments": ["more"]}]}},
                                          {"id": "b", "title": "b", "prompt": "p", "review": "never"}]})
    found = scenarios(plan, plan.tasks[0], 0.0)
    assert sorted(found) == ["a", "a/fix-1", "a/fix-2", "a/review-1", "a/review-1-retry", "a/review-2",
                             "a/review-2-retry"]
    assert parse_verdict(found["a/review-2"].final) == parse_verdict('{"verdict": "changes_requested", '
                                                                    '"comments": ["more"]}')  # the last repeats
    assert [type(s).__name__ for s in found["a/fix-1"].steps] == ["Write"]
    assert sorted(scenarios(plan, plan.tasks[1], 0.0)) == ["b"]


def test_review_events_read_as_one_line_each() -> None:
    from plait.commands.progress import describe

    assert describe("task.reviewing", "a", {"round": 2, "reviewer": "codex"}) == "a: review round 2 by codex"
    assert describe("task.reviewed", "a", {"round": 1, "verdict": "approved"}) == "a: review round 1: approved"
    line = describe("task.reviewed", "a", {"round": 1, "verdict": "changes_requested", "malformed": True,
                                           "comments": ["the reviewer's answer had no readable verdict\x1b[2J"]})
    assert line.startswith("a: review round 1: changes requested (no readable verdict), 1 comment(s): the")
    assert "\x1b" not in line
    assert describe("task.fixed", "a", {"round": 1, "ok": False}) == "a: fixer FAILED (round 1)"
    assert describe("run.gate_failed", None, {"gate": "g", "error": "boom", "not_started": ["x", "y"]}) == (
        "gate g FAILED: boom; not starting x, y; running tasks finish")
