"""spec -> plan -> go: role agents run in sandboxed workspaces from HEAD, and only the requested files
reach the user's checkout. The agents here are fakes (FakeAgent, a small prompt-reading writer, and a
`shell` profile running a script); git, workspaces, the sandbox and the runs are real."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console

from gitfixtures import git, make_repo
from plait import api
from plait.agents.base import Agent, AgentRequest, AgentResult, ErrorKind, Profile
from plait.commands.workflow import go
from plait.errors import PlaitError
from plait.git.repo import Git
from plait.run.engine import RunOptions
from plait.testing import FakeAgent
from plait.testing.fake import crash, edits, failure
from plait.workflow.context import Settings, choose_profile, documents
from plait.workflow.plan import write_plan
from plait.workflow.spec import SECTIONS, missing_sections, slug, write_spec

SPEC = "# Hello\n\n" + "".join(f"## {s}\n\nSome {s.lower()}.\n\n" for s in SECTIONS)
GOOD_PLAN = textwrap.dedent("""\
    plait: 1
    name: hello
    defaults: {agent: script, verify: "test -f hello.txt"}
    tasks:
      - id: hello
        title: Write hello
        prompt: Write hello.txt.
        files: [hello.txt]
        size: S
        acceptance: [hello.txt exists]
        script: {write: {hello.txt: "hello\\n"}}
    """)
BAD_PLAN = GOOD_PLAN.replace("    size: S\n", "    size: S\n    needs: [nosuch]\n")
TARGET = re.compile(r"to `([^`]+)` \(relative to your working directory")


class WritingAgent:
    """Writes the file its prompt names: the next of `texts[role]` (the last repeats; None writes nothing),
    plus a stray file that must never reach the checkout."""

    name = "writing"

    def __init__(self, texts: dict[str, list[str | None]]) -> None:
        self.texts = texts
        self.requests: list[AgentRequest] = []
        self.seeded: list[bool] = []  # whether the target already held the previous draft

    def run(self, request: AgentRequest) -> AgentResult:
        self.requests.append(request)
        found = TARGET.search(request.prompt)
        assert found, "the prompt names the file to write"
        target = request.worktree / found.group(1)
        self.seeded.append(target.exists())
        texts = self.texts[request.task_id]
        text = texts[min(sum(r.task_id == request.task_id for r in self.requests) - 1, len(texts) - 1)]
        if text is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        (request.worktree / "stray.txt").write_text("not requested\n")
        return AgentResult(True, 0, "wrote it")


def factory(agent: Agent) -> Callable[[Profile], Agent]:
    return lambda _profile: agent


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with an architecture document, and a user mid-work (staged, unstaged, untracked)."""
    root = make_repo(tmp_path / "repo", {"README.md": "# demo\n", "ARCHITECTURE.md": "# Layers\nkeep them\n",
                                         "src/app.py": "x = 1\n"})
    (root / "README.md").write_text("# demo\nstaged\n")
    git(root, "add", "README.md")
    (root / "src/app.py").write_text("x = 2\n")
    (root / "notes.txt").write_text("mine\n")
    return root


def user_view(root: Path) -> tuple[str, str, set[str]]:
    status = git(root, "status", "--porcelain", "--untracked-files=all")
    return git(root, "rev-parse", "HEAD"), git(root, "ls-files", "--stage"), set(status.splitlines())


def spec_at(root: Path, folder: str = "specs/abc123-hello") -> Path:
    (root / folder).mkdir(parents=True)
    (root / folder / "spec.md").write_text(SPEC)
    return root / folder / "spec.md"


