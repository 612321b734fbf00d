"""Taskmaster's tasks.json read as plan data: subtasks, done tasks, the DAG edge by edge, errors, random plans."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plait.errors import Location
from plait.plan.formats import Parsed, taskmaster
from plait.plan.formats.taskmaster import looks_like_taskmaster, parse_taskmaster, value_positions
from plait.plan.model import Plan
from plait.plan.validate import PlanError, validate

FIXTURES = Path(__file__).parent / "fixtures" / "plans" / "taskmaster"


def read(name: str) -> tuple[Parsed, str]:
    path = FIXTURES / name
    return parse_taskmaster(path.read_text(), str(path)), str(path)


def needs(parsed: Parsed) -> dict[str, list[str]]:
    return {t["id"]: t["needs"] for t in parsed.data["tasks"]}


def task(parsed: Parsed, task_id: str) -> dict[str, Any]:
    return next(t for t in parsed.data["tasks"] if t["id"] == task_id)


def errors(text: str, source: str = "tasks.json") -> list[str]:
    with pytest.raises(PlanError) as info:
        parse_taskmaster(text, source)
    return info.value.lines()


def assert_loads(parsed: Parsed, source: str) -> None:
    plan = Plan.model_validate(parsed.data)
    found = validate(plan, lambda *keys: Location(source, 1, 1))
    assert [str(d) for d in found if d.severity == "error"] == []


def test_tagged_file_with_subtasks_and_done_tasks() -> None:
    parsed, source = read("tagged.json")
    # 1 is done and 5 cancelled: not imported, and dependencies on them are satisfied. Task 3 is replaced by its
    # open subtasks: 3.2 (its dependency 3.1 is done) and 3.3 start it and get its dependency on 2; 3.4 ends it,
    # so "3" in task 4 means 3.4.
    assert needs(parsed) == {"2": [], "3.2": ["2"], "3.3": ["2"], "3.4": ["3.2", "3.3"], "4": ["3.4"],
                             "6": ["3.2"]}
    assert parsed.inferred == {"3.2": {"2": "dependency of parent task 3"}, "3.3": {"2": "dependency of parent task 3"},
                               "4": {"3.4": "last subtask of task 3"}}
    assert [str(w) for w in parsed.warnings] == [
        f"{source}:64:21: reading tag 'master' only; ignoring tag(s) feature-export — to import another tag, "
        "keep only it in a copy of the file",
        f"{source}:45:31: task 4 depends on cancelled task 5; the dependency is dropped — check that 4 does not "
        "need 5's work",
    ]
    assert_loads(parsed, source)


def test_text_fields() -> None:
    parsed, _ = read("tagged.json")
    two = task(parsed, "2")
    assert (two["title"], two["prompt"]) == ("Storage layer", "Store notes in SQLite.\n\nOne table per entity; "
                                             "migrations in db/.")
    assert two["acceptance"] == ["notes survive a restart", "migrations run twice safely"]
    assert task(parsed, "3.2")["prompt"] == ("Write the handlers.\n\nPart of task 3: HTTP API\n"
                                             "Serve notes over HTTP.\nJSON in and out.")
    assert "acceptance" not in task(parsed, "3.2")
    # The parent's testStrategy is checked on its last subtask.
    assert task(parsed, "3.4")["acceptance"] == ["Every error has a status code.", "The API test suite passes."]


def test_positions() -> None:
    parsed, _ = read("tagged.json")
    index = [t["id"] for t in parsed.data["tasks"]].index("4")
    assert parsed.positions[("tasks", index)] == (40, 7)
    assert parsed.positions[("tasks", index, "title")] == (42, 18)
    assert parsed.positions[("tasks", index, "needs", 0)] == (45, 26)  # "3", which stands for 3.4


def test_untagged_file_and_subtask_dependency_rules() -> None:
    parsed, source = read("legacy.json")
    assert parsed.data["name"] == "Notes App"
    # Subtask 3.1's `4` has no sibling 3.4, so it is task 4; 3.2's "1" is its sibling 3.1.
    assert needs(parsed) == {"1": [], "2": ["1"], "3.1": ["1", "2", "4"], "3.2": ["3.1"], "4": []}
    assert parsed.inferred == {"3.1": {"1": "dependency of parent task 3", "2": "dependency of parent task 3"}}
    assert task(parsed, "2")["prompt"] == "Load fixtures."
    assert parsed.warnings == []
    assert_loads(parsed, source)


def test_errors_are_reported_together_with_lines() -> None:
    path = FIXTURES / "errors.json"
    assert errors(path.read_text(), str(path)) == [f"{path}:{line}" for line in (
        "4:74: task 1 depends on '7', which is not a task in this file — remove it, or use an existing id "
        "(1, 2, 4, 6)",
        "5:72: task 2 depends on '1.4', which is not a task in this file — remove it, or use an existing id "
        "(1, 2, 4, 6)",
        "7:14: duplicate task id '1' (also line 4) — give every task its own id",
        '8:7: task 4 has no title — add "title": "<what it builds>"',
        '8:60: task 4: status 3 is not text — write e.g. "status": "pending"',
        '8:79: task 4: `dependencies` is text, not a list — write a JSON list of task ids, e.g. '
        '"dependencies": [1, 2]',
        '9:14: task id true is not a number or text — give it an id, e.g. "id": 3',
        "10:51: task 6 depends on '2.5', which is not a task in this file — remove it; task 2's subtasks are 2.1",
        '10:58: task 6: dependency null is not a task id — write a task id such as 3 or "3.2"',
    )]


def test_bad_json_is_one_located_error() -> None:
    assert errors('{"tasks": [\n  {"id": 1,}\n]}') == [
        "tasks.json:2:12: not valid JSON: Expecting property name enclosed in double quotes — fix the JSON here "
        "(a trailing comma or a missing quote is typical)"]
    assert errors("") == ["tasks.json:1:1: not valid JSON: Expecting value — fix the JSON here (a trailing comma "
                          "or a missing quote is typical)"]
    assert errors("[" * 100_000 + "]" * 100_000)[0].startswith("tasks.json:1:1: cannot be read as JSON")


@pytest.mark.parametrize(("text", "message"), [
    ("[1, 2]", "tasks.json:1:1: not a Taskmaster tasks file: there is no `tasks` list"),
    ('{"tasks": {"id": 1}}', "tasks.json:1:11: `tasks` is a mapping, not a list"),
    ('{"a": {"tasks": []}, "b": {"tasks": []}}', "tasks.json:1:1: several Taskmaster tags (a, b) and none is "
                                                 "`master`"),
    ('{"tasks": ["x"]}', "tasks.json:1:12: a task is text, not an object"),
    ('{"tasks": [{"id": "has space", "title": "t"}]}', "tasks.json:1:19: task id \"has space\" cannot be a plait "
                                                       "task id"),
    ('{"tasks": [{"id": 1, "title": "t", "status": "done"}]}', "tasks.json:1:11: every task in this file is done "
                                                               "or cancelled"),
    ('{"tasks": [{"id": 1, "title": "t", "dependencies": [1]}]}', "tasks.json:1:53: task 1 depends on itself (1)"),
    ('{"tasks": [{"id": 1, "title": "t", "subtasks": [{"id": 1, "title": "s", "dependencies": ["1"]}]}]}',
     "tasks.json:1:90: task 1.1 depends on itself (1.1)"),
])
def test_shape_errors(text: str, message: str) -> None:
    lines = errors(text)
    assert len(lines) == 1 and lines[0].startswith(message + " — ")


def test_did_you_mean_only_for_named_ids() -> None:
    text = json.dumps({"tasks": [{"id": "auth-setup", "title": "a"},
                                 {"id": "login", "title": "b", "dependencies": ["auth-setpu"]}]})
    assert errors(text)[0].endswith("— did you mean 'auth-setup'?")
    numbered = json.dumps({"tasks": [{"id": 12, "title": "a"}, {"id": 2, "title": "b", "dependencies": [13]}]})
    assert errors(numbered)[0].endswith("— remove it, or use an existing id (12, 2)")


def test_tags_names_and_statuses() -> None:
    only = json.dumps({"feature-auth": {"tasks": [{"id": 1, "title": "a", "status": "someday"}]}})
    parsed = parse_taskmaster(only, "/home/me/app/.taskmaster/tasks/tasks.json")
    assert parsed.data["name"] == "feature-auth"
    assert [str(w) for w in parsed.warnings] == [
        '/home/me/app/.taskmaster/tasks/tasks.json:1:63: task 1: unknown status "someday", read as pending — use '
        "one of: pending, in-progress, review, deferred, blocked, done, completed, cancelled"]
    master = json.dumps({"master": {"tasks": [{"id": 1, "title": "a"}]}})
    assert parse_taskmaster(master, "/home/me/app/.taskmaster/tasks/tasks.json").data["name"] == "app"
    assert parse_taskmaster(master, "/home/me/app/tasks/tasks.json").data["name"] == "app"
    assert parse_taskmaster(master, "tasks.json").data["name"] == "taskmaster"


def test_a_pending_task_whose_subtasks_are_done_counts_as_done() -> None:
    text = json.dumps({"tasks": [
        {"id": 1, "title": "a", "subtasks": [{"id": 1, "title": "s", "status": "done"}]},
        {"id": 2, "title": "b", "dependencies": [1]}]})
    parsed = parse_taskmaster(text, "tasks.json")
    assert needs(parsed) == {"2": []}
    assert [w.message for w in parsed.warnings] == [
        "task 1 is pending but all its subtasks are done or cancelled, so it counts as done"]


def test_huge_fan_out_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(taskmaster, "MAX_EDGES", 8)
    text = json.dumps({"tasks": [{"id": 1, "title": "g", "subtasks": [{"id": j, "title": "s"} for j in (1, 2, 3)]},
                                 *({"id": i, "title": "d", "dependencies": [1]} for i in (2, 3, 4))]})
    assert errors(text) == ["tasks.json:1:218: the tasks up to 4 imply more than 8 dependencies — give a task with "
                            "many subtasks one last subtask that needs the others, so that its dependents wait for "
                            "one task"]


def test_detection() -> None:
    assert looks_like_taskmaster(json.loads((FIXTURES / "tagged.json").read_text()))
    assert looks_like_taskmaster({"tasks": [{"id": 1, "title": "x"}]})
    assert not looks_like_taskmaster({"plait": 1, "tasks": [{"id": "a"}]})
    assert not looks_like_taskmaster({"tasks": ["a"]})
    assert not looks_like_taskmaster([{"tasks": []}])


def test_value_positions() -> None:
    text = '{\n  "a": [1, {"b\\"": "x"}],\n  "c": {}\n}'
    assert value_positions(text) == {(): (1, 1), ("a",): (2, 8), ("a", 0): (2, 9), ("a", 1): (2, 12),
                                     ("a", 1, 'b"'): (2, 20), ("c",): (3, 8)}


# --- random plans: write tasks.json from a generated DAG, read it back, compare edge by edge -------------------

STATUSES = ["pending", "pending", "in-progress", "review", "deferred", "done", "cancelled"]
CLOSED = {"done", "cancelled"}


@dataclass
class Sub:
    num: int
    status: str
    deps: list[int | str]


@dataclass
class Gen:
    num: int
    status: str
    deps: list[int | str]
    subs: list[Sub]


@st.composite
def plans(draw: st.DrawFn) -> list[Gen]:
    tasks: list[Gen] = []
    for num in range(1, draw(st.integers(1, 7)) + 1):
        # Refs to earlier tasks (3 or "3") and to earlier tasks' subtasks ("3.2").
        outside: list[int | str] = [t.num for t in tasks] + [str(t.num) for t in tasks] + [
            f"{t.num}.{s.num}" for t in tasks for s in t.subs]
        deps = draw(st.lists(st.sampled_from(outside), max_size=3)) if outside else []
        subs: list[Sub] = []
        for sub in range(1, draw(st.integers(0, 4)) + 1):
            siblings: list[int | str] = [s.num for s in subs] + [str(s.num) for s in subs] + [
                f"{num}.{s.num}" for s in subs]
            refs = siblings + [x for x in outside if isinstance(x, str) and "." in x]
            subs.append(Sub(sub, draw(st.sampled_from(STATUSES)),
                            draw(st.lists(st.sampled_from(refs), max_size=3)) if refs else []))
        tasks.append(Gen(num, draw(st.sampled_from(STATUSES)), deps, subs))
    return tasks


def render(tasks: list[Gen], indent: int | None) -> str:
    data = {"master": {"tasks": [
        {"id": t.num, "title": f"Task {t.num}", "description": "Work.", "status": t.status,
         "dependencies": t.deps, "subtasks": [{"id": s.num, "title": f"Sub {s.num}", "status": s.status,
                                               "dependencies": s.deps} for s in t.subs]}
        for t in tasks]}}
    return json.dumps(data, indent=indent)


def expected(tasks: list[Gen]) -> tuple[dict[str, list[str]], dict[str, dict[str, str]]]:
    """The DAG the generated file means, from its structure."""
    by_num = {t.num: t for t in tasks}

    def open_subs(t: Gen) -> list[Sub]:
        return [s for s in t.subs if s.status not in CLOSED]

    def closed(t: Gen) -> bool:
        return t.status in CLOSED or (bool(t.subs) and not open_subs(t))

    def resolve(owner: Gen, in_sub: bool, raw: int | str) -> tuple[Gen, Sub | None]:
        text = str(raw)
        if "." in text:
            k, j = map(int, text.split("."))
            return by_num[k], by_num[k].subs[j - 1]
        return (owner, owner.subs[int(text) - 1]) if in_sub else (by_num[int(text)], None)

    def on_siblings(t: Gen, s: Sub) -> set[int]:
        found = [resolve(t, True, raw) for raw in s.deps]
        return {x.num for owner, x in found if owner is t and x is not None and x.status not in CLOSED}

    def meaning(t: Gen, s: Sub | None) -> dict[str, str]:
        if s is not None:
            return {} if t.status in CLOSED or s.status in CLOSED else {f"{t.num}.{s.num}": ""}
        if closed(t):
            return {}
        if t.subs:
            needed = {n for o in open_subs(t) for n in on_siblings(t, o)}
            return {f"{t.num}.{e.num}": f"last subtask of task {t.num}" for e in open_subs(t) if e.num not in needed}
        return {str(t.num): ""}

    edges: dict[str, dict[str, str]] = {}
    for t in tasks:
        if closed(t):
            continue
        for s in open_subs(t) if t.subs else [None]:
            unit = f"{t.num}.{s.num}" if s else str(t.num)
            mine: dict[str, str] = {}
            wanted = [(meaning(*resolve(t, s is not None, raw)), "") for raw in (s.deps if s else t.deps)]
            if s is not None and not on_siblings(t, s):
                wanted += [(meaning(*resolve(t, False, raw)), f"dependency of parent task {t.num}") for raw in t.deps]
            for targets, reason in wanted:
                for n, why in targets.items():
                    why = why or reason
                    if n not in mine or (mine[n] and not why):
                        mine[n] = why
            edges[unit] = mine
    order = list(edges)
    return ({u: sorted(e, key=order.index) for u, e in edges.items()},
            {u: {n: r for n, r in e.items() if r} for u, e in edges.items() if any(e.values())})


@settings(max_examples=300, deadline=None)
@given(plans(), st.sampled_from([None, 2]))
def test_random_plans_read_back_as_generated(tasks: list[Gen], indent: int | None) -> None:
    text = render(tasks, indent)
    want_needs, want_inferred = expected(tasks)
    if not want_needs:
        (line,) = errors(text)
        assert "every task in this file is done or cancelled" in line
        return
    parsed = parse_taskmaster(text, "tasks.json")
    assert needs(parsed) == want_needs
    assert parsed.inferred == want_inferred
    assert_loads(parsed, "tasks.json")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 12) | st.sampled_from(["1", "2.1", "x", "done", "pending", ""]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["master", "", "tasks", "id", "title", "status", "dependencies", "subtasks", "details"]),
        inner, max_size=5),
    max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_json_reads_or_fails_cleanly(value: object) -> None:
    try:
        parsed = parse_taskmaster(json.dumps(value, indent=1), "tasks.json")
    except PlanError as exc:
        assert all(line.startswith("tasks.json:") and "\n" not in line for line in exc.lines())
    else:
        assert parsed.data["tasks"]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet='{}[]",:1 \\tasks'))
def test_any_text_reads_or_fails_cleanly(text: str) -> None:
    try:
        parse_taskmaster(text, "tasks.json")
    except PlanError as exc:
        assert all(line.startswith("tasks.json:") for line in exc.lines())
