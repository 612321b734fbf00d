"""spectacular's `plan.md`, in both of its dialects, as plan data for `load.py` to type-check.

One line-based parser reads the union of the two dialects. Plugin: YAML front matter, `## Phase 1: Name` and
`**Strategy**: parallel`, `### Task 1.1: Name`, `**Files**:` and a `- path` list, `**Complexity**: M (3h)`,
`**Dependencies**: Task 1.1`, `**Acceptance Criteria**:` and `- [ ] item`s. MCP server: `Run ID:`,
`## Phase 1: Name (Parallel)`, `### Task 1-1: Name (M - 1h)`, `**Files:**` with inline backticked paths (or
`- Files: ...`), `**Dependencies:** 1-1`. A task's other lines become its prompt. plait's own additions:
`**Verify**: command` in a task, `verify:` (the default verify command) in the front matter.

Dependencies: a task's explicit ones win. Otherwise, in a sequential phase a task needs the task before it;
the first task of a phase, and every task of a parallel phase, needs all earlier work, named by the earlier
tasks nothing else builds on (without explicit dependencies: the previous phase's last tasks), so
spectacular's phase order holds. `None` means "nothing beyond the phase order".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from plait.errors import Location
from plait.plan.model import ID_PATTERN, parse_duration
from plait.plan.validate import Diagnostic, PlanError, did_you_mean, error, warning

Keys = tuple[str | int, ...]
Ref = tuple[str, int, int]  # text, line, column

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_PHASE = re.compile(r"^Phase\s+(?P<num>\d[^\s:]*)\s*(?::|\s|$)(?P<name>.*)$", re.I)
_STRATEGY_SUFFIX = re.compile(r"\s*[(\[]\s*(?P<s>parallel|sequential)\b[^)\]]*[)\]]\s*$", re.I)
_TASK = re.compile(r"^Task\s+(?P<id>[^\s:]+?)\s*(?:[:—–]\s*|\s-\s*|\s+|$)(?P<title>.*)$", re.I)
_COMPLEXITY_SUFFIX = re.compile(r"\s*\((?P<c>(?:XL|XS|S|M|L)\b[^)]*)\)\s*$")
_RULE = re.compile(r"^\s*([-*_])(\s*\1){2,}\s*$")  # a thematic break between tasks, not content
_BOLD_FIELD = re.compile(r"^\s*(?:[-*+]\s+)?\*\*(?P<label>[^*:]+?)\s*(?::\s*\*\*|\*\*\s*:)\s*(?P<rest>.*)$")
# Without bold, only labels that cannot be ordinary prose (`- Verify: it works` is prose, not a command).
_PLAIN_FIELD = re.compile(r"^\s*(?:[-*+]\s+)?(?P<label>files|dependencies|depends on|complexity|"
                          r"acceptance criteria|strategy|feature)\s*:\s*(?P<rest>.*)$", re.I)
_ITEM = re.compile(r"^\s*[-*+]\s+(?:\[(?P<box>[ xX])\]\s*)?(?P<text>.*)$")
_LABELS = {"files": "files", "file": "files", "files to modify": "files", "files to create": "files",
           "dependencies": "deps", "dependency": "deps", "depends on": "deps", "requires": "deps",
           "complexity": "complexity", "size": "complexity", "estimate": "estimate",
           "estimated time": "estimate", "acceptance criteria": "acceptance", "acceptance": "acceptance",
           "verify": "verify", "verification": "verify", "description": "description", "strategy": "strategy",
           "execution strategy": "strategy", "feature": "feature", "feature slug": "feature"}
_COMPLEXITY = re.compile(r"^(?P<size>XL|XS|extra large|small|medium|large|S|M|L)\b"
                         r"\s*[-–—(,:/]?\s*(?P<est>[^)]*)", re.I)
_SIZES = {"xs": "S", "s": "S", "small": "S", "m": "M", "medium": "M", "l": "L", "large": "L", "xl": "XL"}
_NONE = re.compile(r"^\s*(none|n/?a|-|—|no dependencies|)\s*\.?\s*$", re.I)


@dataclass(frozen=True)
class MarkdownPlan:
    data: dict[str, Any]
    positions: dict[Keys, tuple[int, int]]
    warnings: list[Diagnostic]


@dataclass
class _Task:  # filled in line by line while parsing, hence mutable
    id: str
    title: str
    line: int
    size: str | None = None
    estimate: str | None = None
    verify: str | None = None
    files: list[Ref] = field(default_factory=list)
    deps: list[Ref] = field(default_factory=list)
    acceptance: list[Ref] = field(default_factory=list)
    at: dict[str, tuple[int, int]] = field(default_factory=dict)  # plan key -> (line, column) of its field
    body: list[str] = field(default_factory=list)
    needs: list[str] = field(default_factory=list)


@dataclass
class _Phase:
    label: str
    line: int
    strategy: str | None
    tasks: list[_Task] = field(default_factory=list)
    broken: bool = False  # a malformed task heading was reported: "no tasks" would only repeat it


def parse_markdown(text: str, source: str) -> MarkdownPlan:
    """Parse a spectacular plan.md; raises PlanError (with line numbers) when it cannot be read."""
    return _Parser(source).parse(text)


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.errors: list[Diagnostic] = []
        self.warnings: list[Diagnostic] = []
        self.front: dict[str, Any] = {}
        self.title: tuple[str, int] | None = None
        self.phases: list[_Phase] = []
        self.phase: _Phase | None = None
        self.task: _Task | None = None
        self.target: str | None = None  # which field a following `- item` list belongs to

    def at(self, line: int, column: int = 1) -> Location:
        return Location(self.source, line, column)

    def parse(self, text: str) -> MarkdownPlan:
        lines = text.splitlines()
        start = self._front_matter(lines)
        fence = False
        for n, line in enumerate(lines[start:], start + 1):
            if fence or _FENCE.match(line):
                fence = fence != bool(_FENCE.match(line))
                if self.task:
                    self.task.body.append(line)
                continue
            heading = _HEADING.match(line)
            if heading and not (self.task and len(heading.group(1)) > 3):
                self._heading(len(heading.group(1)), heading.group(2), n)
            elif self.task:
                self._task_line(self.task, line, n)
            elif found := _field(line):
                self._section_line(found[0], found[1], n)
        return self._build()

    def _front_matter(self, lines: list[str]) -> int:
        if not lines or lines[0].strip() != "---":
            return 0
        end = next((i for i in range(1, len(lines)) if lines[i].strip() in ("---", "...")), None)
        if end is None:
            raise PlanError([error("the front matter opened by `---` is never closed",
                                   "end it with a `---` line", self.at(1))])
        try:
            front = yaml.safe_load("\n".join(lines[1:end]))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 2 if mark else 1
            raise PlanError([error("invalid YAML in the front matter", "fix the `key: value` lines between "
                                   "the `---` lines", self.at(line))]) from None
        self.front = front if isinstance(front, dict) else {}
        return end + 1

    def _heading(self, level: int, text: str, n: int) -> None:
        self.task, self.target = None, None
        if level == 1:
            self.title = self.title or (text, n)
        elif level == 2:
            match = _PHASE.match(text)
            self.phase = None
            if match:
                name = match.group("name")
                suffix = _STRATEGY_SUFFIX.search(name)
                strategy = suffix.group("s").lower() if suffix else None
                self.phase = _Phase(f"Phase {match.group('num')}", n, strategy)
                self.phases.append(self.phase)
        elif level == 3:
            match = _TASK.match(text)
            if match and re.fullmatch(ID_PATTERN, match.group("id").rstrip(".")):
                self._new_task(match.group("id").rstrip("."), match.group("title"), n)
            elif re.match(r"task\b", text, re.I):
                self._misplaced(f"task heading '### {text}' has no id",
                                "write it as `### Task 1.1: Name` (ids: letters, digits, '.', '-')", n)

    def _misplaced(self, message: str, fix: str, n: int, once: bool = False) -> None:
        """A malformed task. Its phase is then not also reported as empty; `once`: one report per phase."""
        if not (once and self.phase and self.phase.broken):
            self.errors.append(error(message, fix, self.at(n)))
        if self.phase:
            self.phase.broken = True

    def _new_task(self, task_id: str, title: str, n: int) -> None:
        if self.phase is None:
            self.errors.append(error(f"task {task_id} is not inside a phase",
                                     "put it under a `## Phase 1: Name` heading", self.at(n)))
            return
        task = _Task(task_id, title, n)
        if suffix := _COMPLEXITY_SUFFIX.search(title):
            task.title = title[: suffix.start()].strip()
            self._complexity(task, suffix.group("c"), n, suffix.start("c") + 1)
        self.phase.tasks.append(task)
        self.task = task

    def _task_line(self, task: _Task, line: str, n: int) -> None:
        if not line.strip() or _RULE.match(line):
            task.body.append("")
            return
        if found := _field(line):
            label, rest, column = found
            self._field(task, label, rest, n, column, line)
            return
        item = _ITEM.match(line)
        if item and (item.group("box") is not None or self.target):
            text, column = item.group("text").strip(), item.start("text") + 1
            if item.group("box") is not None or self.target == "acceptance":
                task.acceptance.append((text, n, column))
            elif self.target == "files":
                task.files += _paths(text, n, column, first_only=True)
            elif self.target == "deps":
                task.deps += _refs(text, n, column)
            return
        self.target = None
        task.body.append(line)

    def _field(self, task: _Task, label: str, rest: str, n: int, column: int, line: str) -> None:
        self.target = None
        if label == "files":
            task.at["files"] = (n, 1)
            task.files += _paths(rest, n, column, first_only=False)
            self.target = None if rest else "files"
        elif label == "deps":
            task.at["needs"] = (n, 1)
            task.deps += [] if _NONE.match(rest) else _refs(rest, n, column)
            self.target = None if rest else "deps"
        elif label in ("complexity", "estimate"):
            self._complexity(task, rest, n, column, only_estimate=label == "estimate")
        elif label == "acceptance":
            task.acceptance += [(rest, n, column)] if rest else []
            self.target = "acceptance"
        elif label == "verify" and rest:
            task.verify, task.at["verify"] = rest.strip().strip("`"), (n, column)
        elif label == "strategy" and self.phase:
            self.phase.strategy = self._strategy(rest, n)
        elif label == "description":
            task.body.append(rest)
        else:
            task.body.append(line)

    def _section_line(self, label: str, rest: str, n: int) -> None:
        """A field outside any task: the phase's strategy, the feature's name, or a misplaced task field."""
        if label == "feature" and not self.phases:
            self.front.setdefault("feature", rest.strip("`*"))
        elif self.phase is None:
            return
        elif label == "strategy":
            self.phase.strategy = self._strategy(rest, n)
        elif label in ("files", "complexity", "acceptance"):
            self._misplaced(f"`{label}` given outside any task", "start the task with a `### Task 1.1: Name` "
                            "heading", n, once=True)

    def _strategy(self, text: str, n: int) -> str | None:
        word = text.strip().strip("*`").lower()
        for value in ("parallel", "sequential"):
            if word.startswith(value):
                return value
        self.errors.append(error(f"unknown strategy '{text.strip()}'", "write `**Strategy**: parallel` or "
                                 "`**Strategy**: sequential`", self.at(n)))
        return None

    def _complexity(self, task: _Task, text: str, n: int, column: int, only_estimate: bool = False) -> None:
        text = text.strip().strip("*`")
        match = _COMPLEXITY.match(text)
        if only_estimate or (not match and _estimate(text)):
            size, est = None, text
        elif match:
            word = match.group("size").lower().replace("extra large", "xl")
            size, est = _SIZES[word], match.group("est")
            if word == "xs" and not est.strip():
                est = "30m"  # plait has no XS: an S task, with the estimate XS stands for (< 1h)
        else:
            self.errors.append(error(f"task {task.id}: cannot read the complexity '{text}'",
                                     "write S, M or L, optionally with an estimate, e.g. `M (2h)`",
                                     self.at(n, column)))
            return
        estimate = _estimate(est) if est.strip() else None
        if est.strip() and estimate is None:
            self.errors.append(error(f"task {task.id}: cannot read the estimate '{est.strip()}'",
                                     "write it like 30m, 1.5h or 2h30m", self.at(n, column)))
        task.size = size or task.size
        task.estimate = estimate or task.estimate
        task.at["size"] = task.at["estimate"] = (n, column)

    def _build(self) -> MarkdownPlan:
        tasks = [t for p in self.phases for t in p.tasks]
        if not tasks and not self.errors:
            self.errors.append(error("no tasks found in this markdown plan", "write tasks as "
                                     "`### Task 1.1: Name` under `## Phase 1: Name` headings", self.at(1)))
        for phase in self.phases:
            if not phase.tasks and not phase.broken:
                self.errors.append(error(f"{phase.label} has no tasks", "add `### Task` sections to it or "
                                         "remove the phase", self.at(phase.line)))
            elif phase.tasks and phase.strategy is None:
                phase.strategy = "sequential"
                self.warnings.append(warning(f"{phase.label} does not say whether its tasks run in parallel; "
                                             "treating it as sequential", "add `**Strategy**: parallel` (or "
                                             "sequential) to the phase", self.at(phase.line)))
        self._resolve(tasks)
        if self.errors:
            raise PlanError(sorted(self.errors, key=lambda d: (d.location.line, d.location.column)))
        return self._data(tasks)

    def _resolve(self, tasks: list[_Task]) -> None:
        ids = {_norm(t.id): t.id for t in reversed(tasks)}
        phases = {_norm(p.label.split()[1]): p for p in self.phases}
        for task in tasks:
            for ref, n, column in task.deps:
                phase_ref = re.fullmatch(r"phase\s+(\S+)", ref, re.I)
                if phase_ref and _norm(phase_ref.group(1)) in phases:
                    task.needs += [t.id for t in phases[_norm(phase_ref.group(1))].tasks]
                elif _norm(ref) in ids:
                    task.needs.append(ids[_norm(ref)])
                else:
                    others = [t.id for t in tasks if t is not task]
                    fix = did_you_mean(ref, others, "refer to tasks by their id, e.g. `Task 1.1`")
                    message = f"task {task.id} depends on '{ref}', which is not a task in this plan"
                    self.errors.append(error(message, fix, self.at(n, column)))
        earlier: list[_Task] = []
        for phase in self.phases:
            # What a phase waits for: all earlier work, named by the tasks nothing earlier builds on.
            built_on = {d for t in earlier for d in t.needs}
            sinks = [t.id for t in earlier if t.id not in built_on]
            for pos, task in enumerate(phase.tasks):
                if not task.deps:
                    chained = phase.strategy == "sequential" and pos > 0
                    task.needs = [phase.tasks[pos - 1].id] if chained else list(sinks)
            earlier += phase.tasks

    def _data(self, tasks: list[_Task]) -> MarkdownPlan:
        positions: dict[Keys, tuple[int, int]] = {(): (1, 1)}
        title = self.title[0] if self.title else ""
        name = re.sub(r"^(implementation\s+plan|plan|feature)\s*[:\-–—]\s*", "", title, flags=re.I)
        name = re.sub(r"\s*[-–—:]\s*implementation\s+plan\s*$", "", name, flags=re.I).strip()
        name = name or str(self.front.get("feature") or self.front.get("title") or Path(self.source).stem)
        if self.title:
            positions[("name",)] = (self.title[1], 1)
        for i, t in enumerate(tasks):
            for keys in ((), ("id",), ("title",), ("prompt",), ("needs",)):
                positions[("tasks", i, *keys)] = (t.line, 1)
            positions.update({("tasks", i, key): at for key, at in t.at.items()})
            lists = [("files", t.files), ("acceptance", t.acceptance)]
            if len(t.deps) == len(t.needs):  # no `Phase N` reference expanded: positions line up
                lists.append(("needs", t.deps))
            for key, refs in lists:
                positions.update({("tasks", i, key, j): (n, column) for j, (_, n, column) in enumerate(refs)})
        data: dict[str, Any] = {"plait": 1, "name": name, "tasks": [_task_data(t) for t in tasks]}
        if isinstance(self.front.get("verify"), str):  # plait's extension: a default verify command
            data["defaults"] = {"verify": self.front["verify"]}
        return MarkdownPlan(data, positions, self.warnings)


def _task_data(t: _Task) -> dict[str, Any]:
    body = re.sub(r"\n{3,}", "\n\n", "\n".join(t.body)).strip()
    item: dict[str, Any] = {"id": t.id, "title": t.title, "prompt": body or t.title, "needs": t.needs,
                            "files": [f for f, *_ in t.files], "acceptance": [a for a, *_ in t.acceptance]}
    optional = {"size": t.size, "estimate": t.estimate, "verify": t.verify}
    return item | {key: value for key, value in optional.items() if value}


def _field(line: str) -> tuple[str, str, int] | None:
    """A `**Label**: rest` (or known plain `Label: rest`) line as (normalised label, rest, rest's column)."""
    match = _BOLD_FIELD.match(line) or _PLAIN_FIELD.match(line)
    if not match:
        return None
    label = re.sub(r"\s+", " ", match.group("label").strip().lower())
    return _LABELS.get(label, "other"), match.group("rest").strip(), match.start("rest") + 1


def _paths(text: str, n: int, column: int, first_only: bool) -> list[Ref]:
    """Paths from "`a`, b" (backticks optional); from a list item only the first: the rest is a comment."""
    found: list[Ref] = []
    pieces = [(0, text)] if first_only else [(m.start(), m.group(0)) for m in re.finditer(r"[^,]+", text)]
    for offset, piece in pieces:
        quoted = re.search(r"`([^`]+)`", piece)
        word = quoted or re.search(r"[^\s`]+", piece)
        if word:
            group = 1 if quoted else 0
            found.append((word.group(group).strip(), n, column + offset + word.start(group)))
    return found


def _refs(text: str, n: int, column: int) -> list[Ref]:
    """Task references from `Task 1.1, Task 1.2`, `1-1 and 1-2`, `Phase 1`; parenthesised notes ignored."""
    text = re.sub(r"\([^)]*\)", lambda m: " " * len(m.group(0)), text.replace("*", " ").replace("`", " "))
    found: list[Ref] = []
    for m in re.finditer(r"phase\s+[A-Za-z0-9][\w.-]*|[A-Za-z0-9][\w.-]*", text, re.I):
        word = m.group(0).rstrip(".")
        if word.lower() not in ("task", "tasks", "and", "or", "none"):
            found.append((word, n, column + m.start()))
    return found


def _norm(ref: str) -> str:
    """`Task 1-1`, `1_1` and `1.1` name the same task."""
    return re.sub(r"[._-]", ".", ref.strip().lower())


def _estimate(text: str) -> str | None:
    """`3h`, `0.5h`, `1.5 hours`, `30 min`, `2-3h` (the upper end) -> a duration plait reads, or None."""
    t = text.strip().lower().lstrip("~≈").strip()
    t = re.sub(r"\s*(hours?|hrs?)\b", "h", t)
    t = re.sub(r"\s*(minutes?|mins?)\b", "m", t).replace(" ", "")
    t = re.sub(r"^\d+(?:\.\d+)?[-–](\d+(?:\.\d+)?[hm])$", r"\1", t)
    try:
        parse_duration(t)
    except ValueError:
        return None
    return t
