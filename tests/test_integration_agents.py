"""Agents at integration, judged by the tests: the resolver on a conflicting pair, the integration engineer
on a semantic conflict, the end review. FakeAgent plays the agents (and the built-in `script` agent in one
test); git, SQLite, workspaces and the sandbox are real."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from plait import api
from plait.agents.base import ErrorKind
from plait.run.engine import RunOptions
from plait.testing import FakeAgent, VirtualClock
from plait.testing.fake import Outcome, approve, edits, failure, request_changes
from runfixtures import events, git, make_repo, task, write_plan

BOTH = "grep -q alpha shared.txt && grep -q beta shared.txt"


def run(tmp_path: Path, tasks: list[dict[str, Any]], fake: FakeAgent | None, integration: dict[str, Any],
        files: dict[str, str] | None = None, **defaults: Any) -> tuple[str, str, Path]:
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n", **(files or {})})
    plan = write_plan(repo, tasks, defaults={"agent": "claude" if fake else "script", **defaults},
                      integration=integration)
    handle, run_id = api.start(plan, RunOptions(jobs=2), cwd=repo)
    status = api.execute(handle, run_id, make_agent=(lambda profile: fake) if fake else None, clock=VirtualClock())
    return status, run_id, repo


def conflicting_pair(**extra: Any) -> list[dict[str, Any]]:
    return [task("a", {"shared.txt": "alpha\n"}, verify="grep -q alpha shared.txt", **extra),
            task("b", {"shared.txt": "beta\n"}, verify="grep -q beta shared.txt", **extra)]


def pair_fake(*resolver: Outcome) -> FakeAgent:
    return FakeAgent({"a": [edits({"shared.txt": "alpha\n"})], "b": [edits({"shared.txt": "beta\n"})]},
                     roles={"resolver": {"b": list(resolver)}})


def kinds(repo: Path, run_id: str, *wanted: str) -> list[dict[str, Any]]:
    return [e for e in events(repo, run_id) if e["kind"] in wanted]


def run_dir(repo: Path, run_id: str) -> Path:
    return repo / ".plait" / "runs" / run_id


def merged_doc(repo: Path, run_id: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((run_dir(repo, run_id) / "merged-context.json").read_text())
    return doc


def test_a_conflicting_pair_is_resolved_by_the_resolver_and_judged_by_both_tasks_and_the_integration_test(
        tmp_path: Path) -> None:
    fake = pair_fake(edits({"shared.txt": "alpha\nbeta\n"}, cost=0.5))
    status, run_id, repo = run(tmp_path, conflicting_pair(), fake, {"verify": BOTH}, {"shared.txt": "base\n"})
    assert status == "completed"
    branch = f"plait/{run_id}/integration"
    assert git(repo, "show", f"{branch}:shared.txt") == "alpha\nbeta"
    parents = git(repo, "rev-list", "--parents", "-n1", branch).split()[1:]
    assert git(repo, "rev-parse", f"plait/{run_id}/b") in parents, "the resolution is a merge of b's own commit"
    (prompt,) = [r.prompt for r in fake.requests_for("resolver")]
    assert prompt.startswith("You are the resolver.")
    assert "Task b's work conflicts with a in:\n- shared.txt" in prompt and "Task a: task a" in prompt
    (done,) = kinds(repo, run_id, "integration.resolved")
    assert done["data"] | {"cost_usd": 0.5} == {"task": "b", "with": ["a"], "files": ["shared.txt"], "ok": True,
                                                 "rounds": 1, "error": "", "cost_usd": 0.5}
    report = (run_dir(repo, run_id) / "INTEGRATION-REPORT.md").read_text()
    assert "Agents changed the merged result" in report and "## Conflict: `b` with `a`" in report
    (mend,) = merged_doc(repo, run_id)["integration"]["changed_by_agents"]
    assert mend["kind"] == "conflict" and mend["ok"] and mend["changed"] == ["shared.txt"]


def test_the_resolver_sees_the_conflict_markers(tmp_path: Path) -> None:
    seen: list[str] = []

    class Peek(FakeAgent):
        def run(self, request: Any) -> Any:
            if request.role == "resolver":
                seen.append((request.worktree / "shared.txt").read_text())
            return super().run(request)

    fake = Peek({"a": [edits({"shared.txt": "alpha\n"})], "b": [edits({"shared.txt": "beta\n"})]},
                roles={"resolver": {"b": [edits({"shared.txt": "alpha\nbeta\n"})]}})
    status, _, _ = run(tmp_path, conflicting_pair(), fake, {"verify": BOTH}, {"shared.txt": "base\n"})
    assert status == "completed"
    (text,) = seen
    assert text.startswith("<<<<<<< ") and "alpha\n=======\nbeta\n>>>>>>> " in text


def test_taking_one_side_fails_the_other_tasks_verify_and_the_next_round_is_told_why(tmp_path: Path) -> None:
    fake = pair_fake(edits({"shared.txt": "beta\n"}), edits({"shared.txt": "alpha\nbeta\n"}))
    status, run_id, repo = run(tmp_path, conflicting_pair(), fake, {"verify": BOTH}, {"shared.txt": "base\n"})
    assert status == "completed"
    first, second = fake.requests_for("resolver")
    assert "not accepted" not in first.prompt
    assert "Round 2 of 3: your previous result was not accepted" in second.prompt
    assert "`grep -q alpha shared.txt` exited 1" in second.prompt
    (done,) = kinds(repo, run_id, "integration.resolved")
    assert done["data"]["rounds"] == 2 and done["data"]["ok"]


def test_an_unresolved_conflict_fails_the_run_with_a_report_naming_files_tasks_and_what_was_tried(
        tmp_path: Path) -> None:
    fake = pair_fake(edits({"other.txt": "x\n"}))  # leaves the markers in place
    status, run_id, repo = run(tmp_path, conflicting_pair(), fake, {"verify": BOTH, "max_rounds": 2},
                               {"shared.txt": "base\n"})
    assert status == "failed"
    assert len(fake.requests_for("resolver")) == 2
    (finished,) = kinds(repo, run_id, "run.finished")
    assert "integration conflict not resolved" in finished["data"]["why"]
    assert "conflict markers are still in shared.txt" in finished["data"]["why"]
    report = (run_dir(repo, run_id) / "INTEGRATION-REPORT.md").read_text()
    assert "## Conflict: `b` with `a` — resolver `claude`, NOT accepted" in report
    assert "Conflicted files: `shared.txt`" in report and "### Round 2" in report
    assert not kinds(repo, run_id, "delivered")
    assert git(repo, "show", "HEAD:shared.txt") == "base", "the user's branch is untouched"


def test_without_integration_agents_a_conflict_fails_the_run_and_no_resolver_runs(tmp_path: Path) -> None:
    fake = pair_fake(edits({"shared.txt": "alpha\nbeta\n"}))
    status, run_id, repo = run(tmp_path, conflicting_pair(), fake, {"verify": BOTH, "agents": False},
                               {"shared.txt": "base\n"})
    assert status == "failed" and not fake.requests_for("resolver")
    (finished,) = kinds(repo, run_id, "run.finished")
    assert finished["data"]["why"].startswith("integration conflict: plait/")


def test_the_script_agent_resolves_with_its_scripted_resolution(tmp_path: Path) -> None:
    tasks = [task("a", {"shared.txt": "alpha\n"}, verify="grep -q alpha shared.txt"),
             task("b", {"shared.txt": "beta\n"}, verify="grep -q beta shared.txt")]
    tasks[1]["script"]["resolve"] = {"shared.txt": "alpha\nbeta\n"}
    status, run_id, repo = run(tmp_path, tasks, None, {"verify": BOTH}, {"shared.txt": "base\n"})
    assert status == "completed"
    assert git(repo, "show", f"plait/{run_id}/integration:shared.txt") == "alpha\nbeta"


SEMANTIC = 'grep -q "calls=$(sed s/name=// lib.txt)" use.txt'


def semantic_pair() -> tuple[list[dict[str, Any]], dict[str, str]]:
    """a renames the function, b adds a caller of the old name: each passes alone, together they fail."""
    return ([task("a", {"lib.txt": "name=new\n"}, verify="grep -q name=new lib.txt"),
             task("b", {"use.txt": "calls=old\n"}, verify="test -f use.txt")], {"lib.txt": "name=old\n"})


def semantic_fake(*engineer: Outcome) -> FakeAgent:
    return FakeAgent({"a": [edits({"lib.txt": "name=new\n"})], "b": [edits({"use.txt": "calls=old\n"})]},
                     roles={"integration-engineer": {"integration": list(engineer)}})


def test_a_semantic_conflict_is_repaired_by_the_integration_engineer_and_reported(tmp_path: Path) -> None:
    tasks, files = semantic_pair()
    fake = semantic_fake(edits({"use.txt": "calls=new\n"}, cost=0.25))
    status, run_id, repo = run(tmp_path, tasks, fake, {"verify": SEMANTIC}, files)
    assert status == "completed"
    branch = f"plait/{run_id}/integration"
    assert git(repo, "show", f"{branch}:use.txt") == "calls=new"
    merge_commit = git(repo, "rev-parse", f"{branch}^")
    assert len(git(repo, "rev-list", "--parents", "-n1", merge_commit).split()) == 3, "the repair sits on the merge"
    (prompt,) = [r.prompt for r in fake.requests_for("integration-engineer")]
    assert prompt.startswith("You are the integration engineer.")
    assert f"the integration test `{SEMANTIC}` exits 1" in prompt
    assert "Task a: task a" in prompt and "Task b: task b" in prompt and "- use.txt" in prompt
    verified = [e["data"]["ok"] for e in kinds(repo, run_id, "integration.verified")]
    assert verified == [False, True]
    (repaired,) = kinds(repo, run_id, "integration.repaired")
    assert repaired["data"]["ok"] and repaired["data"]["files"] == ["use.txt"] and not repaired["data"]["test_files"]
    report = (run_dir(repo, run_id) / "INTEGRATION-REPORT.md").read_text()
    assert "Agents changed the merged result" in report and "Files the agent changed: `use.txt`" in report
    doc = merged_doc(repo, run_id)
    assert doc["verification"]["ok"] and doc["integration"]["changed_by_agents"][0]["kind"] == "integration-test"


def test_an_engineer_that_changes_tests_is_called_out(tmp_path: Path) -> None:
    tasks, files = semantic_pair()
    fake = semantic_fake(edits({"use.txt": "calls=new\n", "tests/test_use.py": "assert True\n"}))
    status, run_id, repo = run(tmp_path, tasks, fake, {"verify": SEMANTIC}, files)
    assert status == "completed"
    (repaired,) = kinds(repo, run_id, "integration.repaired")
    assert repaired["data"]["test_files"] == ["tests/test_use.py"]
    assert "**It changed test files**: `tests/test_use.py`" in (run_dir(repo, run_id) / "INTEGRATION-REPORT.md"
                                                                 ).read_text()


def test_a_repair_that_never_passes_fails_the_run_after_its_rounds(tmp_path: Path) -> None:
    tasks, files = semantic_pair()
    fake = semantic_fake(edits({"notes.txt": "tried\n"}))
    status, run_id, repo = run(tmp_path, tasks, fake, {"verify": SEMANTIC, "max_rounds": 2}, files)
    assert status == "failed"
    assert len(fake.requests_for("integration-engineer")) == 2
    (finished,) = kinds(repo, run_id, "run.finished")
    assert "the integration engineer could not repair it" in finished["data"]["why"]
    assert not kinds(repo, run_id, "delivered")


def test_an_engineer_agent_failure_ends_the_repair(tmp_path: Path) -> None:
    tasks, files = semantic_pair()
    fake = semantic_fake(failure(ErrorKind.CRASH, "boom"))
    status, run_id, repo = run(tmp_path, tasks, fake, {"verify": SEMANTIC}, files)
    assert status == "failed" and len(fake.requests_for("integration-engineer")) == 1
    (repaired,) = kinds(repo, run_id, "integration.repaired")
    assert "crash" in repaired["data"]["error"]


def test_the_end_review_rejects_once_the_fixer_fixes_and_the_full_test_judges(tmp_path: Path) -> None:
    fake = FakeAgent({"a": [edits({"a.txt": "a\n"})], "b": [edits({"b.txt": "b\n"})]},
                     roles={"reviewer": {"integration": [request_changes("a.txt: say hello"), approve()]},
                            "fixer": {"integration": [edits({"a.txt": "hello\n"})]}})
    tasks = [task("a", {"a.txt": "a\n"}, acceptance=["a.txt greets"]), task("b", {"b.txt": "b\n"})]
    status, run_id, repo = run(tmp_path, tasks, fake, {"verify": "test -f a.txt && test -f b.txt"}, review="end")
    assert status == "completed"
    assert git(repo, "show", f"plait/{run_id}/integration:a.txt") == "hello"
    first, second = fake.requests_for("reviewer")
    assert first.task_id == "integration" and "a: a.txt greets" in first.prompt
    assert "- a.txt: say hello" in second.prompt  # what the previous review asked for
    assert [e["data"]["verdict"] for e in kinds(repo, run_id, "integration.reviewed")] == ["changes_requested",
                                                                                           "approved"]
    assert "## End review" in (run_dir(repo, run_id) / "INTEGRATION-REPORT.md").read_text()
    assert merged_doc(repo, run_id)["integration"]["end_review"]["approved"] is True


def test_an_end_review_that_never_approves_fails_the_run(tmp_path: Path) -> None:
    fake = FakeAgent({"a": [edits({"a.txt": "a\n"})]},
                     roles={"reviewer": {"integration": [request_changes("no")]}})
    status, run_id, repo = run(tmp_path, [task("a", {"a.txt": "a\n"})], fake, {"verify": "test -f a.txt"},
                               review="end", max_rounds=2)
    assert status == "failed" and len(fake.requests_for("reviewer")) == 2
    (finished,) = kinds(repo, run_id, "run.finished")
    assert "end review" in finished["data"]["why"] and "needs a human" in finished["data"]["why"]


def test_the_integration_verifier_marks_the_concerns_against_the_code(tmp_path: Path) -> None:
    from plait.agents.base import AgentResult, Tokens

    def says(files: dict[str, str], summary: str) -> Outcome:
        return Outcome(AgentResult(True, 0, summary, tokens=Tokens(10, 1), turns=1), files)

    marks = {"concerns": [{"n": 1, "status": "not aligned", "reason": "api.txt:1: greet takes two arguments"},
                          {"n": 7, "status": "aligned"}]}
    fake = FakeAgent({"api": [says({"api.txt": "greet(name, lang)\n"}, "PROVIDES: `greet(name) -> str`")],
                      "ui": [says({"ui.txt": "greet(name)\n"}, "ASSUMES: `greet(name) -> str`\n"
                                                               "ASSUMES: `farewell()` exists")]},
                     roles={"integration-verifier": {"integration": [Outcome(AgentResult(
                         True, 0, f"Read both.\n{json.dumps(marks)}", cost_usd=0.1), {})]}})
    toml = '[profiles.integration-verifier]\nadapter = "claude"\n'
    tasks = [task("api", {"api.txt": "x\n"}), task("ui", {"ui.txt": "x\n"})]
    status, run_id, repo = run(tmp_path, tasks, fake, {"verify": "test -f api.txt"}, {"plait.toml": toml})
    assert status == "completed"
    (request,) = fake.requests_for("integration-verifier")
    assert "1. ui assumes: `greet(name) -> str`" in request.prompt and "statements alone: aligned" in request.prompt
    found = merged_doc(repo, run_id)["integration_concerns"]
    assert [(c["interface"], c["status"], c["marked_by"]) for c in found] == [
        ("greet(name) -> str", "not aligned", "integration-verifier"), ("farewell()", "unknown", "plait")]
    assert found[0]["reason"] == "api.txt:1: greet takes two arguments"
    (event,) = kinds(repo, run_id, "integration.concerns")
    assert event["data"]["marked"] == 1 and event["data"]["concerns"] == 2


def test_without_an_integration_verifier_profile_plait_marks_the_concerns_alone(tmp_path: Path) -> None:
    fake = FakeAgent({"a": [edits({"a.txt": "a\n"})]})
    status, run_id, repo = run(tmp_path, [task("a", {"a.txt": "a\n"})], fake, {"verify": "test -f a.txt"})
    assert status == "completed" and not fake.requests_for("integration-verifier")
    assert not kinds(repo, run_id, "integration.concerns")


def test_an_end_review_by_the_script_agent_is_refused_before_the_run_starts(tmp_path: Path) -> None:
    from plait.errors import PlaitError

    repo = make_repo(tmp_path / "repo", {"README.md": "x\n"})
    plan = write_plan(repo, [task("a", {"a.txt": "a\n"})], defaults={"agent": "script", "review": "end"})
    try:
        api.start(plan, RunOptions(jobs=1), cwd=repo)
    except PlaitError as exc:
        assert "`review: end`" in str(exc) and "script" in str(exc) and exc.location is not None
    else:
        raise AssertionError("the run started")


def test_a_broken_resolver_role_override_is_refused_before_the_run_starts(tmp_path: Path) -> None:
    from plait.errors import PlaitError

    repo = make_repo(tmp_path / "repo", {"README.md": "x\n"})
    (repo / ".plait" / "roles").mkdir(parents=True)
    (repo / ".plait" / "roles" / "resolver.md").write_bytes(b"\xff\xfe not text")
    plan = write_plan(repo, [task("a", {"a.txt": "a\n"})], defaults={"agent": "script"})
    try:
        api.start(plan, RunOptions(jobs=1), cwd=repo)
    except PlaitError as exc:
        assert "resolver.md" in str(exc)
    else:
        raise AssertionError("the run started")
