"""What an implementing agent is told: its role's text first, the constitution and the spec, the task, its
acceptance criteria, scope, frozen contracts and its dependencies' summaries; and the one-line errors when
the plan's documents cannot be read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from plait import api
from plait.errors import PlaitError
from plait.git.repo import Git
from plait.roles import builtin
from plait.run.engine import RunOptions
from plait.run.prompts import MAX_DOCUMENT_CHARS, read_document, role_for
from plait.testing import FakeAgent, VirtualClock
from plait.testing.fake import edits
from runfixtures import git, make_repo, plait, task, write_plan

SPEC = "# Cart\nUsers keep a cart across sessions.\n"
RULES = "# Rules\nEvery module has a test.\n"


def start_run(tmp_path: Path, tasks: list[dict[str, Any]], files: dict[str, str] | None = None,
              **extra: Any) -> tuple[str, FakeAgent, Path]:
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n", **(files or {})})
    plan = write_plan(repo, tasks, defaults={"agent": "claude"}, **extra)
    fake = FakeAgent({t["id"]: [edits({f"{t['id']}.txt": "x\n"})] for t in tasks})
    handle, run_id = api.start(plan, RunOptions(jobs=1), cwd=repo)
    status = api.execute(handle, run_id, make_agent=lambda profile: fake, clock=VirtualClock())
    return status, fake, repo


def prompt_of(fake: FakeAgent, task_id: str) -> str:
    (request,) = [r for r in fake.requests if r.task_id == task_id]
    return request.prompt


def test_the_prompt_opens_with_the_role_and_carries_constitution_spec_task_contracts_and_context(
        tmp_path: Path) -> None:
    tasks = [task("api", files=["api.h"]),
             task("impl", needs=["api"], files=["impl.c"], acceptance=["impl.c compiles"], verify="true")]
    status, fake, _ = start_run(tmp_path, tasks, {"docs/spec.md": SPEC, "docs/constitution.md": RULES},
                                spec="docs/spec.md", constitution="docs/constitution.md",
                                contracts=[{"path": "api.h", "owner": "api"}])
    assert status == "completed"
    prompt = prompt_of(fake, "impl")
    assert prompt.startswith(builtin("software-engineer").strip())
    order = [RULES.strip(), SPEC.strip(), "# Task impl: task impl", "## Acceptance criteria\n- impl.c compiles",
             "## Scope\nChange only these paths (changes elsewhere are reported as deviations):\n- impl.c\n",
             "## Frozen contracts (do not change)\n- api.h (owned by api)",
             "- api: task api. Changed 1 file(s): api.txt", "plait runs `true` in this worktree"]
    at = [prompt.index(part) for part in order]
    assert at == sorted(at), "role, constitution, spec, task, criteria, scope, contracts, context, verify"
    assert "Frozen contracts" not in prompt_of(fake, "api")  # its own contract is not frozen for its owner


def test_a_task_role_picks_the_role_text_and_a_project_file_overrides_it(tmp_path: Path) -> None:
    override = "You are this project's tester. Use pytest only.\n"
    tasks = [task("t", role="tester"), task("s", role="sdet"), task("b", role="backend"), task("q", role="qa")]
    status, fake, _ = start_run(tmp_path, tasks, {".plait/roles/qa.md": override})
    assert status == "completed"
    assert prompt_of(fake, "t").startswith(builtin("sdet").strip())  # an alias of a role plait ships
    assert prompt_of(fake, "s").startswith(builtin("sdet").strip())
    backend = prompt_of(fake, "b")
    assert backend.startswith(builtin("software-engineer").strip())
    assert "calls your role on this team `backend`" in backend
    assert prompt_of(fake, "q").startswith(override.strip())  # a custom role the project defines
    assert [r.role for r in sorted(fake.requests, key=lambda r: r.task_id)] == [
        "software-engineer", "qa", "sdet", "sdet"]


def test_a_project_override_of_a_builtin_role_is_used(tmp_path: Path) -> None:
    mine = "You are an engineer at ACME. Write Go, never Python.\n"
    status, fake, _ = start_run(tmp_path, [task("a")], {".plait/roles/software-engineer.md": mine})
    assert status == "completed"
    prompt = prompt_of(fake, "a")
    assert prompt.startswith(mine.strip()) and builtin("software-engineer").strip() not in prompt


def test_the_spec_at_the_base_commit_wins_and_an_uncommitted_one_is_read_from_the_working_tree(
        tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n", "spec.md": "committed spec\n"})
    (repo / "spec.md").write_text("edited, not committed\n")
    (repo / "rules").mkdir()
    (repo / "rules" / "b.md").write_text("rule b\n")
    (repo / "rules" / "a.md").write_text("rule a\n")
    (repo / "rules" / "notes.txt").write_text("not markdown\n")
    plan = write_plan(repo, [task("a")], defaults={"agent": "claude"}, spec="spec.md", constitution="rules")
    fake = FakeAgent({}, default=edits({"out.txt": "x\n"}))
    handle, run_id = api.start(plan, RunOptions(), cwd=repo)
    assert api.execute(handle, run_id, make_agent=lambda p: fake, clock=VirtualClock()) == "completed"
    prompt = prompt_of(fake, "a")
    assert "committed spec" in prompt and "not committed" not in prompt  # what the agents' trees hold
    assert prompt.index("rule a") < prompt.index("rule b") and "not markdown" not in prompt


def test_a_document_read_from_a_file_is_capped(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n", "spec.md": "s" * (MAX_DOCUMENT_CHARS * 2)})
    text = read_document(Git.discover(repo), git(repo, "rev-parse", "HEAD"), repo, "spec.md")
    assert len(text) <= MAX_DOCUMENT_CHARS and "characters cut; the rest is in spec.md" in text


@pytest.mark.parametrize(("key", "value", "problem"), [
    ("spec", "docs/missing.md", "not found in commit"),
    ("constitution", "docs/constitutions/current", "not found in commit"),
    ("spec", "../outside.md", "is outside the repository"),
])
def test_a_plan_document_that_cannot_be_read_is_a_located_one_line_error_at_start(
        tmp_path: Path, key: str, value: str, problem: str) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n"})
    plan = write_plan(repo, [task("a")], defaults={"agent": "claude"}, **{key: value})
    with pytest.raises(PlaitError) as caught:
        api.start(plan, RunOptions(), cwd=repo)
    text = str(caught.value)
    line = next(i for i, row in enumerate(plan.read_text().splitlines(), start=1) if row.startswith(f"{key}:"))
    assert text.startswith(f"{plan}:{line}:") and f"{key} {value!r}: {problem}" in text and "\n" not in text
    assert " — " in text  # with how to fix it
    assert api.open_repo(repo).store.runs() == [], "nothing was recorded"


def test_the_cli_prints_the_missing_spec_as_one_line_without_a_traceback(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n"})
    plan = write_plan(repo, [task("a", {"a.txt": "a"})], spec="specs/a1b2c3/spec.md")
    done = plait(repo, "run", str(plan))
    assert done.returncode == 1 and "Traceback" not in done.stderr + done.stdout
    errors = [line for line in done.stderr.splitlines() if "spec" in line]
    assert len(errors) == 1 and "specs/a1b2c3/spec.md" in errors[0] and "not found" in errors[0], done.stderr


def test_an_oversized_role_override_stops_the_run_before_it_starts(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n"})
    (repo / ".plait" / "roles").mkdir(parents=True)
    (repo / ".plait" / "roles" / "software-engineer.md").write_text("x" * 70_000)
    plan = write_plan(repo, [task("a")], defaults={"agent": "claude"})
    with pytest.raises(PlaitError) as caught:
        api.start(plan, RunOptions(), cwd=repo)
    assert "software-engineer.md" in str(caught.value) and "over 64 KB" in str(caught.value)


def test_role_names_that_are_not_plain_words_never_reach_the_file_system(tmp_path: Path) -> None:
    (tmp_path / ".plait" / "roles").mkdir(parents=True)
    (tmp_path / "evil.md").write_text("not a role")
    assert role_for("../../evil", tmp_path) == "software-engineer"
    assert role_for(None, tmp_path) == "software-engineer" and role_for("Tester", tmp_path) == "sdet"
