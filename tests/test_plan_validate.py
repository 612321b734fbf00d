"""validate(): the semantic checks on a plan that parsed, each located and with a fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from plait.errors import Location
from plait.plan.load import PlanError, load_plan
from plait.plan.model import Plan
from plait.plan.validate import Diagnostic, path_problem, validate


def task(task_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": task_id, "title": f"Task {task_id}", "prompt": f"Do {task_id}.", "agent": "claude",
            "files": [f"src/{task_id}.py"], "verify": "make test", **extra}


def plan(*tasks: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"plait": 1, "name": "demo", "tasks": list(tasks), **extra}


def record(*keys: str | int) -> Location:
    """A locate() that records the path it was asked for in the location's path."""
    return Location("/".join(map(str, keys)), 1, 1)


def check(data: dict[str, Any]) -> list[Diagnostic]:
    return validate(Plan.model_validate(data), record)


def errors(data: dict[str, Any]) -> list[Diagnostic]:
    return [d for d in check(data) if d.severity == "error"]


def warnings(data: dict[str, Any]) -> list[Diagnostic]:
    return [d for d in check(data) if d.severity == "warning"]


def only(found: list[Diagnostic]) -> Diagnostic:
    assert len(found) == 1, found
    assert found[0].fix, "every diagnostic says how to fix it"
    return found[0]


def test_a_clean_plan_has_no_diagnostics() -> None:
    assert check(plan(task("a"), task("b", needs=["a"]))) == []


def test_a_script_agent_task_without_a_script_is_flagged() -> None:
    d = only(warnings(plan(task("a", agent=None), task("b", script={"write": {"b": "x"}}, agent=None),
                           task("c", agent=None, allow_empty=True), task("d"))))
    assert "task 'a' runs the built-in `script` agent with no `script:`" in d.message
    assert "allow_empty: true" in d.fix


def test_diagnostic_renders_as_one_line() -> None:
    d = Diagnostic("error", "task 'a' needs itself", "remove 'a' from its `needs`", Location("p.yaml", 3, 7))
    assert str(d) == "p.yaml:3:7: task 'a' needs itself — remove 'a' from its `needs`"
    with pytest.raises(ValueError, match="at least one"):
        PlanError([])


def test_duplicate_ids() -> None:
    d = only(errors(plan(task("a"), task("b"), task("a"))))
    assert d.message == "duplicate task id 'a' (also tasks[0])"
    assert d.location.path == "tasks/2/id"


def test_unknown_needs_suggests_a_close_id() -> None:
    d = only(errors(plan(task("schema"), task("api", needs=["shcema"]))))
    assert d.message == "task 'api' needs 'shcema', which is not a task in this plan"
    assert d.fix == "did you mean 'schema'?"
    assert d.location.path == "tasks/1/needs/0"


def test_unknown_needs_without_a_close_id_lists_the_ids() -> None:
    d = only(errors(plan(task("schema"), task("api", needs=["zzz"]))))
    assert d.fix == "use one of: schema"


def test_a_task_needing_itself() -> None:
    d = only(errors(plan(task("a", needs=["a"]))))
    assert d.message == "task 'a' needs itself"
    assert d.location.path == "tasks/0/needs/0"


def test_cycles_are_named_in_full() -> None:
    d = only(errors(plan(task("a", needs=["b"]), task("b", needs=["c"]), task("c", needs=["a"]))))
    assert d.message == "dependency cycle: a -> b -> c -> a"
    assert "'b' from 'a'" in d.fix
    assert d.location.path == "tasks/0/needs"


def test_independent_cycles_are_all_reported() -> None:
    found = errors(plan(task("a", needs=["b"]), task("b", needs=["a"]), task("x", needs=["y"]),
                        task("y", needs=["x"])))
    assert [d.message for d in found] == ["dependency cycle: a -> b -> a", "dependency cycle: x -> y -> x"]


def test_xl_tasks_must_be_split() -> None:
    d = only(errors(plan(task("big", size="XL"))))
    assert d.message == "task 'big' is size XL, too big for one agent"
    assert d.fix.startswith("split it into tasks of at most L")
    assert d.location.path == "tasks/0/size"


def test_estimates_over_the_limit_must_be_split() -> None:
    d = only(errors(plan(task("big", estimate="9h"))))
    assert d.message == "task 'big' is estimated at 9h, over the 8h limit for one agent"
    assert "at most" in d.fix
    assert errors(plan(task("ok", estimate="8h"))) == []


