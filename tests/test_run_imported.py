"""Plans from other tools run like YAML plans: `--relax-phases` reaches the run, multi-repo plans are refused."""

from __future__ import annotations

import json
from pathlib import Path

from plait import api
from plait.run.engine import RunOptions
from runfixtures import git, latest_run, make_repo, plait

FIXTURES = Path(__file__).parent / "fixtures" / "plans" / "spectacular"


def recorded_needs(repo: Path, plan: Path, relax: bool) -> dict[str, list[str]]:
    handle, run_id = api.start(plan, RunOptions(relax_phases=relax), cwd=repo)
    record = handle.store.run(run_id)
    assert record is not None
    return {t["id"]: t.get("needs", []) for t in json.loads(record["plan_json"])["tasks"]}


def test_a_run_records_the_phase_order_or_only_the_stated_dependencies(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    plan = repo / "plan.md"
    plan.write_text((FIXTURES / "phases.md").read_text())
    assert recorded_needs(repo, plan, relax=False)["2.1"] == ["1.1", "1.2"]
    assert recorded_needs(repo, plan, relax=True)["2.1"] == ["1.1"]


def test_a_plan_spanning_repositories_is_refused_in_one_line(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    plan = repo / "plan.md"
    plan.write_text((FIXTURES / "multirepo.md").read_text())
    done = plait(repo, "run", str(plan))
    assert done.returncode == 1
    [line] = [line for line in done.stderr.splitlines() if line.startswith("plait: error:")]
    assert "name repositories (backend, frontend), and plait runs one repository at a time" in line
    assert f"{plan}:" in line and "split the plan per repository" in line
    assert "Traceback" not in done.stderr


def test_agent_gives_a_plan_from_another_tool_its_profile(tmp_path: Path) -> None:
    toml = "[profiles.writer]\nadapter = \"shell\"\ncommand = 'echo done > out-{task_id}.txt'\n"
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n", "plait.toml": toml})
    plan = repo / "plan.md"
    plan.write_text("## Phase 1: Work (Parallel)\n### Task 1: One\n**Files**: `*.txt`\n"
                    "### Task 2: Two\n**Files**: `*.txt`\n")
    assert recorded_needs(repo, plan, relax=False) == {"1": [], "2": []}
    handle, run_id = api.start(plan, RunOptions(agent="writer"), cwd=repo)
    record = handle.store.run(run_id)
    assert record is not None and json.loads(record["plan_json"])["defaults"]["agent"] == "writer"
    ran = plait(repo, "run", str(plan), "--agent", "writer")
    assert ran.returncode == 0, ran.stderr
    run = latest_run(repo)
    tree = git(repo, "ls-tree", "--name-only", f"plait/{run}/integration").split()
    assert tree == ["README.md", "out-1.txt", "out-2.txt", "plait.toml"]
    done = plait(repo, "run", str(plan), "--agent", "nosuch")
    assert done.returncode == 1 and "nosuch" in done.stderr and "Traceback" not in done.stderr
