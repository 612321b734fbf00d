"""The run's parent context (written at start) and merged context (written at the end, integration passed
or failed): FakeAgent plays the agents; git, SQLite, workspaces and the sandbox are real."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from plait import api
from plait.agents.base import AgentResult, Tokens
from plait.run import merged
from plait.run.engine import RunOptions
from plait.testing import FakeAgent, VirtualClock
from plait.testing.fake import Outcome, crash, edits
from runfixtures import make_repo, task, write_plan


def says(files: Mapping[str, str], summary: str) -> Outcome:
    """Write `files` and finish with `summary` as the agent's final message."""
    return Outcome(AgentResult(True, 0, summary, tokens=Tokens(10, 1), turns=1, files_changed=tuple(files)), files)


def run(tmp_path: Path, tasks: list[dict[str, Any]], fake: FakeAgent, seen: list[dict[str, Any]] | None = None,
        **extra: Any) -> tuple[str, str, api.Repo]:
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n"})
    plan = write_plan(repo, tasks, defaults={"agent": "claude", "retries": 0}, **extra)
    handle, run_id = api.start(plan, RunOptions(jobs=2), cwd=repo)
    parent = handle.root / ".plait" / "runs" / run_id / merged.PARENT_FILE

    def listener(kind: str, task_id: str | None, data: Mapping[str, Any]) -> None:
        if kind == "task.started" and seen is not None:
            seen.append(json.loads(parent.read_text()))

    status = api.execute(handle, run_id, listener, make_agent=lambda profile: fake, clock=VirtualClock())
    return status, run_id, handle


def doc(repo: api.Repo, run_id: str, name: str = merged.MERGED_FILE) -> dict[str, Any]:
    found: dict[str, Any] = json.loads((repo.root / ".plait" / "runs" / run_id / name).read_text())
    return found