def test_a_spec_lands_in_its_folder_and_nothing_else_reaches_the_checkout(repo: Path) -> None:
    head, index, status = user_view(repo)
    agent = WritingAgent({"spec-writer": [SPEC]})
    written = write_spec(Git.discover(repo), repo, "Add a hello file!", make_agent=factory(agent))
    assert re.fullmatch(r"specs/[0-9a-f]{6}-add-a-hello-file/spec\.md", written.rel)
    assert written.path.read_text() == SPEC and missing_sections(written.path.read_text()) == []
    assert written.rounds == 1
    after_head, after_index, after_status = user_view(repo)
    assert (after_head, after_index) == (head, index)
    assert after_status == status | {f"?? {written.rel}"}, "only the spec is new; stray.txt stayed behind"
    assert not (repo / "stray.txt").exists()
    (request,) = agent.requests
    assert "# Layers\nkeep them" in request.prompt and "src/app.py 6" in request.prompt
    assert "Add a hello file!" in request.prompt and request.confine is not None
    assert not request.worktree.is_relative_to(repo), "the agent works outside the checkout"
    evidence = json.loads((written.evidence / "spec-1" / "result.json").read_text())
    assert evidence["ignored"] == ["stray.txt"] and evidence["ok"]


def test_a_spec_missing_a_section_is_asked_for_once_more(repo: Path) -> None:
    incomplete = SPEC.replace("## Test Plan", "## Tests")
    agent = WritingAgent({"spec-writer": [incomplete, SPEC]})
    written = write_spec(Git.discover(repo), repo, "hello", make_agent=factory(agent))
    assert written.rounds == 2 and written.path.read_text() == SPEC
    assert "Test Plan" in agent.requests[1].prompt.split("## Your previous draft is incomplete")[1]
    assert agent.seeded == [False, True], "the second run starts from the first draft"


def test_a_spec_still_incomplete_after_the_retry_is_kept_as_a_draft(repo: Path) -> None:
    incomplete = SPEC.replace("## Open Questions", "## Questions")
    agent = WritingAgent({"spec-writer": [incomplete]})
    with pytest.raises(PlaitError, match="no Open Questions section after a retry") as info:
        write_spec(Git.discover(repo), repo, "hello", make_agent=factory(agent))
    (draft,) = (repo / "specs").glob("*/spec.draft.md")
    assert draft.read_text() == incomplete and not (draft.parent / "spec.md").exists()
    assert str(info.value.location) == str(draft) and " — " in str(info.value)
    assert len(agent.requests) == 2


def test_a_failing_agent_is_one_error_and_writes_nothing(repo: Path) -> None:
    before = user_view(repo)
    fake = FakeAgent({"spec-writer": [crash()]})
    with pytest.raises(PlaitError, match=r"the spec-writer agent \(claude\) failed: crash") as info:
        write_spec(Git.discover(repo), repo, "hello", make_agent=factory(fake))
    assert "logs are in" in info.value.fix and user_view(repo) == before
    assert fake.requests[0].task_id == "spec-writer"


def test_an_existing_plan_is_not_overwritten_without_force(repo: Path) -> None:
    spec = spec_at(repo)
    (spec.parent / "plan.yaml").write_text("mine\n")
    fake = FakeAgent({"planner": [edits({"specs/abc123-hello/plan.yaml": GOOD_PLAN})]})
    with pytest.raises(PlaitError, match=r"plan\.yaml already exists") as info:
        write_plan(Git.discover(repo), repo, spec, make_agent=factory(fake))
    assert "--force" in info.value.fix and fake.requests == [], "refused before any agent ran"
    assert (spec.parent / "plan.yaml").read_text() == "mine\n"
    write_plan(Git.discover(repo), repo, spec, force=True, make_agent=factory(fake))
    assert (spec.parent / "plan.yaml").read_text() == GOOD_PLAN


