"""GitHub spec-kit's `tasks.md` as plait plan data.

A task is a checkbox line whose first word is a task id: `- [ ] T014 [P] [US1] Implement X in src/x.py`. Other
checkbox lines (checklists, `TXXX` template placeholders), prose, fenced code and HTML comments are not tasks.
The rules, one line each:

- name: the `# Tasks: Feature Name` title (else the first `#` heading, else the spec folder's name).
- phases: every `##` heading (or `#` after the title) that has tasks under it (`## Phase 3: User Story 1 - Title
  (Priority: P1)`, or any other); tasks before the first such heading form a phase of their own.
- groups: consecutive `[P]` tasks form one parallel group; a task without `[P]` is a group by itself; a `###`
  heading ends a `[P]` group.
- listed order: each group needs the group before it in its phase (reason "listed order" after a task without
  `[P]`, "[P] group before it" after a parallel group).
- phase order: the first group of a phase needs the end of the previous phase (its tasks that nothing in that
  phase builds on; reason "phase order"). With `relax_phases` there are no phase-order edges: only explicit
  `depends on` edges and the listed-order edges within each phase.
- `depends on T012, T013` anywhere in a task (usually `(depends on T012)`) adds explicit edges.
- done tasks (`[X]`, `[x]`) are not imported and an explicit dependency on one is dropped (it is satisfied). For
  the inferred order they keep their place: a group whose tasks are all done is passed over, so the next group
  waits for the nearest earlier group with open tasks (and a phase with none, for the phase before it).
- files: backticked paths (with a `/` or a known extension), and bare words whose last part has a known
  extension or that end in `/` (so prose like `authentication/authorization` is not a path); URLs, absolute
  paths and `..` are skipped, as are framework names like `Node.js`.
- title: the description without tags or `depends on`, at most 100 characters; prompt: the full description
  (with indented lines below the task), then the phase heading, its Purpose/Goal/Independent Test lines and
  the task's user story.
- a file whose inferred order makes more than 100,000 edges (two adjacent [P] groups of n tasks make n*n) is an
  error.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from plait.errors import Location
from plait.plan.formats import Keys, Parsed, Position
from plait.plan.validate import Diagnostic, PlanError, error, warning

_TASK = re.compile(r"^(?P<indent>[ \t]*)[-*+][ \t]+\[(?P<box>[ xX]?)\][ \t]+(?P<id>T\d+)\b:?[ \t]*(?P<rest>.*)$")
_PLACEHOLDER = re.compile(r"^[ \t]*[-*+][ \t]+\[[ xX]?\][ \t]+T[X?]+\b")
_DETECT = re.compile(r"^[ \t]*[-*+][ \t]+\[[ xX]?\][ \t]+T\d+\b", re.M)
_TAG = re.compile(r"\[(?P<tag>P|US\d+)\][ \t]*", re.I)
_HEADING = re.compile(r"^(?P<level>#{1,6})[ \t]+(?P<text>.*)$")
_TITLE = re.compile(r"^Tasks\s*:\s*(?P<name>.+)$", re.I)
_CONTEXT = re.compile(r"^[ \t]*\*\*(?P<label>Purpose|Goal|Independent Test)(?::\*\*|\*\*[ \t]*:)[ \t]*(?P<text>.+)$",
                      re.I)
_FENCE = re.compile(r"^[ \t]*(```|~~~)")
_DEPENDS = re.compile(r"\bdepends[ \t]+on\b:?[ \t]*(?P<ids>T\d+(?:[ \t]*(?:,|and|&)[ \t]*T\d+)*)", re.I)
# Each alternative starts at one character (`(`, or a word start), so no run of spaces is scanned twice.
_DEPENDS_CLAUSE = re.compile(r"\([ \t]*depends[ \t]+on\b[^)]*\)?|\bdepends[ \t]+on\b[^)]*\)?", re.I)
_ID = re.compile(r"T\d+")
# Backticked text, or a whole bare word with a `/` or `.` in it (the look-behind starts it at the word's start, so
# a long word without either fails once, not once per character).
_WORD = re.compile(r"`([^`]+)`|(?<![^\s`])[^\s`]*[/.][^\s`]*")
_PATH_CHARS = re.compile(r"[\w./*@+\[\]{}-]+")
_FRAMEWORK = re.compile(r"[A-Z][a-z]+\.js")
_KNOWN_EXTENSIONS = ("py pyi js jsx ts tsx mjs cjs json yaml yml toml ini cfg conf md rst txt html htm css scss sass "
                     "less vue svelte go rs java kt kts swift rb php c h cc cpp hpp cs sql sh bash zsh ps1 xml proto "
                     "graphql gql tf lock env dart ex exs erl lua scala ipynb csv gradle mk")
_EXTENSIONS = frozenset(_KNOWN_EXTENSIONS.split())
_TITLE_LIMIT = 100
# Two adjacent [P] groups of n tasks make n*n edges; past this many, a file is an error rather than a huge plan.
MAX_EDGES = 100_000

Ref = tuple[str, int, int]  # text, line, column


def looks_like_speckit(text: str) -> bool:
    """Has a spec-kit task line: `- [ ] T001 ...`."""
    return _DETECT.search(text) is not None


@dataclass(eq=False, slots=True)
class _Task:
    id: str
    line: int
    column: int
    done: bool
    parallel: bool
    story: str | None
    text: str  # the first line's description, tags removed
    text_column: int
    phase: _Phase
    body: list[str] = field(default_factory=list)
    deps: list[Ref] = field(default_factory=list)
    files: list[Ref] = field(default_factory=list)
    indent: int = 0


@dataclass(eq=False, slots=True)
class _Phase:
    heading: str
    line: int
    context: list[str] = field(default_factory=list)
    groups: list[list[_Task]] = field(default_factory=list)
    open_parallel: bool = False  # the last group is a [P] group that the next [P] task joins


def parse_speckit(text: str, source: str, relax_phases: bool = False) -> Parsed:
    """Read a spec-kit tasks.md; raises PlanError listing every problem found."""
    return _Reader(source).parse(text.removeprefix("\ufeff"), relax_phases)


class _Reader:
    def __init__(self, source: str) -> None:
        self.source = source
        self.errors: list[Diagnostic] = []
        self.warnings: list[Diagnostic] = []
        self.title: tuple[str, int] | None = None
        self.phases: list[_Phase] = [_Phase("", 1)]
        self.tasks: dict[str, _Task] = {}

    def at(self, line: int, column: int = 1) -> Location:
        return Location(self.source, line, column)

    def parse(self, text: str, relax: bool) -> Parsed:
        self._read(text.splitlines())
        tasks = list(self.tasks.values())
        if not tasks:
            fix = ("replace the template's `TXXX` placeholders with numbered tasks" if self.warnings else
                   "spec-kit tasks are lines like `- [ ] T001 Description in path/file.py`")
            self.errors.append(error("no tasks found", fix, self.at(1)))
        elif all(t.done for t in tasks) and not self.errors:
            self.errors.append(error("every task is already done ([X])", "there is nothing to run", self.at(1)))
        for task in tasks:
            for ref, line, column in task.deps:
                if ref not in self.tasks:
                    self.errors.append(error(f"{task.id} depends on {ref}, which is not a task in this file",
                                             f"remove it, or use a task id from {tasks[0].id} to {tasks[-1].id}",
                                             self.at(line, column)))
        if self.errors:
            raise PlanError(sorted(self.errors, key=lambda d: (d.location.line, d.location.column)))
        return self._plan(self._needs(relax))

    def _read(self, lines: list[str]) -> None:
        fence = comment = False
        task: _Task | None = None
        for n, line in enumerate(lines, 1):
            opens = line.lstrip().startswith("<!--")
            if comment or opens:  # an HTML comment (the template's instructions): not tasks
                comment = "-->" not in (line.lstrip()[4:] if opens else line)
                task = None
                continue
            if fence or _FENCE.match(line):
                fence = fence != bool(_FENCE.match(line))
                task = None
                continue
            if match := _TASK.match(line):
                task = self._task(match, n)
            elif heading := _HEADING.match(line):
                self._heading(len(heading.group("level")), heading.group("text").strip().rstrip("#").rstrip(), n)
                task = None
            elif task is not None and line.strip() and len(line) - len(line.lstrip()) > task.indent:
                task.body.append(line.strip())
                self._refs(task, line, n, 0)
            else:
                task = None
                phase = self.phases[-1]
                if (context := _CONTEXT.match(line)) and not phase.groups:
                    phase.context.append(f"{context.group('label').title()}: {context.group('text').strip()}")
                elif _PLACEHOLDER.match(line):
                    self.warnings.append(warning("a template placeholder (`TXXX`), not a task: skipped",
                                                 "number it like the other tasks (T001, T002, …)", self.at(n)))

    def _heading(self, level: int, text: str, n: int) -> None:
        if level == 1 and self.title is None:
            title = _TITLE.match(text)
            self.title = ((title.group("name") if title else text).strip(), n)
        elif level <= 2:
            self.phases.append(_Phase(text, n))
        else:
            self.phases[-1].open_parallel = False

    def _task(self, match: re.Match[str], n: int) -> _Task | None:
        line, start = match.string, match.start("rest")
        tags: list[str] = []
        while tag := _TAG.match(line, start):
            tags.append(tag.group("tag").upper())
            start = tag.end()
        rest, column = line[start:], start + 1
        phase = self.phases[-1]
        task_id = match.group("id")
        task = _Task(task_id, n, match.start("id") + 1, match.group("box") in ("x", "X"), "P" in tags,
                     next((t for t in tags if t.startswith("US")), None), rest.strip(), column, phase,
                     indent=len(match.group("indent").expandtabs()))
        if task_id in self.tasks:
            self.errors.append(error(f"task {task_id} is listed twice (also line {self.tasks[task_id].line})",
                                     "give each task its own id", self.at(n, task.column)))
            return None
        self.tasks[task_id] = task
        self._refs(task, rest, n, column - 1)
        if task.parallel and phase.open_parallel:
            phase.groups[-1].append(task)
        else:
            phase.groups.append([task])
        phase.open_parallel = task.parallel
        return task

    def _refs(self, task: _Task, text: str, n: int, offset: int) -> None:
        """Explicit dependencies and file paths in one line of a task's text."""
        for depends in _DEPENDS.finditer(text) if "epends" in text or "EPENDS" in text else ():
            base = depends.start("ids")
            task.deps += [(m.group(), n, offset + base + m.start() + 1) for m in _ID.finditer(depends.group("ids"))]
        for word in _WORD.finditer(text):
            quoted = word.group(1) is not None
            raw = word.group(1) if quoted else word.group()
            if path := _path(raw.strip(), quoted):
                start = (word.start(1) if quoted else word.start()) + raw.find(path)
                task.files.append((path, n, offset + start + 1))

    def _needs(self, relax: bool) -> dict[str, dict[str, tuple[str, tuple[int, int]]]]:
        """task id -> needed id -> (why it was inferred, "" when it was written; where)."""
        needs: dict[str, dict[str, tuple[str, tuple[int, int]]]] = {}
        for task in self.tasks.values():
            if not task.done:
                needs[task.id] = {ref: ("", (line, col)) for ref, line, col in task.deps
                                  if not self.tasks[ref].done}
        end: list[_Task] = []  # the open end of the nearest earlier phase with open tasks
        edges = 0
        for phase in self.phases:
            before, reason = ([], "") if relax else (end, "phase order")
            members: list[str] = []
            for group in phase.groups:
                open_tasks = [t for t in group if not t.done]
                edges += len(open_tasks) * len(before)
                if edges > MAX_EDGES:
                    raise PlanError([error(f"the [P] groups up to {group[0].id} imply more than {MAX_EDGES:,} "
                                           "dependencies", "split large [P] groups with a task without [P] (it "
                                           "joins the groups on either side)", self.at(group[0].line))])
                for task in open_tasks:
                    for b in before:
                        needs[task.id].setdefault(b.id, (reason, (task.line, task.column)))
                if open_tasks:
                    before = open_tasks
                    reason = "[P] group before it" if group[0].parallel else "listed order"
                    members += [t.id for t in open_tasks]
            if members:
                member_ids = set(members)
                built_on = {n for m in members for n in needs[m] if n in member_ids}
                end = [self.tasks[m] for m in members if m not in built_on]
        return needs

    def _plan(self, needs: dict[str, dict[str, tuple[str, tuple[int, int]]]]) -> Parsed:
        order = {task_id: i for i, task_id in enumerate(needs)}
        positions: dict[Keys, Position] = {(): (1, 1), ("name",): (self.title[1], 1) if self.title else (1, 1)}
        tasks: list[dict[str, Any]] = []
        inferred: dict[str, dict[str, str]] = {}
        for i, (task_id, edges) in enumerate(needs.items()):
            task = self.tasks[task_id]
            ordered = sorted(edges, key=order.__getitem__)
            data: dict[str, Any] = {"id": task_id, "title": _title(task), "prompt": _prompt(task), "needs": ordered}
            tasks.append(data)
            positions[("tasks", i)] = positions[("tasks", i, "id")] = (task.line, task.column)
            positions[("tasks", i, "title")] = positions[("tasks", i, "prompt")] = (task.line, task.text_column)
            for j, n in enumerate(ordered):
                reason, positions[("tasks", i, "needs", j)] = edges[n]
                if reason:
                    inferred.setdefault(task_id, {})[n] = reason
            files: dict[str, tuple[int, int]] = {}
            for path, line, column in task.files:
                files.setdefault(path, (line, column))
            if files:
                data["files"] = list(files)
                positions.update({("tasks", i, "files", j): at for j, at in enumerate(files.values())})
        name = self.title[0] if self.title else _folder_name(self.source)
        return Parsed({"plait": 1, "name": name, "tasks": tasks}, positions, self.warnings, inferred)