def test_infinite_durations_are_located_errors(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text("plait: 1\nname: x\ntasks:\n  - id: a\n    title: A\n    prompt: p\n    timeout: .inf\n")
    with pytest.raises(PlanError) as info:
        load_plan(path)
    assert str(info.value).startswith(f"{path}:7:")
    assert "finite" in str(info.value)


@pytest.mark.parametrize(
    ("path", "problem", "fix"),
    [
        ("/etc/passwd", "is an absolute path", "`etc/passwd`"),
        ("C:/src/a.py", "is an absolute path", "`src/a.py`"),
        ("src/../../x", "goes outside the repository (`..`)", "without `..`"),
        ("..", "goes outside the repository (`..`)", "without `..`"),
        ("src\\a.py", "uses backslashes", "`src/a.py`"),
        ("  ", "is empty", "relative"),
    ],
)
def test_bad_paths(path: str, problem: str, fix: str) -> None:
    assert path_problem(path) is not None
    d = only(errors(plan(task("a", files=["ok.py", path]))))
    assert d.message == f"task 'a': file '{path}' {problem}"
    assert fix in d.fix
    assert d.location.path == "tasks/0/files/1"
    c = only(errors(plan(task("a"), contracts=[{"path": path, "owner": "a"}])))
    assert c.message == f"contract path '{path}' {problem}"
    assert c.location.path == "contracts/0/path"


@pytest.mark.parametrize("path", ["src/a.py", "src/**/*.ts", "./src/a.py", "docs/..notes.md", "a..b"])
def test_good_paths(path: str) -> None:
    assert path_problem(path) is None


def test_contract_owner_must_be_a_task() -> None:
    d = only(errors(plan(task("api"), contracts=[{"path": "api.yaml", "owner": "apj"}])))
    assert d.message == "contract 'api.yaml' is owned by 'apj', which is not a task in this plan"
    assert d.fix == "did you mean 'api'?"
    assert d.location.path == "contracts/0/owner"


@pytest.mark.parametrize(("key", "value"), [("prompt", ""), ("prompt", "  \n "), ("title", "\t")])
def test_empty_prompt_or_title(key: str, value: str) -> None:
    d = only(errors(plan(task("a", **{key: value}))))
    assert d.message == f"task 'a' has an empty {key}"
    assert d.location.path == f"tasks/0/{key}"


def test_empty_plan_name() -> None:
    assert only(errors(plan(task("a"), name=" "))).message == "the plan's `name` is empty"


def test_duplicate_preflight_checks() -> None:
    checks = [{"tool": "git"}, {"env": "HOME"}, {"tool": "git", "name": "git!"}]
    d = only(errors(plan(task("a"), preflight=checks)))
    assert d.message == "preflight check 'git!' is listed twice (also preflight[0])"
    assert d.location.path == "preflight/2"


def test_no_verify_warns_per_task_or_once_for_all() -> None:
    d = only(warnings(plan(task("a"), task("b", verify=None))))
    assert d.message.startswith("task 'b' has no verify command")
    assert d.location.path == "tasks/1"
    every = only(warnings(plan(task("a", verify=None), task("b", verify=None))))
    assert every.message.startswith("no task has a verify command")
    assert warnings(plan(task("a", verify=None), task("b", verify=None), defaults={"verify": "make"})) == []
    assert only(warnings(plan(task("a", verify=None)))).message.startswith("task 'a' has no verify")


def test_no_files_warns() -> None:
    d = only(warnings(plan(task("a", files=[]))))
    assert d.message == "task 'a' declares no files, so overlaps and deviations cannot be checked"


def test_gate_without_dependents_warns() -> None:
    d = only(warnings(plan(task("a", gate=True), task("b"))))
    assert d.message == "task 'a' is a gate with no dependents, so nothing waits for it"
    assert warnings(plan(task("a", gate=True), task("b", needs=["a"]))) == []


def test_repeated_need_warns() -> None:
    d = only(warnings(plan(task("a"), task("b", needs=["a", "a"]))))
    assert d.message == "task 'b' lists 'a' 2 times in `needs`"
    assert errors(plan(task("a"), task("b", needs=["a", "a"]))) == []


def test_load_plan_locates_semantic_errors(tmp_path: Path) -> None:
    data = plan(task("a", needs=["b"]), task("b", needs=["a"]), task("c", size="XL"))
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(PlanError) as info:
        load_plan(path)
    lines = info.value.lines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{path}:") and "dependency cycle: a -> b -> a" in lines[0]
    assert "size XL" in lines[1]
    assert info.value.diagnostics[1].location.line == next(
        n for n, text in enumerate(path.read_text().splitlines(), 1) if "size: XL" in text)


def test_the_same_risk_in_many_tasks_is_one_line() -> None:
    tasks = [task(f"t{i}", files=[]) for i in range(6)]
    found = [d.message for d in warnings(plan(*tasks)) if "declare no files" in d.message]
    assert found == ["6 tasks ('t0', 't1', 't2', 't3', 't4', …) declare no files, so overlaps and deviations "
                     "cannot be checked"]
