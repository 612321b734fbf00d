"""Taskmaster's `tasks.json` (`.taskmaster/tasks/tasks.json`, or the older `tasks/tasks.json`) as plan data.

Shapes: tagged `{"master": {"tasks": [...], "metadata": {...}}, "feature-x": {...}}`, or the older untagged
`{"meta": {...}, "tasks": [...]}`. Of several tags `master` is read (or the only tag), and a warning names the
others; several tags without a `master` is an error. The rules, one line each:

- ids: task `3` becomes "3", its subtask `1` becomes "3.1".
- prompt: description, then details; a subtask's prompt ends with its parent's title, description and details.
- acceptance: testStrategy (and a subtask's acceptanceCriteria), one item per bullet when every line is a bullet.
- status done/completed/cancelled: not imported (with its subtasks); a dependency on such a task is satisfied
  and dropped (on a cancelled one with a warning). Any other status runs (pending, in-progress, review, ...).
- a task with subtasks is replaced by its open subtasks: its own dependencies go to its first subtasks (those
  with no open sibling dependency), its testStrategy to its last ones (those no open sibling depends on), and a
  dependency on it means its last subtasks. A pending task whose subtasks are all done counts as done (warning).
- a task's dependency `3` or "3" is task 3; "3.2" is subtask 2 of task 3.
- a subtask's dependency "3.2" (with a dot) is that subtask; a plain `2` or "2" is its sibling subtask
  (parent.2), as Taskmaster's `next` reads it; when there is no such sibling, task 2 (as Taskmaster's older docs
  write it).
- priority, complexity and the other fields are not imported: plait orders work by dependencies alone.
- `relax_phases` has no effect: Taskmaster has no phases.
- a file whose dependencies expand to more than 100,000 edges is an error (a guard against n*m blow-ups).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from plait.errors import Location
from plait.plan.formats import Keys, Parsed, Position
from plait.plan.model import ID_PATTERN
from plait.plan.validate import Diagnostic, PlanError, did_you_mean, error, kind, warning

_DONE = frozenset({"done", "completed", "cancelled"})
_STATUSES = ("pending", "in-progress", "review", "deferred", "blocked", "done", "completed", "cancelled")
_BULLET = re.compile(r"^(?:[-*•]|\d+[.)])\s+")
# One JSON token: a string, a bracket, or a bare literal (number, true, false, null); `,` and `:` are skipped.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\]]|[^\s{}\[\],:"]+')
_DEPTH = 8  # tag, "tasks", i, "subtasks", j, "dependencies", k: the deepest path a message points at
# Many tasks needing a task with many last subtasks make n*m edges; past this many, a file is an error.
MAX_EDGES = 100_000
_PROJECT = re.compile(r"(?<![^/\\])(?!\.taskmaster[/\\])([^/\\]+)[/\\](?:\.taskmaster[/\\])?tasks[/\\][^/\\]+$")
_NUMERIC = re.compile(r"\d+(?:\.\d+)?")


def looks_like_taskmaster(data: object) -> bool:
    """Parsed JSON with a Taskmaster `tasks` list, at the top or under a tag (and not a plait plan)."""
    if not isinstance(data, dict) or "plait" in data:
        return False
    lists = [data.get("tasks")] + [v.get("tasks") for v in data.values() if isinstance(v, dict)]
    return any(isinstance(x, list) and all(isinstance(t, dict) and "id" in t for t in x) for x in lists)


def parse_taskmaster(text: str, source: str, relax_phases: bool = False) -> Parsed:
    """Read a Taskmaster tasks.json; raises PlanError listing every problem found."""
    del relax_phases  # Taskmaster has no phases
    return _Reader(text.removeprefix("\ufeff"), source).parse()


def value_positions(text: str) -> dict[Keys, tuple[int, int]]:
    """(line, column) of every value in a valid JSON text, by key path; one pass over its tokens."""
    found: dict[Keys, tuple[int, int]] = {}
    stack: list[list[Any]] = []  # [path, is_object, next index, pending key]
    line, line_start, last = 1, 0, 0
    for token in _TOKEN.finditer(text):
        start, first = token.start(), token.group()[0]
        newlines = text.count("\n", last, start)
        if newlines:
            line, line_start = line + newlines, text.rfind("\n", last, start) + 1
        last = start
        if first in "]}":
            stack.pop()
            continue
        top = stack[-1] if stack else None
        if top is not None and top[1] and top[3] is None:  # an object's key
            key = token.group()
            top[3] = json.loads(key) if "\\" in key else key[1:-1]
            continue
        if top is None:
            path: Keys | None = ()
        elif top[1]:
            path, top[3] = (None if top[0] is None else (*top[0], top[3])), None
        else:
            path, top[2] = (None if top[0] is None else (*top[0], top[2])), top[2] + 1
        if path is not None and len(path) > _DEPTH:
            path = None  # deeper than any task field: not recorded (a path per value would be quadratic)
        if path is not None:
            found[path] = (line, start - line_start + 1)
        if first in "[{":
            stack.append([path, first == "{", 0, None])
    return found


@dataclass(eq=False)
class _Item:
    """One task or subtask of the file."""

    id: str
    raw: dict[str, Any]
    path: Keys
    status: str
    parent: _Item | None = None
    children: list[_Item] = field(default_factory=list)
    open_children: list[_Item] = field(default_factory=list)
    deps: list[tuple[_Item, Keys]] = field(default_factory=list)  # resolved, with where each was written
    starts: set[str] = field(default_factory=set)  # open subtasks with no open sibling dependency
    ends: set[str] = field(default_factory=set)  # open subtasks no open sibling depends on

    @property
    def closed(self) -> bool:
        """Not run: done or cancelled itself, under a closed parent, or a parent with no open subtask."""
        if self.status in _DONE or (self.parent is not None and self.parent.status in _DONE):
            return True
        return bool(self.children) and not self.open_children

    def text(self, key: str) -> str:
        value = self.raw.get(key)
        return value.strip() if isinstance(value, str) else ""


class _Reader:
    def __init__(self, text: str, source: str) -> None:
        self.text, self.source = text, source
        self.errors: list[Diagnostic] = []
        self.warnings: list[Diagnostic] = []
        self.where: dict[Keys, tuple[int, int]] = {}
        self.by_id: dict[str, _Item] = {}
        self.edges = 0

    def pos(self, path: Keys) -> tuple[int, int]:
        """Where `path`, or the nearest value enclosing it, starts."""
        while path and path not in self.where:
            path = path[:-1]
        return self.where.get(path, (1, 1))

    def at(self, path: Keys) -> Location:
        return Location(self.source, *self.pos(path))

    def fail(self, message: str, fix: str, path: Keys) -> None:
        self.errors.append(error(message, fix, self.at(path)))

    def parse(self) -> Parsed:
        try:
            data = json.loads(self.text)
        except json.JSONDecodeError as exc:
            where = Location(self.source, exc.lineno, exc.colno)
            raise PlanError([error(f"not valid JSON: {exc.msg}", "fix the JSON here (a trailing comma or a "
                                   "missing quote is typical)", where)]) from None
        except (ValueError, RecursionError) as exc:  # an over-long number, or nesting deeper than Python reads
            raise PlanError([error(f"cannot be read as JSON: {str(exc)[:100]}", "check this is a Taskmaster "
                                   "tasks.json", Location(self.source, 1, 1))]) from None
        self.where = value_positions(self.text)
        tasks, base, name = self._tasks(data)
        items = [item for i, raw in enumerate(tasks) if (item := self._item(raw, (*base, i), None))]
        for item in items:
            for x in (item, *item.children):
                x.deps = self._dependencies(x)
            _group(item)
        if not self.errors and all(item.closed for item in items):
            self.fail("every task in this file is done or cancelled", "there is nothing to run: import a file "
                      "or tag with pending tasks", base)
        if self.errors:
            raise PlanError(sorted(self.errors, key=lambda d: (d.location.line, d.location.column)))
        for item in items:
            if item.children and not item.open_children and item.status not in _DONE:
                self.warnings.append(warning(f"task {item.id} is {item.status} but all its subtasks are done or "
                                             "cancelled, so it counts as done", "mark it done in Taskmaster, or "
                                             "add a subtask for the work left", self.at(item.path)))
        return self._plan(items, name)

    def _tasks(self, data: Any) -> tuple[list[Any], Keys, str]:
        """The task list to read, its path, and a plan name."""
        data = data if isinstance(data, dict) else {}
        tags = [] if "tasks" in data else [k for k, v in data.items() if isinstance(v, dict) and "tasks" in v]
        tag = "master" if "master" in tags else tags[0] if len(tags) == 1 else None
        if "tasks" not in data and not tags:
            raise PlanError([error("not a Taskmaster tasks file: there is no `tasks` list", 'Taskmaster writes '
                                   '{"master": {"tasks": [...]}}; give .taskmaster/tasks/tasks.json', self.at(()))])
        if tags and tag is None:
            raise PlanError([error(f"several Taskmaster tags ({', '.join(tags)}) and none is `master`",
                                   "keep only the tag to import in a copy of the file", self.at(()))])
        if others := [t for t in tags if t != tag]:
            self.warnings.append(warning(f"reading tag '{tag}' only; ignoring tag(s) {', '.join(others)}",
                                         "to import another tag, keep only it in a copy of the file",
                                         self.at((others[0],))))
        holder = data if tag is None else data[tag]
        base: Keys = ("tasks",) if tag is None else (tag, "tasks")
        tasks = holder["tasks"]
        if not isinstance(tasks, list):
            raise PlanError([error(f"`tasks` is {kind(tasks)}, not a list", "write the tasks as a JSON list "
                                   '[{"id": 1, "title": ...}, ...]', self.at(base))])
        meta = holder.get("meta") or holder.get("metadata")
        project = meta.get("projectName") if isinstance(meta, dict) else None
        if isinstance(project, str) and project.strip():
            return tasks, base, project.strip()
        return tasks, base, (tag if tag != "master" else None) or _folder_name(self.source)

    def _item(self, raw: Any, path: Keys, parent: _Item | None) -> _Item | None:
        if not isinstance(raw, dict):
            self.fail(f"{'a subtask' if parent else 'a task'} is {kind(raw)}, not an object",
                      'write it as {"id": ..., "title": ...}', path)
            return None
        item_id = self._id(raw, path, parent)
        label = f"task {item_id}" if item_id else "a task"
        status = self._status(raw, path, label)
        for key in ("title", "description", "details", "testStrategy", "acceptanceCriteria"):
            value = raw.get(key)
            if key == "title" and (value is None or (isinstance(value, str) and not value.strip())):
                self.fail(f"{label} has no title", 'add "title": "<what it builds>"', (*path, key))
            elif value is not None and not isinstance(value, str):
                self.fail(f"{label}: `{key}` is {kind(value)}, not text", f"write `{key}` as a JSON string",
                          (*path, key))
        if item_id is None:
            return None
        item = _Item(item_id, raw, path, status or "pending", parent)
        if item_id in self.by_id:
            line = self.pos(self.by_id[item_id].path)[0]
            self.fail(f"duplicate task id '{item_id}' (also line {line})", "give every task its own id",
                      (*path, "id"))
        self.by_id.setdefault(item_id, item)
        subtasks = raw.get("subtasks")
        if parent is None and isinstance(subtasks, list):
            item.children = [c for j, s in enumerate(subtasks) if (c := self._item(s, (*path, "subtasks", j), item))]
            item.open_children = [c for c in item.children if c.status not in _DONE]
        elif parent is None and subtasks is not None:
            self.fail(f"{label}: `subtasks` is {kind(subtasks)}, not a list", "write them as a JSON list",
                      (*path, "subtasks"))
        return item

    def _id(self, raw: dict[str, Any], path: Keys, parent: _Item | None) -> str | None:
        value = raw.get("id")
        if isinstance(value, bool) or not isinstance(value, int | str):
            self.fail(f"{'subtask' if parent else 'task'} id {_json(value)} is not a number or text",
                      'give it an id, e.g. "id": 3', (*path, "id"))
            return None
        text = str(value).strip()
        if parent is not None:
            text = f"{parent.id}.{text.removeprefix(parent.id + '.')}"
        if not re.fullmatch(ID_PATTERN, text) or len(text) > 64:
            self.fail(f"task id {_json(text)} cannot be a plait task id", "use letters, digits, '.', '_' and '-' "
                      "(at most 64), starting and ending with a letter or digit", (*path, "id"))
            return None
        return text

    def _status(self, raw: dict[str, Any], path: Keys, label: str) -> str | None:
        value = raw.get("status", "pending")
        if not isinstance(value, str):
            self.fail(f"{label}: status {_json(value)} is not text", 'write e.g. "status": "pending"',
                      (*path, "status"))
            return None
        status = value.strip().lower()
        if status not in _STATUSES:
            self.warnings.append(warning(f"{label}: unknown status {_json(value)}, read as pending",
                                         f"use one of: {', '.join(_STATUSES)}", self.at((*path, "status"))))
        return status

    def _dependencies(self, item: _Item) -> list[tuple[_Item, Keys]]:
        path = (*item.path, "dependencies")
        deps = item.raw.get("dependencies") or []
        if not isinstance(deps, list):
            self.fail(f"task {item.id}: `dependencies` is {kind(deps)}, not a list", "write a JSON list of task "
                      'ids, e.g. "dependencies": [1, 2]', path)
            return []
        return [(target, (*path, j)) for j, dep in enumerate(deps) if (target := self._target(item, dep, (*path, j)))]

    def _target(self, item: _Item, dep: object, path: Keys) -> _Item | None:
        if isinstance(dep, bool) or not isinstance(dep, int | str):
            self.fail(f"task {item.id}: dependency {_json(dep)} is not a task id", "write a task id such as 3 or "
                      '"3.2"', path)
            return None
        ref = str(dep).strip()
        parent = item.parent
        target = (parent and "." not in ref and self.by_id.get(f"{parent.id}.{ref}")) or self.by_id.get(ref)
        if target is None:
            self.fail(f"task {item.id} depends on '{ref}', which is not a task in this file",
                      self._missing_fix(ref), path)
        elif target is item or target is parent or target.parent is item:
            relation = "itself" if target is item else "its own subtask" if target.parent is item else "its parent"
            self.fail(f"task {item.id} depends on {relation} ({target.id})", "remove this dependency", path)
        else:
            return target
        return None

    def _missing_fix(self, ref: str) -> str:
        """Suggest only what is genuinely close: a named id's near spelling, or the subtasks a task has."""
        head = ref.partition(".")[0]
        if "." in ref and (parent := self.by_id.get(head)) and parent.children:
            return f"remove it; task {head}'s subtasks are {', '.join(c.id for c in parent.children[:8])}"
        ids = [i for i, x in self.by_id.items() if x.parent is None]
        listed = ", ".join(ids[:8]) + (", …" if len(ids) > 8 else "")
        otherwise = f"remove it, or use an existing id ({listed})"
        return otherwise if _NUMERIC.fullmatch(ref) else did_you_mean(ref, ids, otherwise)

    def _plan(self, items: list[_Item], name: str) -> Parsed:
        units = [u for item in items if not item.closed for u in (item.open_children or [item])]
        order = {u.id: n for n, u in enumerate(units)}
        positions: dict[Keys, Position] = {(): (1, 1), ("name",): (1, 1)}
        tasks: list[dict[str, Any]] = []
        inferred: dict[str, dict[str, str]] = {}
        for i, unit in enumerate(units):
            needs = self._needs(unit)
            ordered = sorted(needs, key=order.__getitem__)
            task: dict[str, Any] = {"id": unit.id, "title": unit.text("title"), "prompt": _prompt(unit),
                                    "needs": ordered}
            if acceptance := _acceptance(unit):
                task["acceptance"] = acceptance
            tasks.append(task)
            if reasons := {n: needs[n][0] for n in ordered if needs[n][0]}:
                inferred[unit.id] = reasons
            positions[("tasks", i)] = self.pos(unit.path)
            for key, json_key in (("id", "id"), ("title", "title"), ("prompt", "description"),
                                  ("acceptance", "testStrategy")):
                positions[("tasks", i, key)] = self.pos((*unit.path, json_key))
            for j, n in enumerate(ordered):
                positions[("tasks", i, "needs", j)] = self.pos(needs[n][1])
        return Parsed({"plait": 1, "name": name, "tasks": tasks}, positions, self.warnings, inferred)

    def _needs(self, unit: _Item) -> dict[str, tuple[str, Keys]]:
        """needed id -> (why it was inferred, "" when it was written; where the dependency was written)."""
        needs: dict[str, tuple[str, Keys]] = {}
        sources = [(t, at, "") for t, at in unit.deps]
        parent = unit.parent
        if parent is not None and unit.id in parent.starts:
            sources += [(t, at, f"dependency of parent task {parent.id}") for t, at in parent.deps]
        for target, at, reason in sources:
            if not reason and (target.status == "cancelled" or (target.parent and target.parent.status == "cancelled")):
                self.warnings.append(warning(f"task {unit.id} depends on cancelled task {target.id}; the "
                                             "dependency is dropped", f"check that {unit.id} does not need "
                                             f"{target.id}'s work", self.at(at)))
            for needed, why in _expand(target):
                why = why or reason
                if needed not in needs or (needs[needed][0] and not why):
                    needs[needed] = (why, at)
        self.edges += len(needs)
        if self.edges > MAX_EDGES:
            raise PlanError([error(f"the tasks up to {unit.id} imply more than {MAX_EDGES:,} dependencies",
                                   "give a task with many subtasks one last subtask that needs the others, so "
                                   "that its dependents wait for one task", self.at(unit.path))])
        return needs