def test_the_parent_context_is_written_before_any_task_starts(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []
    fake = FakeAgent({"a": [edits({"a.txt": "a\n"})], "b": [edits({"b.txt": "b\n"})]})
    tasks = [task("a", {"a.txt": "a\n"}, acceptance=["a.txt exists"], role="backend"),
             task("b", {"b.txt": "b\n"}, needs=["a"], acceptance=["b.txt exists"])]
    status, _, _ = run(tmp_path, tasks, fake, seen, spec="README.md",
                               contracts=[{"path": "a.txt", "owner": "a", "description": "the a file"}],
                               integration={"verify": "test -f a.txt"})
    assert status == "completed"
    assert seen, "the parent context existed when the first task started"
    parent = seen[0]
    assert parent["schema"] == merged.PARENT_SCHEMA
    assert parent["feature"]["name"] == "test plan" and parent["feature"]["spec"] == "README.md"
    assert [(t["id"], t["role"], t["needs"], t["files"]) for t in parent["tasks"]] == [
        ("a", "backend", [], ["a.txt"]), ("b", "software-engineer", ["a"], ["b.txt"])]
    assert parent["shared_constraints"] == [{"path": "a.txt", "owner": "a", "description": "the a file"}]
    assert parent["integration_requirements"] == {"verify": "test -f a.txt"}
    assert parent["success_criteria"] == {"a": ["a.txt exists"], "b": ["b.txt exists"]}


def test_a_completed_run_merges_every_task_its_files_and_the_integration_test(tmp_path: Path) -> None:
    fake = FakeAgent({"a": [says({"a.txt": "a\n"}, "Built a.\nDECISION: plain text files\nPENDING: add docs")],
                      "b": [says({"b.txt": "b\n", "shared.txt": "s\n"}, "Built b.\nPENDING: add docs")]})
    tasks = [task("a", {"a.txt": "a\n"}), task("b", {"b.txt": "b\n"})]
    status, run_id, repo = run(tmp_path, tasks, fake, integration={"verify": "test -f a.txt && test -f b.txt"})
    assert status == "completed"
    out = doc(repo, run_id)
    assert out["schema"] == merged.MERGED_SCHEMA and out["run_status"] == "completed"
    assert out["phase"] == "integration-verified"
    summary = {t["task_id"]: t for t in out["parallel_execution_summary"]["tasks"]}
    assert {tid: t["status"] for tid, t in summary.items()} == {"a": "done", "b": "done"}
    assert summary["a"]["files_changed"] == ["a.txt"] and summary["b"]["files_count"] == 2
    assert all(t["duration_seconds"] is not None and t["commit"] for t in summary.values())
    assert sorted(out["files_modified"]) == ["a.txt", "b.txt", "shared.txt"]
    assert out["decisions"] == [{"task_id": "a", "text": "plain text files"}]
    assert {"text": "add docs", "task_ids": ["a", "b"]} in out["pending_actions"]
    verification = out["verification"]
    assert verification["command"] == "test -f a.txt && test -f b.txt"
    assert verification["exit_code"] == 0 and verification["ok"] is True
    assert out["integration"]["ok"] is True and out["integration"]["merged"] == ["a", "b"]
    # Each task's context.json carries what its agent stated.
    context = json.loads((repo.root / ".plait" / "runs" / run_id / "tasks" / "a" / "context.json").read_text())
    assert context["decisions"] == ["plain text files"] and "add docs" in context["pending_actions"]
    assert context["contract_assumptions"] == [] and context["provides"] == []
    entry = api.status(run_id, cwd=repo.root)["merged_context"]
    assert entry["phase"] == "integration-verified" and entry["path"].endswith(merged.MERGED_FILE)


def test_assumptions_meet_what_other_tasks_provide(tmp_path: Path) -> None:
    fake = FakeAgent({
        "api": [says({"api.txt": "api\n"}, "Built the API.\nPROVIDES: `greet(name) -> str` in api.txt\n"
                                             "PROVIDES: `farewell(name) -> str`")],
        "ui": [says({"ui.txt": "ui\n"}, "Built the UI.\n- ASSUMES: `greet(name) -> str` returns a greeting\n"
                                          "- ASSUMES: `farewell(name, lang) -> str`\n- ASSUMES: `api.txt` exists")],
    })
    tasks = [task("api", {"api.txt": "api\n"}), task("ui", {"ui.txt": "ui\n"})]
    status, run_id, repo = run(tmp_path, tasks, fake)
    assert status == "completed"
    context = json.loads((repo.root / ".plait" / "runs" / run_id / "tasks" / "ui" / "context.json").read_text())
    assert context["contract_assumptions"][0] == "`greet(name) -> str` returns a greeting"
    found = {c["interface"]: c for c in doc(repo, run_id)["integration_concerns"]}
    assert found["greet(name) -> str"]["status"] == "aligned" and found["greet(name) -> str"]["provider"] == "api"
    assert found["farewell(name, lang) -> str"]["status"] == "not aligned"
    assert found["farewell(name, lang) -> str"]["provided"] == "`farewell(name) -> str`"
    assert found["api.txt"]["status"] == "unknown" and found["api.txt"]["provider"] == "api"
    assert all(c["assumer"] == "ui" for c in found.values())
    entry = api.status(run_id, cwd=repo.root)["merged_context"]
    assert entry["concerns"] == {"aligned": 1, "not aligned": 1, "unknown": 1}


def test_a_failed_integration_still_writes_the_merged_context(tmp_path: Path) -> None:
    fake = FakeAgent({"a": [edits({"a.txt": "a\n"})]})
    status, run_id, repo = run(tmp_path, [task("a", {"a.txt": "a\n"})], fake,
                               integration={"verify": "echo integration broke; exit 3"})
    assert status == "failed"
    out = doc(repo, run_id)
    assert out["phase"] == "integration-failed" and out["run_status"] == "failed"
    assert out["verification"]["exit_code"] == 3 and out["verification"]["ok"] is False
    assert "integration broke" in out["verification"]["output_tail"]
    assert out["files_modified"] == ["a.txt"]


def test_a_run_that_never_integrates_still_writes_the_merged_context(tmp_path: Path) -> None:
    fake = FakeAgent({"a": [edits({"a.txt": "a\n"})], "b": [crash()]})
    tasks = [task("a", {"a.txt": "a\n"}), task("b", {"b.txt": "b\n"})]
    status, run_id, repo = run(tmp_path, tasks, fake, integration={"verify": "true"})
    assert status == "failed"
    out = doc(repo, run_id)
    assert out["phase"] == "integration-not-run" and out["integration"] is None and out["verification"] is None
    states = {t["task_id"]: t["status"] for t in out["parallel_execution_summary"]["tasks"]}
    assert states == {"a": "done", "b": "failed"}


def test_the_merged_context_is_valid_json_with_its_schema_and_no_secret(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-merged-ctx-0123456789"
    monkeypatch.setenv("MY_SERVICE_TOKEN", secret)
    fake = FakeAgent({"a": [says({"a.txt": "a\n"}, f"Done.\nDECISION: use key {secret}\n"
                                                   f"ASSUMES: `{secret}` is valid")]})
    status, run_id, repo = run(tmp_path, [task("a", {"a.txt": "a\n"})], fake)
    assert status == "completed"
    for name in (merged.PARENT_FILE, merged.MERGED_FILE):
        text = (repo.root / ".plait" / "runs" / run_id / name).read_text()
        assert secret not in text
        assert json.loads(text)["schema"] in (merged.PARENT_SCHEMA, merged.MERGED_SCHEMA)
    assert doc(repo, run_id)["decisions"] == [{"task_id": "a", "text": "use key ***"}]


def test_concerns_pair_assumptions_with_providers_deterministically() -> None:
    docs = {
        "a": {"provides": ["`src/x.py:load(path)` reads the file"], "files_modified": ["src/x.py"]},
        "b": {"contract_assumptions": ["`src/x.py:load(path)`", "`src/x.py:save(path)`", "`nothing()`"]},
        "c": {"contract_assumptions": ["`api/schema.json` holds the schema"]},
    }
    found = merged.concerns(docs, [("api/*.json", "a")])
    assert [(c["assumer"], c["interface"], c["provider"], c["status"]) for c in found] == [
        ("b", "src/x.py:load(path)", "a", "aligned"),
        ("b", "src/x.py:save(path)", "a", "unknown"),
        ("b", "nothing()", None, "unknown"),
        ("c", "api/schema.json", "a", "unknown"),
    ]
    assert merged.interface("plain words here.") == "plain"
