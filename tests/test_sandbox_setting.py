"""The profile setting `sandbox = "auto" | "landlock" | "off"` and what a run says when the kernel cannot
confine writes. A kernel without Landlock cannot be had here, so that one fact is faked (support());
everything else is real."""

from __future__ import annotations

from pathlib import Path

import pytest

from plait import api, sandbox
from plait.agents.base import SandboxMode
from plait.errors import PlaitError
from plait.plan.model import Plan
from plait.profiles import load_profiles
from runfixtures import make_repo, plait, task, write_plan

NO_LANDLOCK = sandbox.Support(None, "this kernel has no Landlock (needs Linux 5.13 or later)", True)


def plan_for(agent: str) -> Plan:
    return Plan.model_validate({"plait": 1, "name": "p", "defaults": {"agent": agent},
                                "tasks": [{"id": "a", "title": "a", "prompt": "p"}]})


def repo_with(tmp_path: Path, toml: str) -> api.Repo:
    return api.open_repo(make_repo(tmp_path / "repo", {"README.md": "x\n", "plait.toml": toml}))


def test_the_setting_is_read_and_checked(tmp_path: Path) -> None:
    repo = repo_with(tmp_path, '[profiles.a]\nadapter = "script"\nsandbox = "off"\n'
                               '[profiles.b]\nadapter = "script"\nsandbox = "landlock"\n')
    profiles = load_profiles(repo.root)
    assert profiles["a"].sandbox is SandboxMode.OFF and profiles["b"].sandbox is SandboxMode.LANDLOCK
    assert profiles["script"].sandbox is SandboxMode.AUTO
    (repo.root / "plait.toml").write_text('[profiles.c]\nadapter = "script"\nsandbox = "yes"\n')
    with pytest.raises(PlaitError) as info:
        load_profiles(repo.root)
    assert "sandbox" in str(info.value) and '"auto", "landlock" or "off"' in info.value.fix


def test_without_landlock_auto_warns_landlock_refuses_and_off_is_quiet(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    repo = repo_with(tmp_path, '[profiles.strict]\nadapter = "script"\nsandbox = "landlock"\n'
                               '[profiles.loose]\nadapter = "script"\nsandbox = "off"\n')
    assert api.sandbox_warning(repo, plan_for("script")) is None  # this machine has Landlock
    monkeypatch.setattr(sandbox, "support", lambda: NO_LANDLOCK)
    warning = api.sandbox_warning(repo, plan_for("script"))
    assert warning is not None and "NOT confined" in warning and "no Landlock" in warning
    with pytest.raises(PlaitError) as info:
        api.sandbox_warning(repo, plan_for("strict"))
    assert "strict" in str(info.value) and 'sandbox = "auto"' in info.value.fix
    assert api.sandbox_warning(repo, plan_for("loose")) is None


def test_plait_run_reports_each_tasks_sandbox_in_its_evidence(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n",
                                         "plait.toml": '[profiles.loose]\nadapter = "script"\nsandbox = "off"\n'})
    plan = write_plan(repo, [task("a", {"a.txt": "a"}), task("b", {"b.txt": "b"}, agent="loose")])
    done = plait(repo, "run", str(plan))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "NOT confined" not in done.stdout
    runs = repo / ".plait" / "runs"
    (run_dir,) = runs.iterdir()
    assert '"sandbox": "landlock"' in (run_dir / "tasks" / "a" / "results.json").read_text()
    assert '"sandbox": "off"' in (run_dir / "tasks" / "b" / "results.json").read_text()