def test_the_repair_loop_feeds_the_errors_back_and_ends_in_a_checked_plan(repo: Path) -> None:
    spec = spec_at(repo)
    head, index, status = user_view(repo)
    rel = "specs/abc123-hello/plan.yaml"
    fake = FakeAgent({"planner": [edits({rel: BAD_PLAN}), edits({rel: GOOD_PLAN})]})
    written = write_plan(Git.discover(repo), repo, spec, make_agent=factory(fake))
    assert written.rounds == 2 and len(fake.requests) == 2
    errors = (repo / ".plait/workflow/abc123-hello/plan-1/errors.txt").read_text().splitlines()
    assert errors and all(e.startswith(f"{rel}:") for e in errors) and "nosuch" in errors[0]
    second = fake.requests[1].prompt
    assert all(e in second for e in errors) and BAD_PLAN.strip() in second
    assert "nosuch" not in fake.requests[0].prompt
    assert written.path.read_text() == GOOD_PLAN
    check = json.loads((spec.parent / "check.json").read_text())
    assert check["valid"] and check["tasks"] == 1
    assert (spec.parent / "spec.md").read_text() == SPEC, "the spec was an input, not an output"
    assert user_view(repo) == (head, index, status | {f"?? {rel}", "?? specs/abc123-hello/check.json"})


def test_a_plan_that_never_validates_keeps_its_draft_and_errors(repo: Path) -> None:
    spec = spec_at(repo)
    fake = FakeAgent({"planner": [edits({"specs/abc123-hello/plan.yaml": BAD_PLAN})]})
    with pytest.raises(PlaitError, match=r"no valid plan after 2 round\(s\)"):
        write_plan(Git.discover(repo), repo, spec, rounds=2, make_agent=factory(fake))
    assert len(fake.requests) == 2 and not (spec.parent / "plan.yaml").exists()
    assert (spec.parent / "plan.draft.yaml").read_text() == BAD_PLAN
    errors = (spec.parent / "plan.errors.txt").read_text()
    assert errors.startswith("specs/abc123-hello/plan.draft.yaml:") and "nosuch" in errors


def test_a_plan_naming_an_unknown_profile_is_repaired(repo: Path) -> None:
    spec = spec_at(repo)
    rel = "specs/abc123-hello/plan.yaml"
    fake = FakeAgent({"planner": [edits({rel: GOOD_PLAN.replace("agent: script", "agent: nobody")}),
                                  edits({rel: GOOD_PLAN})]})
    written = write_plan(Git.discover(repo), repo, spec, make_agent=factory(fake))
    assert written.rounds == 2 and "unknown agent profile 'nobody'" in fake.requests[1].prompt


def test_go_yes_runs_from_the_request_to_a_completed_run(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo)
    head = git(repo, "rev-parse", "HEAD")
    agent = WritingAgent({"spec-writer": [SPEC], "planner": [GOOD_PLAN]})
    console = Console(file=open(os.devnull, "w"), width=120)  # noqa: SIM115 - the test's lifetime
    code = go("say hello", None, None, 3, True, RunOptions(jobs=2), console, interactive=False,
              make_agent=factory(agent))
    assert code == 0
    doc = api.status(cwd=repo)
    assert doc["status"] == "completed" and [t["id"] for t in doc["completed_tasks"]] == ["hello"]
    assert git(repo, "show", f"plait/{doc['run_id']}/hello:hello.txt") == "hello"
    assert git(repo, "rev-parse", "HEAD") == head and not (repo / "hello.txt").exists()


def test_go_at_a_terminal_asks_twice_and_stops_when_told_no(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo)
    asked: list[str] = []

    def answer(question: str, default: bool = False) -> bool:
        asked.append(question)
        return len(asked) == 1  # yes to planning, no to running

    monkeypatch.setattr("plait.commands.workflow.click.confirm", answer)
    agent = WritingAgent({"spec-writer": [SPEC], "planner": [GOOD_PLAN]})
    console = Console(file=open(os.devnull, "w"), width=120)  # noqa: SIM115 - the test's lifetime
    code = go("say hello", None, None, 3, False, RunOptions(), console, interactive=True, make_agent=factory(agent))
    assert code == 0 and len(asked) == 2 and asked[1].startswith("Run specs/")
    assert list((repo / "specs").glob("*/plan.yaml")) and not api.open_repo(repo).store.runs()


