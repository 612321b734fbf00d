"""The content of `plait demo` (src/plait/demo): the plan is valid and honest about each task's
files, concurrent tasks never touch the same file, and the scripted code really works. Each task's
verify command passes on top of exactly its dependencies' work and fails when a dependency is
missing (so the demo shows plait merging dependencies), and the integrated tree passes the full
suite. The scripts are applied here directly, without plait's engine, so a failure points at the
demo content rather than at the engine."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest
import yaml

import plait.demo
from plait.plan.analyze import analyze
from plait.plan.model import Plan, Task

DEMO = Path(plait.demo.__file__).parent
PROJECT = DEMO / "project"
PLAN = Plan.model_validate(yaml.safe_load((DEMO / "plan.yaml").read_text()))
TASKS = {t.id: t for t in PLAN.tasks}


def _ancestors(task_id: str) -> set[str]:
    """Every task `task_id` transitively needs."""
    found: set[str] = set()
    pending = list(TASKS[task_id].needs)
    while pending:
        tid = pending.pop()
        if tid not in found:
            found.add(tid)
            pending.extend(TASKS[tid].needs)
    return found


def _in_plan_order(task_ids: Iterable[str]) -> list[Task]:
    """The given tasks, dependencies first (the plan lists tasks in a topological order; a test
    below checks that)."""
    wanted = set(task_ids)
    return [t for t in PLAN.tasks if t.id in wanted]


def _written(task: Task) -> set[str]:
    script = task.script
    assert script is not None
    return {*script.write, *script.append, *script.replace, *script.delete}


def _declares(task: Task, path: str) -> bool:
    return any(fnmatch.fnmatchcase(path, f) or path.startswith(f.rstrip("/") + "/") for f in task.files)


def _apply(task: Task, root: Path) -> None:
    """What the `script` agent does in a worktree (plait.agents.script), minus the delay."""
    script = task.script
    assert script is not None
    for rel, content in script.write.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(content)
    for rel, text in script.append.items():
        with (root / rel).open("a") as f:
            f.write(text)
    for rel, edits in script.replace.items():
        content = (root / rel).read_text()
        for old, new in edits.items():
            assert old in content, f"{task.id}: {rel} lacks {old[:60]!r}"
            content = content.replace(old, new, 1)
        (root / rel).write_text(content)
    for rel in script.delete:
        (root / rel).unlink()


def _tree(root: Path, tasks: Iterable[Task]) -> Path:
    shutil.copytree(PROJECT, root, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    for task in tasks:
        _apply(task, root)
    return root


@pytest.fixture(scope="module")
def python_on_path(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment whose `python` is this interpreter (which has pytest), as the plan's
    commands say `python -m pytest`; git's variables are dropped as plait does for verify.
    authkit's tests need no pytest plugins, and not loading the ones installed here (hypothesis,
    xdist) makes each of the ~30 runs below several times faster."""
    bin_dir = tmp_path_factory.mktemp("bin")
    (bin_dir / "python").symlink_to(sys.executable)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", PYTHONDONTWRITEBYTECODE="1",
               PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    return env


def _run(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # Verify commands are shell command lines by design; plait runs them the same way.
    return subprocess.run(command, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_the_plan_is_complete_and_uses_the_script_agent() -> None:
    assert PLAN.defaults.agent == "script"
    assert len(PLAN.tasks) == 10 and len(TASKS) == 10
    assert PLAN.integration.verify == "python3 -m pytest -q"
    assert PLAN.preflight, "the demo checks for pytest before it starts"
    listed: set[str] = set()
    for task in PLAN.tasks:
        assert set(task.needs) <= listed, f"{task.id} is listed before a task it needs"
        listed.add(task.id)
        assert task.agent is None and task.prompt and task.acceptance and task.estimate, task.id
        own_tests = [f for f in task.files if f.startswith("tests/test_")]
        assert task.verify == f"python3 -m pytest -q {own_tests[0]}", task.id
        assert task.script is not None and 1 <= task.script.delay <= 3, task.id
        assert not task.script.run and not task.script.fail, task.id
    for contract in PLAN.contracts:
        assert _declares(TASKS[contract.owner], contract.path), contract


def test_the_plan_parallelizes_without_findings() -> None:
    analysis = analyze(PLAN, jobs=4)
    assert analysis.findings == []
    assert max(len(level) for level in analysis.levels) >= 3
    assert analysis.estimate.speedup > 1.8


@pytest.mark.parametrize("task_id", list(TASKS))
def test_a_task_writes_exactly_its_declared_files(task_id: str) -> None:
    task = TASKS[task_id]
    assert _written(task) == set(task.files)
    assert all(_declares(task, path) for path in _written(task))


def test_tasks_that_can_run_at_the_same_time_write_different_files() -> None:
    for i, a in enumerate(PLAN.tasks):
        for b in PLAN.tasks[i + 1 :]:
            if a.id in _ancestors(b.id) or b.id in _ancestors(a.id):
                continue
            assert not _written(a) & _written(b), f"{a.id} and {b.id} may run together but share files"


def test_the_project_template_passes_its_own_tests(tmp_path: Path, python_on_path: dict[str, str]) -> None:
    root = _tree(tmp_path / "repo", [])
    assert (root / ".gitignore").read_text().count("__pycache__") == 1
    created = {path for task in PLAN.tasks if task.script for path in task.script.write}
    assert not [path for path in created if (root / path).exists()], "the template holds a task's file"
    done = _run("python3 -m pytest -q", root, python_on_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_integrated_tree_passes_the_full_suite(tmp_path: Path, python_on_path: dict[str, str]) -> None:
    root = _tree(tmp_path / "repo", PLAN.tasks)
    assert PLAN.integration.verify is not None
    done = _run(PLAN.integration.verify, root, python_on_path)
    assert done.returncode == 0, done.stdout + done.stderr
    passed = re.search(r"(\d+) passed", done.stdout)
    assert passed and int(passed.group(1)) >= 100, done.stdout


@pytest.mark.parametrize("task_id", list(TASKS))
def test_a_task_passes_its_verify_on_top_of_its_dependencies(task_id: str, tmp_path: Path,
                                                             python_on_path: dict[str, str]) -> None:
    task = TASKS[task_id]
    root = _tree(tmp_path / "repo", _in_plan_order(_ancestors(task_id) | {task_id}))
    assert task.verify is not None
    done = _run(task.verify, root, python_on_path)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(("task_id", "missing"), [(t.id, dep) for t in PLAN.tasks for dep in t.needs])
def test_a_task_fails_its_verify_without_a_dependency(task_id: str, missing: str, tmp_path: Path,
                                                      python_on_path: dict[str, str]) -> None:
    # Without `missing` and whatever builds on it, but with everything else the task needs.
    kept = {a for a in _ancestors(task_id) if a != missing and missing not in _ancestors(a)}
    task = TASKS[task_id]
    root = _tree(tmp_path / "repo", _in_plan_order(kept | {task_id}))
    assert task.verify is not None
    done = _run(task.verify, root, python_on_path)
    assert done.returncode != 0, f"{task_id} passes without {missing}: its tests do not use it"
