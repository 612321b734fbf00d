"""Property tests: whatever a plan file contains, load_plan returns a plan or raises PlanError whose every
line starts with `path:line` — never any other exception, never an unlocated message."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plait.plan.load import LoadedPlan, PlanError, load_plan

FIXTURES = Path(__file__).parent / "fixtures" / "plans"
Draw = Callable[[st.SearchStrategy[Any]], Any]
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ids = st.from_regex(r"[a-z][a-z0-9-]{0,6}[a-z0-9]", fullmatch=True)
paths = st.from_regex(r"(src|tests|docs)/[a-z]{1,6}(/[a-z]{1,6})?\.(py|ts|md)", fullmatch=True)
words = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=30)
durations = st.sampled_from(["30s", "45m", "1h", "1.5h", "2h30m", "90", 20, 1.5])
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=False), words)
anything = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(words, inner, max_size=3),
    max_leaves=6)


@st.composite
def valid_plans(draw: st.DrawFn) -> dict[str, Any]:
    task_ids = draw(st.lists(ids, min_size=1, max_size=6, unique=True))
    tasks = []
    for i, task_id in enumerate(task_ids):
        task: dict[str, Any] = {"id": task_id, "title": draw(words).strip() or "t",
                                "prompt": draw(words).strip() or "p"}
        if i and draw(st.booleans()):
            task["needs"] = draw(st.lists(st.sampled_from(task_ids[:i]), max_size=3, unique=True))
        if draw(st.booleans()):
            task["files"] = draw(st.lists(paths, max_size=3))
        if draw(st.booleans()):
            task["size"] = draw(st.sampled_from(["S", "M", "L"]))
        if draw(st.booleans()):
            task["estimate"] = draw(durations)
        if draw(st.booleans()):
            task["verify"] = "make test"
        if draw(st.booleans()):
            task["acceptance"] = draw(st.lists(words, max_size=2))
        tasks.append(task)
    plan: dict[str, Any] = {"plait": 1, "name": draw(words).strip() or "plan", "tasks": tasks}
    if draw(st.booleans()):
        plan["defaults"] = {"verify": "pytest", "timeout": draw(durations),
                            "retries": draw(st.integers(0, 10))}
    if draw(st.booleans()):
        plan["preflight"] = [{"tool": "git"}, {"env": "HOME"}]
    if draw(st.booleans()):
        plan["contracts"] = [{"path": draw(paths), "owner": draw(st.sampled_from(task_ids))}]
    if draw(st.booleans()):
        plan["integration"] = {"verify": "make check"}
    return plan


def nodes(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside `data`."""
    out = [prefix] if prefix else []
    if isinstance(data, dict):
        for key, value in data.items():
            out += nodes(value, (*prefix, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            out += nodes(value, (*prefix, i))
    return out


def parent_of(data: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        data = data[key]
    return data


def mutate_data(draw: Draw, plan: dict[str, Any]) -> dict[str, Any]:
    path = draw(st.sampled_from(nodes(plan)[::-1]))  # deepest first: shrinking favours the first
    parent, last = parent_of(plan, path), path[-1]
    kind = draw(st.sampled_from(["drop", "rename", "retype", "cycle", "unknown-need"]))
    if kind == "drop":
        del parent[last]
    elif kind == "rename" and isinstance(parent, dict):
        parent[draw(words)] = parent.pop(last)
    elif kind == "cycle" and len(plan["tasks"]) > 1:
        plan["tasks"][0]["needs"] = [plan["tasks"][-1]["id"]]
        plan["tasks"][-1]["needs"] = [plan["tasks"][0]["id"]]
    elif kind == "unknown-need":
        plan["tasks"][-1]["needs"] = [draw(ids)]
    else:
        parent[last] = draw(anything)
    return plan


def mutate_text(draw: Draw, text: str) -> bytes:
    raw = text.encode()
    kind = draw(st.sampled_from(["bytes", "truncate", "indent", "delete-line", "swap-lines"]))
    at = draw(st.integers(0, len(raw)))
    lines = text.splitlines(keepends=True)
    line = draw(st.integers(0, max(len(lines) - 1, 0)))
    if kind == "bytes":
        noise: bytes = draw(st.binary(min_size=1, max_size=8))
        return raw[:at] + noise + raw[at:]
    if kind == "truncate":
        return raw[:at]
    if kind == "indent" and lines:
        lines[line] = draw(st.sampled_from(["", " ", "   ", "\t"])) + lines[line].lstrip(" ")
    elif kind == "delete-line" and lines:
        del lines[line]
    elif kind == "swap-lines" and len(lines) > 1:
        lines[line], lines[line - 1] = lines[line - 1], lines[line]
    return "".join(lines).encode()


def check(path: Path) -> None:
    try:
        loaded = load_plan(path)
    except PlanError as err:
        located = re.compile(rf"^{re.escape(str(path))}:\d+(:\d+)?: \S")
        assert err.lines() and all(located.match(line) for line in err.lines()), err.lines()
        assert all("\n" not in line and " — " in line for line in err.lines()), err.lines()
        assert str(err) == err.lines()[0]
    else:
        assert isinstance(loaded, LoadedPlan)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("plans")


@SETTINGS
@given(valid_plans(), st.booleans())
def test_valid_plans_load(workdir: Path, plan: dict[str, Any], flow: bool) -> None:
    path = workdir / "valid.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False, allow_unicode=True, default_flow_style=flow))
    loaded = load_plan(path)
    assert [t.id for t in loaded.plan.tasks] == [t["id"] for t in plan["tasks"]]
    for i in range(len(plan["tasks"])):
        assert loaded.locate("tasks", i, "id").line >= 1


@SETTINGS
@given(st.data())
def test_mutated_plans_fail_cleanly(workdir: Path, data: st.DataObject) -> None:
    plan = mutate_data(data.draw, data.draw(valid_plans()))
    path = workdir / "mutated.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False, allow_unicode=True))
    check(path)


@SETTINGS
@given(st.data())
def test_corrupted_yaml_fails_cleanly(workdir: Path, data: st.DataObject) -> None:
    text = yaml.safe_dump(data.draw(valid_plans()), sort_keys=False, allow_unicode=True)
    path = workdir / "corrupted.yaml"
    path.write_bytes(mutate_text(data.draw, text))
    check(path)


@SETTINGS
@given(st.data(), st.sampled_from(["plugin.md", "mcp.md", "plugin-detailed.md", "mcp-generated.md"]))
def test_corrupted_markdown_fails_cleanly(workdir: Path, data: st.DataObject, name: str) -> None:
    path = workdir / name
    path.write_bytes(mutate_text(data.draw, (FIXTURES / name).read_text()))
    check(path)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_fail_cleanly(workdir: Path, raw: bytes) -> None:
    path = workdir / "random.yaml"
    path.write_bytes(raw)
    check(path)