WRITER = """\
import re, sys
prompt = open(sys.argv[1]).read()
target = re.search(r"to `([^`]+)` \\(relative to your working directory", prompt).group(1)
text = SPEC if target.endswith("spec.md") else PLAN
import os
os.makedirs(os.path.dirname(target), exist_ok=True)
open(target, "w").write(text)
"""


def test_go_without_a_terminal_or_yes_stops_after_the_plan(repo: Path, tmp_path: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(f"SPEC = {SPEC!r}\nPLAN = {GOOD_PLAN!r}\n{WRITER}")
    (repo / "plait.toml").write_text(f'[profiles.writer]\nadapter = "shell"\n'
                                     f'command = "{sys.executable} {script} {{prompt_file}}"\n')
    done = subprocess.run([sys.executable, "-m", "plait", "go", "say hello", "--agent", "writer"], cwd=repo,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (plan,) = (repo / "specs").glob("*-say-hello/plan.yaml")
    assert plan.read_text() == GOOD_PLAN and (plan.parent / "spec.md").read_text() == SPEC
    assert "stopped before running" in done.stderr and "--yes" in done.stderr
    assert "Traceback" not in done.stderr
    assert not api.open_repo(repo).store.runs(), "nothing ran"


@pytest.mark.parametrize("args", [["plan", "missing/spec.md"], ["spec"], ["spec", "x", "--agent", "nosuch"]])
def test_bad_input_is_one_error_line(repo: Path, args: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "plait", *args], cwd=repo, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("plait: error: ") and " — " in lines[0], done.stderr


def test_which_profile_plays_a_role(repo: Path) -> None:
    (repo / "plait.toml").write_text('[profiles.planner]\nadapter = "claude"\n[profiles.fast]\nadapter = "codex"\n'
                                     '[workflow.roles]\nspec-writer = "fast"\n')
    from plait.workflow.context import settings

    conf = settings(repo)
    assert choose_profile(repo, "spec-writer", None, conf).name == "fast"
    assert choose_profile(repo, "planner", None, conf).name == "planner", "a profile named after the role"
    assert choose_profile(repo, "planner", "codex", conf).name == "codex"
    assert choose_profile(repo, "reviewer", None, Settings()).name == "claude"
    with pytest.raises(PlaitError, match="unknown agent profile 'nope'"):
        choose_profile(repo, "planner", "nope", conf)


def test_context_documents_are_found_and_capped(repo: Path) -> None:
    (repo / "docs/constitutions/current").mkdir(parents=True)
    (repo / "docs/constitutions/current/patterns.md").write_text("p" * 5000)
    docs = dict(documents(repo, Settings(context_bytes=3000)))
    assert list(docs)[:1] == ["docs/constitutions/current/patterns.md"]
    assert sum(len(t) for t in docs.values()) <= 3000 + 200 and "characters cut" in docs[next(iter(docs))]


def test_slugs_and_sections() -> None:
    assert slug("Add JWT auth: login/logout, refresh tokens & more!") == "add-jwt-auth-login-logout-refresh"
    assert slug("!!!") == "feature"
    assert missing_sections("## 1. Summary\n### requirements (numbered)\n") == list(SECTIONS[2:])


def test_an_agent_error_kind_is_named(repo: Path) -> None:
    spec = spec_at(repo)
    fake = FakeAgent({"planner": [failure(ErrorKind.AUTH, "bad key\nline 2")]})
    with pytest.raises(PlaitError, match="failed: auth: bad key line 2"):
        write_plan(Git.discover(repo), repo, spec, make_agent=factory(fake))


def test_profile_sandbox_off_is_not_confined(repo: Path) -> None:
    (repo / "plait.toml").write_text('[profiles.loose]\nadapter = "claude"\nsandbox = "off"\n')
    agent = WritingAgent({"spec-writer": [SPEC]})
    write_spec(Git.discover(repo), repo, "hello", agent="loose", make_agent=factory(agent))
    (request,) = agent.requests
    assert request.profile.name == "loose" and request.confine is not None and not request.confine.landlock
