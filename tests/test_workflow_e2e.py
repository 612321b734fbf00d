"""The whole workflow end to end with real agent CLIs against plait's scripted model server:
`plait go "…" --yes --rehearse FILE` — Claude Code writes the spec and the plan (one repair round), implements
the tasks, fixes a rejected one, resolves a conflicting pair and repairs a semantic conflict; Codex reviews.
The merged integration branch passes the full test command."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import yaml

from gitfixtures import make_repo
from runfixtures import events, git, latest_run, plait, require_cli
from test_workflow import SPEC

CHECK = 'grep -q "calls=$(sed s/name=// lib.txt)" use.txt && grep -q alpha shared.txt && grep -q beta shared.txt\n'

PLAN = textwrap.dedent("""\
    plait: 1
    name: greet
    defaults: {agent: claude, review: per-task, max_rounds: 2, timeout: 5m}
    integration:
      verify: sh check.sh
      script:
        write: {use.txt: "calls=new\\n"}
    tasks:
      - id: lib
        title: Rename the function to new
        prompt: Rename the function in lib.txt to new.
        files: [lib.txt]
        size: S
        verify: grep -q name=new lib.txt
        acceptance: [lib.txt names the function new]
        script: {write: {lib.txt: "name=new\\n"}}
      - id: use
        title: Call the function
        prompt: Add use.txt, which calls the function.
        files: [use.txt]
        size: S
        verify: test -f use.txt
        script: {write: {use.txt: "calls=old\\n"}}
      - id: alpha
        title: Say alpha
        prompt: Say alpha in shared.txt.
        files: [shared.txt]
        size: S
        verify: grep -q alpha shared.txt
        script:
          write: {shared.txt: "alpha\\n"}
          review:
            - {verdict: changes_requested, comments: ["shared.txt:1: say alpha twice"]}
            - {verdict: approved}
          fix: {shared.txt: "alpha alpha\\n"}
      - id: beta
        title: Say beta
        prompt: Say beta in shared.txt.
        files: [shared.txt]
        size: S
        verify: grep -q beta shared.txt
        script:
          write: {shared.txt: "beta\\n"}
          resolve: {shared.txt: "alpha alpha\\nbeta\\n"}
    """)
BAD_PLAN = PLAN.replace("    verify: test -f use.txt\n", "    verify: test -f use.txt\n    needs: [nosuch]\n")


def test_plait_go_from_a_request_to_a_merged_reviewed_resolved_and_repaired_integration(tmp_path: Path) -> None:
    claude, codex = require_cli("claude"), require_cli("codex")
    toml = (f'[profiles.claude]\nadapter = "claude"\nbinary = "{claude}"\n\n'
            f'[profiles.reviewer]\nadapter = "codex"\nbinary = "{codex}"\n')
    repo = make_repo(tmp_path / "repo", {"README.md": "# greet\n", "plait.toml": toml, "check.sh": CHECK,
                                         "lib.txt": "name=old\n", "shared.txt": "base\n"})
    answers = tmp_path / "answers.yaml"
    answers.write_text(yaml.safe_dump({"spec": SPEC, "plan": [BAD_PLAN, PLAN]}))
    done = plait(repo, "go", "Greet with alpha and beta", "--yes", "--rehearse", str(answers), timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr

    (spec_dir,) = (repo / "specs").iterdir()
    assert (spec_dir / "spec.md").read_text() == SPEC
    assert (spec_dir / "plan.yaml").read_text() == PLAN, "the planner's second round, after the repair prompt"
    planner_logs = sorted(p.name for p in (repo / ".plait" / "workflow").rglob("plan-*") if p.is_dir())
    assert planner_logs == ["plan-1", "plan-2"]

    run_id = latest_run(repo)
    status: dict[str, Any] = json.loads(plait(repo, "status", run_id, "--json").stdout)
    assert status["status"] == "completed"
    alpha = next(t for t in status["tasks"] if t["id"] == "alpha")
    assert [h["verdict"] for h in alpha["review"]["history"]] == ["changes_requested", "approved"]
    assert alpha["review"]["reviewer"] == "reviewer"
    logs = repo / ".plait" / "runs" / run_id / "tasks" / "alpha" / "logs" / "attempt-1"
    assert Path(json.loads((logs / "review-1" / "agent.argv.json").read_text())[0]).name == "codex"

    found = events(repo, run_id)
    (resolved,) = [e["data"] for e in found if e["kind"] == "integration.resolved"]
    assert resolved["ok"] and resolved["task"] == "beta" and resolved["with"] == ["alpha"]
    (repaired,) = [e["data"] for e in found if e["kind"] == "integration.repaired"]
    assert repaired["ok"] and repaired["files"] == ["use.txt"]

    branch = f"plait/{run_id}/integration"
    assert git(repo, "show", f"{branch}:shared.txt") == "alpha alpha\nbeta"
    assert git(repo, "show", f"{branch}:use.txt") == "calls=new"
    tree = tmp_path / "integrated"
    tree.mkdir()
    archive = subprocess.run(["git", "archive", branch], cwd=repo, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x"], cwd=tree, input=archive, check=True)
    assert subprocess.run(["sh", "check.sh"], cwd=tree).returncode == 0, "the full test command passes"

    merged = json.loads((repo / ".plait" / "runs" / run_id / "merged-context.json").read_text())
    assert [m["kind"] for m in merged["integration"]["changed_by_agents"]] == ["conflict", "integration-test"]
    assert merged["verification"]["ok"] and merged["run_status"] == "completed"
    report = (repo / ".plait" / "runs" / run_id / "INTEGRATION-REPORT.md").read_text()
    assert "Agents changed the merged result" in report
    assert "at integration: conflict of beta with alpha: resolved by an agent in 1 round(s)" in (
        repo / ".plait" / "runs" / run_id / "REPORT.md").read_text()


def test_a_bad_rehearsal_file_is_one_line_with_its_location_and_no_agent_runs(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "# greet\n"})
    cases = {"missing.yaml": None, "syntax.yaml": "spec: [\n", "empty-plan.yaml": "spec: x\nplan: []\n",
             "extra.yaml": "spec: x\nplan: y\nmore: 1\n"}
    for name, text in cases.items():
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        done = plait(repo, "go", "Greet", "--yes", "--rehearse", str(path))
        assert done.returncode == 1, name
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith(f"plait: error: {path}") and "Traceback" not in done.stderr, line
    assert not (repo / "specs").exists()


def test_a_rehearsal_file_gives_the_planner_one_answer_per_round() -> None:
    from plait.run.rehearse import WorkflowScript, workflow_scenario
    from plait.workflow.agent import RoleJob

    scenario_for = workflow_scenario(WorkflowScript(spec="S", plan=["P1", "P2"]))
    profile: Any = None

    def job(role: str, run: str) -> RoleJob:
        return RoleJob(role, profile, "", ("specs/x/out",), Path("/tmp") / run, 60.0)

    texts = [scenario_for(job(r, n)).steps[0] for r, n in
             [("spec-writer", "spec-1"), ("planner", "plan-1"), ("planner", "plan-2"), ("planner", "plan-3")]]
    assert [getattr(t, "content", None) for t in texts] == ["S", "P1", "P2", "P2"]