def _path(word: str, quoted: bool) -> str | None:
    """`word` as a repository path, or None when it does not look like one."""
    path = word if quoted else word.lstrip("([{<'\"").rstrip(")]}>,;:'\"!?.")
    if "://" in path or path.startswith("www.") or not _PATH_CHARS.fullmatch(path):
        return None
    path = path.removeprefix("./")
    if not path or path.startswith("/") or ".." in path.split("/") or _FRAMEWORK.fullmatch(path):
        return None
    last = path.rstrip("/").rsplit("/", 1)[-1]
    known = "." in last and last.rsplit(".", 1)[1].lower() in _EXTENSIONS
    return path if known or ("/" in path and (quoted or path.endswith("/"))) else None


def _title(task: _Task) -> str:
    text = _DEPENDS_CLAUSE.sub("", task.text) if task.deps else task.text
    text = " ".join(text.split()).strip(" -–—;,:") or task.id
    if len(text) <= _TITLE_LIMIT:
        return text
    cut = text[:_TITLE_LIMIT - 1].rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:-") + "…"


def _prompt(task: _Task) -> str:
    description = "\n".join([task.text, *task.body]).strip() or task.id
    heading = task.phase.heading
    context = [heading if heading.lower().startswith("phase") else f"Phase: {heading}"] if heading else []
    context += task.phase.context
    if task.story:
        context.append(f"User story: {task.story}")
    return description + ("\n\n" + "\n".join(context) if context else "")


def _folder_name(source: str) -> str:
    """The spec folder of `specs/001-feature/tasks.md`."""
    return PurePath(os.path.abspath(source)).parent.name or "spec-kit tasks"
