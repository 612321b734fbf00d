"""`plait spec` and `plait plan` played by the real Claude Code binary against plait's scripted model
server: the spec writer's Write tool call creates the spec, and the planner repairs its plan once after
plait's repair prompt names the first round's error."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from gitfixtures import make_repo
from plait.git.repo import Git
from plait.plan.load import load_plan
from plait.run.rehearse import scripted_roles
from plait.testing import ModelServer, Scenario, author_scenario, edit, text
from plait.workflow.agent import RoleJob
from plait.workflow.plan import write_plan
from plait.workflow.spec import missing_sections, write_spec
from runfixtures import require_cli
from test_workflow import SPEC

PLAN = textwrap.dedent("""\
    plait: 1
    name: hello
    defaults: {agent: claude, verify: "test -f hello.txt"}
    tasks:
      - id: hello
        title: Write hello
        prompt: Write hello.txt.
        files: [hello.txt]
        size: S
        acceptance: [hello.txt exists]
    """)
UNKNOWN_NEED = "    needs: [nosuch]\n"
BAD_PLAN = PLAN.replace("    size: S\n", "    size: S\n" + UNKNOWN_NEED)


def scenario_for(job: RoleJob) -> Scenario:
    """spec-1 writes the spec; plan-1 writes a plan needing an unknown task; plan-2 removes that line."""
    (rel,) = job.outputs
    run = job.log_dir.name
    if run == "spec-1":
        return author_scenario(rel, SPEC, "Wrote the spec.")
    if run == "plan-1":
        return author_scenario(rel, BAD_PLAN, "Wrote the plan.")
    assert run == "plan-2", f"no run {run} expected"
    return Scenario([edit(rel, UNKNOWN_NEED, ""), text("Fixed the plan.")])  # Claude edits only what it read


def blocks(body: Any) -> list[dict[str, Any]]:
    """Every content block of the messages of an Anthropic request body."""
    out = []
    for message in body["messages"]:
        content = message["content"]
        out += [{"type": "text", "text": content}] if isinstance(content, str) else content
    return out


def test_real_claude_writes_the_spec_and_repairs_the_plan_against_the_scripted_server(tmp_path: Path) -> None:
    binary = require_cli("claude")
    toml = f'[profiles.claude]\nadapter = "claude"\nbinary = "{binary}"\n\n[workflow]\ntimeout = "5m"\n'
    repo = make_repo(tmp_path / "repo", {"README.md": "# demo\n", "plait.toml": toml})
    lines: list[str] = []
    with ModelServer() as server:
        env = scripted_roles(server, scenario_for)
        spec = write_spec(Git.discover(repo), repo, "Add a hello file", notify=lines.append, role_env=env)
        assert spec.rounds == 1 and spec.path.read_text() == SPEC and missing_sections(SPEC) == []
        spec_requests = server.requests_for("plait-role-spec-writer-spec-1")
        assert [r.turn for r in spec_requests] == [0, 1], "one Write call, then the closing text"
        last = blocks(spec_requests[-1].body)
        (use,) = [b for b in last if b.get("type") == "tool_use"]
        assert use["name"] == "Write" and use["input"]["file_path"].endswith(spec.rel)
        assert any(b.get("type") == "tool_result" and not b.get("is_error") for b in last)

        plan = write_plan(Git.discover(repo), repo, spec.path, notify=lines.append, role_env=env)
        assert plan.rounds == 2 and plan.path == spec.path.parent / "plan.yaml"
        assert plan.path.read_text() == PLAN and load_plan(plan.path, root=repo).plan.tasks[0].id == "hello"
        assert plan.check_json.is_file()
        logs = spec.evidence / "plan-1"
        first_error = (logs / "errors.txt").read_text().splitlines()[0]
        assert "nosuch" in first_error
        second = server.requests_for("plait-role-planner-plan-2")[0]
        assert second.turn == 0 and json.dumps(first_error)[1:-1] in json.dumps(second.body)
        assert not server.requests_for("plait-role-planner-plan-3"), "exactly two rounds"
        calls = [b["name"] for r in server.requests_for("plait-role-planner-plan-2") for b in blocks(r.body)
                 if b.get("type") == "tool_use"]
        assert "Edit" in calls
    assert json.loads((spec.evidence / "plan-2" / "result.json").read_text())["ok"]
    assert any("round 1 of 3: 1 error(s)" in line for line in lines), lines