def _group(parent: _Item) -> None:
    """Find a task's first and last open subtasks, by their dependencies on open siblings."""
    open_ids = {c.id for c in parent.open_children}
    on_siblings = {c.id: {t.id for t, _ in c.deps if t.id in open_ids and t.parent is parent}
                   for c in parent.open_children}
    needed = {n for ids in on_siblings.values() for n in ids}
    parent.starts = {i for i, ids in on_siblings.items() if not ids}
    parent.ends = open_ids - needed


def _expand(target: _Item) -> list[tuple[str, str]]:
    """The plait ids a dependency on `target` means, each with why it was inferred ("" when it was not)."""
    if target.closed:
        return []
    if target.children:
        return [(c.id, f"last subtask of task {target.id}") for c in target.open_children if c.id in target.ends]
    return [(target.id, "")]


def _prompt(unit: _Item) -> str:
    parts = [unit.text("description"), unit.text("details")]
    if (parent := unit.parent) is not None:
        context = "\n".join(x for x in (parent.text("description"), parent.text("details")) if x)
        parts.append(f"Part of task {parent.id}: {parent.text('title')}" + (f"\n{context}" if context else ""))
    return "\n\n".join(p for p in parts if p) or unit.text("title")


def _acceptance(unit: _Item) -> list[str]:
    texts = [unit.text("testStrategy"), unit.text("acceptanceCriteria")]
    if unit.parent is not None and unit.id in unit.parent.ends:
        texts.append(unit.parent.text("testStrategy"))
    return [item for text in texts if text for item in _items(text)]


def _items(text: str) -> list[str]:
    """A text whose lines are all bullets gives one item per bullet; any other text is one item."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if all(_BULLET.match(line) for line in lines):
        return [_BULLET.sub("", line, count=1) for line in lines]
    return [text]


def _json(value: object) -> str:
    """A value as JSON writes it (`null`, `true`, `"3"`), shortened for a one-line message."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def _folder_name(source: str) -> str:
    """The project folder of `<project>/.taskmaster/tasks/tasks.json` or `<project>/tasks/tasks.json`."""
    found = _PROJECT.search(os.path.abspath(source))
    return found.group(1) if found else "taskmaster"
