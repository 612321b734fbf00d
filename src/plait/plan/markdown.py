"""spectacular's `plan.md`, as its plugin, its Codex generator and its MCP server write it, read as plan data.

A plan is `## Phase N: Name` sections holding `### Task N.M: Name` sections (any heading levels, as long as
tasks sit below their phase). A phase's strategy comes from `(Parallel)` in its heading or a
`**Strategy**: sequential` line before its first task. A task's fields are read only where the format puts
them: a `**Label**:` line of the task itself (or, in the MCP dialect, a `- Label: value` bullet before any
prose section) — never from inside `**Implementation Steps**`, a description or a code block.

Dependencies, by default, are the plan's phases as spectacular runs them: phases run in order, so a task
needs the end of all earlier work (the earlier tasks nothing else builds on); in a `sequential` phase each
task also needs the one before it. A task's stated dependencies are added to those. With `relax_phases`
only stated dependencies are kept for the tasks that state them (`None` included); a task that states
nothing keeps the phase order. Every edge that was not stated is recorded in `Parsed.inferred` with why.

docs/plan-format.md lists every construct and the rule applied.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from plait.errors import Location
from plait.plan.formats import Keys, Parsed, Position
from plait.plan.model import parse_duration
from plait.plan.validate import Diagnostic, error, warning

Ref = tuple[str, int, int]  # text, line index, column

_FENCE = re.compile(r"^( {0,12})(?:(?:[-*+]|\d{1,9}[.)])\s{1,4})?(`{3,}|~{3,})\s*([^`\s]*)")
_PHASE = re.compile(r"^[^\w]{0,8}\s*phase\s+(?P<num>\d{1,9}(?:[.-]\d{1,9})?|[ivx]{1,6}\b)\s*(?P<rest>.*)$", re.I)
_TASK = re.compile(r"^[^\w]{0,8}\s*task\s+(?P<id>(?:task-)?\d[\w.-]{0,62}?)\.?(?=[\s:—–(]|$)\s*(?P<rest>.*)$",
                   re.I)
_STRATEGY_WORD = re.compile(r"\b(parallel|sequential)\b", re.I)
_BOLD_FIELD = re.compile(r"^(?P<indent> {0,3})(?P<bullet>[-*+]\s{1,4})?\*\*(?P<label>[^*:\n]{1,60}?)\s*"
                         r"(?::\s*\*\*|\*\*\s*:)\s*(?P<rest>.*)$")
_PLAIN_FIELD = re.compile(r"^(?P<indent> ?)(?P<bullet>[-*+]\s{1,4})?(?P<label>files|dependencies|depends on|"
                          r"complexity|estimate|acceptance criteria|strategy|repo|verify)\s*:\s*(?P<rest>.*)$", re.I)
_ITEM = re.compile(r"^(?P<indent>\s*)(?:[-*+]|\d{1,9}[.)])\s+(?:\[(?P<box>[ xX])\]\s*)?(?P<text>.*)$")
_COMPACT = re.compile(r"^\s*[-*+]\s+\[(?P<box>[ xX])\]\s+\*\*task\s+(?P<id>[\w.-]{1,64}?)\*\*\s*:?\s*(?P<rest>.*)$",
                      re.I)
_LINK = re.compile(r"\[[^\]\n]{0,200}\]\((?P<target>[^)\s]{1,300}\.md)\)")
_LABELS = {
    "files": "files", "file": "files", "files to modify": "files", "files to create": "files",
    "files affected": "files", "files changed": "files",
    "dependencies": "deps", "dependency": "deps", "depends on": "deps", "requires": "deps",
    "blocked by": "deps", "cross-repo dependencies": "deps", "cross repo dependencies": "deps",
    "complexity": "size", "size": "size", "estimate": "estimate", "estimated time": "estimate",
    "effort": "size", "time estimate": "estimate",
    "acceptance criteria": "acceptance", "acceptance": "acceptance",
    "verify": "verify", "verification": "verification", "quality gates": "gates", "quality gate": "gates",
    "repo": "repo", "repository": "repo", "description": "description",
    "strategy": "strategy", "execution strategy": "strategy", "repos in phase": "repos", "feature": "feature",
}
_LIST_SECTIONS = ("files", "deps", "acceptance", "gates")
_NONE = re.compile(r"^(?:(?:none|n/?a|nothing|no dependencies|no deps|-+|—|–)(?:$|[\s.,;:—–-])|$)", re.I)
_SIZES = {"xs": "S", "s": "S", "small": "S", "m": "M", "medium": "M", "l": "L", "large": "L", "xl": "XL",
          "extra large": "XL", "x-large": "XL"}
_SIZE_WORD = re.compile(r"^(?P<size>extra large|x-large|xs|xl|small|medium|large|s|m|l)\b", re.I)
_HOURS = re.compile(r"(?P<a>\d{1,4}(?:\.\d{1,3})?)\s*(?:(?P<unit1>h|hrs?|hours?|m|mins?|minutes?)\b\s*)?"
                    r"(?:(?:-|–|—|to)\s*(?P<b>\d{1,4}(?:\.\d{1,3})?)\s*)?(?P<unit>h|hrs?|hours?|m|mins?|minutes?)\b",
                    re.I)
# spectacular's sizes (decomposing-tasks): S 1–2h, M 3–5h, L 5–7h, XL over 8h. A letter alone means the
# middle of its range; hours outside the (slightly widened) range of their letter are reported.
SIZE_HOURS = {"S": 1.5, "M": 4.0, "L": 6.0, "XL": 10.0}
_SIZE_RANGE = {"S": (0.0, 2.5), "M": (2.0, 5.5), "L": (4.0, 8.0), "XL": (8.0, 1e9)}
_FILE_VERB = re.compile(r"^(?:create|created|new|add|added|modify|modified|update|updated|edit|edited|change|"
                        r"changed|delete|deleted|remove|removed|rename|renamed|test|tests|extend|move)\s*:\s*", re.I)
_READ_ONLY = re.compile(r"\((?:read[- ]?only|reference|read)\)|\bread[- ]only\b", re.I)
_PATHISH = re.compile(r"^(?:\.{0,2}/)?[\w@~.+$(\[-][\w@~.+/*{},\[\]()$=-]*$")
_KNOWN_FILES = {"makefile", "dockerfile", "readme", "license", "procfile", "gemfile", "rakefile", "justfile",
                "claude.md", "agents.md", "go.mod", "cargo.toml", "package.json", "pyproject.toml"}
_DEP_TOKEN = re.compile(r"\s[-—–]\s|,|;|&|\+|/|[A-Za-z0-9][\w.-]{0,80}")
_MAX_LINE = 10_000  # a longer line is read only as description


@dataclass
class _Task:  # filled in line by line while parsing, hence mutable
    id: str
    title: str
    line: int
    phase: _Phase
    size: str | None = None
    estimate: str | None = None
    verify: str | None = None
    gates: list[str] = field(default_factory=list)
    repo: str | None = None
    files: list[Ref] = field(default_factory=list)
    reads: list[Ref] = field(default_factory=list)
    deps: list[Ref] = field(default_factory=list)
    stated: bool = False  # the task has a Dependencies field (even `None`)
    acceptance: list[Ref] = field(default_factory=list)
    at: dict[str, tuple[int, int]] = field(default_factory=dict)  # plan key -> (line, column) of its field
    body: list[str] = field(default_factory=list)
    needs: list[str] = field(default_factory=list)
    why: dict[str, str] = field(default_factory=dict)


@dataclass
class _Phase:
    label: str
    number: str
    line: int
    level: int
    strategy: str | None
    tasks: list[_Task] = field(default_factory=list)
    repos: str | None = None
    broken: bool = False  # a malformed task heading was reported: "no tasks" would only repeat it


def parse_markdown(text: str, source: str, *, relax_phases: bool = False, root: Path | None = None,
                   parts: list[tuple[str, str]] | None = None) -> Parsed:
    """Read a spectacular plan.md. `parts`: further (source, text) files of a split plan, read in order.
    `root`: the repository, to make absolute paths under it relative. Problems (errors included) are
    returned in `Parsed.warnings` with their severity, so that they are reported with validation's."""
    documents = [(source, text), *(parts or [])]
    return _Parser(source, root).parse(documents, relax_phases)


def linked_parts(text: str, folder: Path) -> list[Path]:
    """The plan files a split plan's index (a README linking one file per phase) names, in order."""
    found: list[Path] = []
    for match in _LINK.finditer(text):
        target = (folder / match.group("target")).resolve()
        if target.is_file() and target.parent == folder.resolve() and target not in found:
            found.append(target)
    return found


def has_tasks(text: str) -> bool:
    """Whether a markdown file holds tasks itself (a split plan's index may list phases, not tasks)."""
    return any(_is_task(line) for line in text.splitlines())


def title_only(text: str) -> str:
    """An index file's front matter and title, its other lines blank (so line numbers stay right)."""
    lines = text.splitlines()
    at = next((i for i, line in enumerate(lines) if line.startswith("# ")), -1)
    return "\n".join(line if i <= at else "" for i, line in enumerate(lines))


def _is_phase(line: str) -> bool:
    heading = _heading(line)
    return bool(heading and _PHASE.match(heading[1]))


def _is_task(line: str) -> bool:
    heading = _heading(line)
    return bool(heading and _TASK.match(heading[1])) or bool(_COMPACT.match(line))


def _heading(line: str) -> tuple[int, str] | None:
    """`## Text ##` -> (2, "Text"), read without a regular expression that could backtrack."""
    if not line.startswith("#"):
        return None
    level = len(line) - len(line.lstrip("#"))
    rest = line[level:]
    if level > 6 or (rest and not rest[0].isspace()):
        return None
    text = rest.strip()
    stripped = text.rstrip("#")
    if stripped != text and (not stripped or stripped[-1].isspace()):
        text = stripped.rstrip()
    return level, text


class _Parser:
    def __init__(self, source: str, root: Path | None) -> None:
        self.source = source
        self.root = root
        self.found: list[Diagnostic] = []
        self.front: dict[str, Any] = {}
        self.title: tuple[str, int] | None = None
        self.phases: list[_Phase] = []
        self.phase: _Phase | None = None
        self.task: _Task | None = None
        self.section: str | None = None  # the field a following list belongs to, or "prose"
        self.origin: list[tuple[str, int]] = []  # line index -> (file, line)
        self.implicit: _Phase | None = None
        self.table_strategy: dict[str, str] = {}  # phase number -> strategy, from an overview table
        self.stray = False  # inside a phase, under a heading that is not a task (task fields there are lost)
        self.absolute: list[tuple[str, str, str | None, int, int]] = []  # task, path, relative path, where

    def at(self, n: int, column: int = 1) -> Location:
        source, line = self.origin[n] if n < len(self.origin) else (self.source, n + 1)
        return Location(source, line, column)

    def pos(self, n: int, column: int = 1) -> Position:
        source, line = self.origin[n] if n < len(self.origin) else (self.source, n + 1)
        return (line, column) if source == self.source else (source, line, column)

    def err(self, message: str, fix: str, n: int, column: int = 1) -> None:
        self.found.append(error(message, fix, self.at(n, column)))

    def warn(self, message: str, fix: str, n: int, column: int = 1) -> None:
        self.found.append(warning(message, fix, self.at(n, column)))

    # --- reading -------------------------------------------------------------------------------------

    def parse(self, documents: list[tuple[str, str]], relax: bool) -> Parsed:
        lines: list[str] = []
        for i, (source, text) in enumerate(documents):
            doc = text.splitlines()
            start = self._front_matter(doc, source) if i == 0 else 0
            self.origin += [(source, k + 1) for k in range(len(doc))]
            lines += [""] * start + doc[start:]  # the front matter's lines stay, blank, to keep numbering
        fenced, gates = self._fences(lines)
        has_phases = any(_is_phase(line) for n, line in enumerate(lines) if not fenced[n])
        for n, line in enumerate(lines):
            if fenced[n]:
                if self.task:
                    self.task.body.append(line)
                    if n in gates and self.section == "gates":
                        self.task.gates += gates[n]
                continue
            if len(line) > _MAX_LINE:
                if self.task:
                    self.task.body.append(line)
                continue
            heading = _heading(line)
            if heading:
                self._on_heading(heading[0], heading[1], n, has_phases)
            elif compact := _COMPACT.match(line):
                self._compact(compact, n, has_phases)
            elif self.task:
                self._task_line(self.task, line, n)
            elif line.startswith("|"):
                self._table_row(line)
            elif self.phase or not self.phases:
                self._section_line(line, n)
        return self._build(relax)

    def _table_row(self, line: str) -> None:
        """`| 2 | Parallel | … |` in a phase overview table: phase 2's strategy, unless the phase says."""
        cells = [re.sub(r"[*_`]", "", c).strip().lower() for c in line.strip().strip("|").split("|")[:12]]
        number = re.fullmatch(r"(?:phase\s+)?(\d{1,9})", cells[0]) if cells else None
        strategy = next((c.split()[0] for c in cells[1:] if c.split() and c.split()[0] in ("parallel", "sequential")),
                        None)
        if number and strategy:
            self.table_strategy.setdefault(number.group(1), strategy)

    def _front_matter(self, lines: list[str], source: str) -> int:
        if not lines or lines[0].strip() != "---":
            return 0
        end = next((i for i in range(1, min(len(lines), 500)) if lines[i].strip() in ("---", "...")), None)
        if end is None:
            self.found.append(error("the front matter opened by `---` is never closed", "end it with a `---` line",
                                    Location(source, 1, 1)))
            return 0
        try:
            front = yaml.safe_load("\n".join(lines[1:end]))
        except (yaml.YAMLError, ValueError, RecursionError) as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 2 if mark else 1
            self.found.append(error("invalid YAML in the front matter", "fix the `key: value` lines between "
                                    "the `---` lines", Location(source, line, 1)))
            return end + 1
        self.front = front if isinstance(front, dict) else {}
        return end + 1

    def _fences(self, lines: list[str]) -> tuple[list[bool], dict[int, list[str]]]:
        """Which lines are code (fence lines included), and the commands of each shell block by its first
        line. Fences may open inside list items (`   - ```bash`); a fence with an info string inside a
        block opens a nested one (what authors mean, though CommonMark would not); a block still open at
        the end of the file is read as ending before the next phase or task heading, with a warning."""
        fenced = [False] * len(lines)
        blocks: dict[int, list[tuple[int, str]]] = {}  # opening line -> (line, command)s
        stack: list[tuple[str, int, int, str]] = []  # (fence char, length, opening line, info)
        resume: int | None = None  # where an unclosed block was cut: rescan from there
        n = 0
        while n < len(lines) or stack:
            if n >= len(lines):
                start = stack[0][2]
                cut = next((k for k in range(start + 1, len(lines)) if _is_phase(lines[k]) or _is_task(lines[k])),
                           None)
                self.warn("this code block is never closed" + ("; it is read as ending before the next heading"
                          if cut else ""), "close it with a line of ```", start)
                end = cut if cut is not None else len(lines)
                fenced[start:end] = [True] * (end - start)
                fenced[end:] = [False] * (len(lines) - end)
                for first in blocks:
                    blocks[first] = [(k, c) for k, c in blocks[first] if k < end]
                stack.clear()
                if cut is None or (resume is not None and cut <= resume):
                    break
                n = resume = cut
                continue
            line = lines[n]
            match = _FENCE.match(line) if ("`" in line[:40] or "~" in line[:40]) else None
            if match:
                fence, info = match.group(2), match.group(3)
                bare = not line[match.end():].strip() and not info
                if stack and bare and fence[0] == stack[-1][0] and len(fence) >= stack[-1][1]:
                    stack.pop()
                elif not stack or info:
                    stack.append((fence[0], len(fence), n, info.lower()))
                fenced[n] = True
            elif stack:
                fenced[n] = True
                info = stack[-1][3]
                if info in ("", "bash", "sh", "shell", "console", "zsh") and len(stack) == 1:
                    command = line.strip().removeprefix("$ ").strip()
                    if command and not command.startswith("#"):
                        blocks.setdefault(stack[0][2], []).append((n, command))
            n += 1
        return fenced, {first: [c for _, c in found] for first, found in blocks.items() if found}

    def _on_heading(self, level: int, text: str, n: int, has_phases: bool) -> None:
        phase = _PHASE.match(text)
        task = _TASK.match(text)
        in_phase = self.phase is not None and (level > self.phase.level or (task and level == self.phase.level))
        if phase and not (task and in_phase):
            self.task, self.section = None, None
            rest = phase.group("rest")
            strategy = _STRATEGY_WORD.search(rest)
            found = strategy.group(1).lower() if strategy and re.search(r"[(\[]", rest) else None
            number = phase.group("num")
            self.phase = _Phase(f"Phase {number}", _norm(number), n, level, found)
            self.phases.append(self.phase)
            self.stray = False
        elif task and (in_phase or not has_phases):
            if self.phase is None:
                self.implicit = self.implicit or self._implicit_phase(n, level)
                self.phase = self.implicit
            self._new_task(task.group("id"), task.group("rest"), n)
        elif self.phase and level <= self.phase.level:
            self.phase, self.task, self.section = None, None, None  # a section after the phases
            self._top_heading(level, text, n)
        elif self.task:
            self.task.body.append("#" * level + " " + text)
            self.section = None
        elif self.phase:
            self.stray = True
            shown = f"{'#' * level} {text[:60]}"
            if re.match(r"task\s*[:—–-]", text, re.I):  # `### Task: Setup`: a task without its id
                self.err(f"task heading '{shown}' has no id", "write it as `### Task 1.1: Name` (ids: "
                         "letters, digits, '.', '-')", n)
                self.phase.broken = True
            elif re.match(r"task\b", text, re.I):
                self.warn(f"heading '{shown}' inside {self.phase.label} is not read as a task: it has no "
                          "task id", "write task headings as `### Task 1.1: Name`", n)
        else:
            self._top_heading(level, text, n)

    def _top_heading(self, level: int, text: str, n: int) -> None:
        if level == 1 and self.title is None and not self.phases:
            self.title = (text, n)

    def _implicit_phase(self, n: int, level: int) -> _Phase:
        phase = _Phase("the plan", "", n, level - 1, None)
        self.phases.append(phase)
        return phase

    def _new_task(self, raw_id: str, rest: str, n: int) -> None:
        assert self.phase is not None
        task_id = raw_id.rstrip(".")
        if task_id.lower().startswith("task-"):
            task_id = task_id[5:]
        title = re.sub(r"^[:—–-]\s*", "", rest.strip())
        task = _Task(task_id, title, n, self.phase)
        suffix = re.search(r"\s*\((?P<c>[^()]{1,80})\)\s*$", title)
        if suffix and (_SIZE_WORD.match(suffix.group("c")) or _HOURS.search(suffix.group("c"))):
            task.title = title[: suffix.start()].strip()
            self._complexity(task, suffix.group("c"), n, len(title) - len(title.lstrip()) + 1)
        task.title = task.title or task_id
        self.phase.tasks.append(task)
        self.task, self.section = task, None

    def _compact(self, match: re.Match[str], n: int, has_phases: bool) -> None:
        """`- [ ] **Task 2.1**: Title | repo: backend | files: a.py, b.py | depends on: 1.1`"""
        if self.phase is None:
            if has_phases:
                return
            self.implicit = self.implicit or self._implicit_phase(n, 1)
            self.phase = self.implicit
        pieces = match.group("rest").split("|")
        self._new_task(match.group("id"), pieces[0], n)
        task = self.task
        assert task is not None
        column = match.start("rest") + len(pieces[0]) + 2
        for piece in pieces[1:]:
            label, _, value = piece.partition(":")
            kind = _LABELS.get(re.sub(r"\s+", " ", label.strip().lower()))
            if kind and value.strip():
                self._field(task, kind, value.strip(), n, column + piece.index(value) if value in piece else column,
                            piece)
            column += len(piece) + 1
        self.task, self.section = None, None

    def _task_line(self, task: _Task, line: str, n: int) -> None:
        if not line.strip() or re.fullmatch(r"\s*([-*_])(\s*\1){2,}\s*", line):
            task.body.append("")
            return
        found = _BOLD_FIELD.match(line) or _PLAIN_FIELD.match(line)
        if found:
            label = re.sub(r"\s+", " ", found.group("label").strip().lower())
            kind = _label(label)
            bullet, indent = bool(found.group("bullet")), len(found.group("indent"))
            nested = self.section == "prose" and indent > 0  # `   **Files to migrate:**` inside a step
            if not nested and (not bullet or (kind and self.section != "prose" and indent <= 1)):
                if kind is None:  # `**Implementation Steps**:`, `**Notes**:` …: prose, with its lists
                    self.section = "prose"
                    task.body.append(line)
                    return
                self._field(task, kind, found.group("rest").strip(), n, found.start("rest") + 1, line)
                return
        item = _ITEM.match(line)
        if item and item.group("box") is not None and self.section in ("files", "deps"):
            self.section = "prose"  # `- [ ] **Step 1**…`: the steps after a Files list, not files
        if item and self.section in ("files", "deps", "gates") and item.group(0).lstrip()[0].isdigit():
            self.section = "prose"  # `4. **Run tests**`: the next step, not a file
        if item and self.section in _LIST_SECTIONS and len(item.group("indent")) <= 3:
            text, column = item.group("text").strip(), item.start("text") + 1
            if self.section == "files":
                self._file_item(task, text, n, column)
            elif self.section == "deps":
                task.deps.append((text, n, column))
            elif self.section == "acceptance":
                task.acceptance.append((text, n, column))
            elif self.section == "gates":
                task.gates += re.findall(r"`([^`]+)`", text)
            return
        if item and self.section in _LIST_SECTIONS:
            return  # a note under a list item of a field
        if self.section == "deps" and not task.deps:  # `**Dependencies**:` with its value on the next line
            task.deps.append((line.strip(), n, len(line) - len(line.lstrip()) + 1))
            self.section = None
            return
        if self.section == "files" and not task.files and "`" in line:
            for piece, offset in _split_commas(line.strip()):
                self._file_item(task, piece, n, len(line) - len(line.lstrip()) + 1 + offset)
            self.section = None
            return
        if self.section in _LIST_SECTIONS and not item and not line.startswith(" "):
            self.section = "prose"
        task.body.append(line)

    def _field(self, task: _Task, kind: str, rest: str, n: int, column: int, line: str) -> None:
        self.section = kind if not rest and kind in _LIST_SECTIONS else None
        if kind == "files":
            task.at.setdefault("files", (n, 1))
            if rest:
                for piece, offset in _split_commas(rest):
                    self._file_item(task, piece, n, column + offset)
        elif kind == "deps":
            task.at.setdefault("needs", (n, column))
            task.stated = True
            if rest:
                task.deps.append((rest, n, column))
        elif kind in ("size", "estimate"):
            self._complexity(task, rest, n, column, only_estimate=kind == "estimate")
        elif kind == "acceptance":
            if rest:
                task.acceptance.append((rest, n, column))
        elif kind == "verify" and rest:
            task.verify, task.at["verify"] = rest.strip().strip("`").strip(), (n, column)
        elif kind == "verification":
            command = re.fullmatch(r"\s*`([^`]+)`\s*", rest)
            if command:
                task.verify, task.at["verify"] = command.group(1).strip(), (n, column)
            else:
                task.body.append(line)
                self.section = "prose"
        elif kind == "gates":
            task.at.setdefault("verify", (n, 1))
            task.gates += re.findall(r"`([^`]+)`", rest)
            self.section = "gates"
        elif kind == "repo":
            task.repo, task.at["repo"] = rest.strip("`*").strip() or None, (n, column)
        elif kind == "description":
            task.body.append(rest)
            self.section = "prose"
        elif kind in ("strategy", "repos", "feature"):  # phase fields written inside a task: prose
            task.body.append(line)
        else:
            task.body.append(line)

    def _section_line(self, line: str, n: int) -> None:
        """A line outside any task: the phase's strategy or repositories, the feature's name, or a task
        field with no task."""
        found = _BOLD_FIELD.match(line) or _PLAIN_FIELD.match(line)
        if not found:
            return
        label = re.sub(r"\s+", " ", found.group("label").strip().lower())
        kind, rest = _label(label), found.group("rest").strip()
        if kind == "feature" and not self.phases:
            self.front.setdefault("feature", rest.strip("`*"))
        elif self.phase is None:
            return
        elif kind == "strategy":
            self.phase.strategy = self._strategy(rest, n)
        elif kind == "repos":
            self.phase.repos = rest
        elif kind in ("files", "size") and not found.group("bullet") and self.stray and not self.phase.broken:
            self.err(f"`{label}` given outside any task", "start the task with a `### Task 1.1: Name` heading", n)
            self.phase.broken = True

    def _strategy(self, text: str, n: int) -> str | None:
        word = _STRATEGY_WORD.search(text[:200])
        if word:
            return word.group(1).lower()
        self.err(f"unknown strategy '{text.strip()[:60]}'", "write `**Strategy**: parallel` or "
                 "`**Strategy**: sequential`", n)
        return None

    def _file_item(self, task: _Task, text: str, n: int, column: int) -> None:
        """One entry of a Files list: a path (backticked or the first word), maybe `(read only)`."""
        reads = bool(_READ_ONLY.search(text))
        verb = _FILE_VERB.match(text)
        body = text[verb.end():] if verb else text
        offset = verb.end() if verb else 0
        quoted = [(m.group(1).strip(), m.start(1)) for m in re.finditer(r"`([^`\n]{1,400})`", body)]
        candidates = [(p, o) for p, o in quoted if _is_path(p, quoted=True)] if quoted else []
        if not quoted:
            body = re.sub(r"\\([\\`*_{}\[\]()#+.!$-])", r"\1", body)  # `src/\_\_tests\_\_` is `src/__tests__`
            word = re.match(r"\s*(\S+)", body)
            if word and _is_path(word.group(1).rstrip(",;:")):
                candidates = [(word.group(1).rstrip(",;:"), word.start(1))]
        if not candidates:
            self.warn(f"task {task.id}: files entry '{text[:60].strip()}' is not a path: ignored",
                      "list the files the task changes, one path per entry", n, column)
            return
        for path, at in candidates[: 1 if not quoted else None]:
            path = self._relative(task, path, n, column + offset + at)
            if path:
                (task.reads if reads else task.files).append((path, n, column + offset + at))

    def _relative(self, task: _Task, path: str, n: int, column: int) -> str | None:
        """A Files path relative to the repository. An absolute one is read relative when it is under the
        repository, or under a folder of the repository's name or a `.worktrees/<name>/` folder (the
        author's checkout); otherwise it is an error. Each kind is reported once per plan."""
        if not path.startswith("/"):
            return path.removeprefix("./")
        relative = None
        if self.root and path.startswith(str(self.root).rstrip("/") + "/"):
            relative = path[len(str(self.root).rstrip("/")) + 1:]
        elif (worktree := re.search(r"/\.worktrees/[^/]+/", path)) is not None:
            relative = path[worktree.end():]
        elif self.root and (at := path.rfind(f"/{self.root.name}/")) >= 0:
            relative = path[at + len(self.root.name) + 2:]
        self.absolute.append((task.id, path, relative, n, column))
        return relative or None

    def _complexity(self, task: _Task, text: str, n: int, column: int, only_estimate: bool = False) -> None:
        text = text.strip().strip("*`").strip()
        word = None if only_estimate else _SIZE_WORD.match(text)
        hours = _HOURS.search(text[:200])
        if not word and not hours:
            self.err(f"task {task.id}: cannot read the complexity '{text[:60]}'",
                     "write S, M or L, optionally with hours, e.g. `M (3h)`", n, column)
            return
        size = _SIZES[word.group("size").lower()] if word else None
        estimate = None
        if hours:
            unit = hours.group("unit").lower()
            scale = 60.0 if unit.startswith("m") else 3600.0
            low = float(hours.group("a")) * (60.0 if (hours.group("unit1") or unit).lower().startswith("m")
                                             else 3600.0)
            high = float(hours.group("b")) * scale if hours.group("b") else low
            seconds = (low + high) / 2
            estimate = f"{seconds / 3600:g}h"
            if size:
                lo, hi = _SIZE_RANGE[size]
                if not lo <= seconds / 3600 <= hi:
                    self.warn(f"task {task.id}: size {size} is {lo:g}–{hi:g}h but the estimate is "
                              f"{seconds / 3600:g}h; using {seconds / 3600:g}h",
                              "make the size letter and the hours agree", n, column)
            else:
                size = next(s for s, (_, hi) in _SIZE_RANGE.items() if seconds / 3600 <= hi)
        elif word and word.group("size").lower() == "xs":
            estimate = "0.5h"
        elif size:
            estimate = f"{SIZE_HOURS[size]:g}h"
            leftover = re.sub(r"[\W_]+", " ", text[word.end():] if word else "").strip().lower()
            if leftover and leftover not in ("complexity", "effort", "size", "task", "complex"):
                self.warn(f"task {task.id}: cannot read the estimate '{leftover[:40]}'; using {size} ({estimate})",
                          "write hours like 3h or 2-4h", n, column)
        try:
            parse_duration(estimate)
        except ValueError:
            estimate = None
        task.size = size or task.size
        task.estimate = estimate or task.estimate
        task.at["size"] = task.at["estimate"] = (n, column)

    # --- building the plan ---------------------------------------------------------------------------

    def _build(self, relax: bool) -> Parsed:
        tasks = [t for p in self.phases for t in p.tasks]
        if not tasks and not any(d.severity == "error" for d in self.found):
            self.err("no tasks found in this markdown plan", "write tasks as `### Task 1.1: Name` under "
                     "`## Phase 1: Name` headings", 0)
        for phase in self.phases:
            if not phase.tasks and not phase.broken:
                self.err(f"{phase.label} has no tasks", "add `### Task` sections to it or remove the phase",
                         phase.line)
            elif phase.tasks and phase.strategy is None and phase.number in self.table_strategy:
                phase.strategy = self.table_strategy[phase.number]
            elif phase.tasks and phase.strategy is None:
                phase.strategy = "sequential"
                if len(phase.tasks) == 1:
                    continue  # one task: its order is the same either way
                if phase is self.implicit and len(phase.tasks) > 1:
                    self.warn("the plan has no phases: its tasks run one after another, in the order written",
                              "to run some at once, group them under `## Phase 1: Name` headings with "
                              "`**Strategy**: parallel`", phase.line)
                elif phase is not self.implicit:
                    self.warn(f"{phase.label} does not say whether its tasks run in parallel; treating it as "
                              "sequential", "add `**Strategy**: parallel` (or sequential) under its heading",
                              phase.line)
        self._absolute_paths()
        repos = sorted({t.repo for t in tasks if t.repo})
        if len(repos) > 1:
            self.warn(f"this plan spans repositories ({', '.join(repos)}): plait runs one repository at a "
                      "time, so `plait run` will refuse it", "split the plan per repository",
                      self.phases[0].line if self.phases else 0)
        self._resolve(tasks, relax)
        return self._data(tasks)

    def _absolute_paths(self) -> None:
        read = [a for a in self.absolute if a[2]]
        if read:
            task, path, relative, n, column = read[0]
            more = f" and {len(read) - 1} more" if len(read) > 1 else ""
            self.warn(f"task {task}: absolute path '{path}' read as '{relative}'{more}",
                      "write paths relative to the repository root", n, column)
        outside = [a for a in self.absolute if not a[2]]
        if outside:
            task, path, _, n, column = outside[0]
            more = f" (and {len(outside) - 1} more absolute paths)" if len(outside) > 1 else ""
            self.err(f"task {task}: absolute path '{path}' is outside the repository{more}",
                     "write paths relative to the repository root", n, column)

    def _resolve(self, tasks: list[_Task], relax: bool) -> None:
        ids = {_norm(t.id): t for t in reversed(tasks)}
        order = {id(t): i for i, t in enumerate(tasks)}
        phases = {p.number: p for p in self.phases if p.number}
        sinks: dict[str, None] = {}  # earlier tasks nothing earlier builds on, in order
        for phase_index, phase in enumerate(self.phases):
            phase_start = list(sinks)
            for pos, task in enumerate(phase.tasks):
                stated = self._stated(task, ids, phases, (sinks, phase_start), order, relax)
                needs: dict[str, str] = {}
                if not (relax and task.stated):
                    if phase.strategy == "sequential" and pos > 0:
                        if phase.tasks[pos - 1].id != task.id:  # a duplicate id is reported, not chained
                            needs[phase.tasks[pos - 1].id] = f"{phase.label} is sequential"
                    else:
                        label = self.phases[phase_index - 1].label if phase_index else ""
                        for sink in phase_start:
                            needs[sink] = f"phases run in order: {phase.label} after {label}"
                for need in stated:
                    needs.pop(need, None)
                task.needs = [*stated, *needs]
                task.why = needs
                for need in task.needs:
                    sinks.pop(need, None)
                sinks[task.id] = None

    def _stated(self, task: _Task, ids: dict[str, _Task], phases: dict[str, _Phase],
                ends: tuple[dict[str, None], list[str]], order: dict[int, int], relax: bool) -> list[str]:
        """The tasks a task's Dependencies field names, in order; unknown ones are reported once each."""
        found: dict[str, None] = {}
        for text, n, column in task.deps:
            refs = _references(text)
            if refs is None:
                self.warn(f"task {task.id}: cannot read the dependency '{text.strip()[:60]}'; ignored",
                          "name tasks by id, e.g. `Task 1.2`, or write `None`", n, column)
                continue
            for kind, word, offset in refs:
                if kind in ("all-tasks", "all-phases"):  # named by the earlier tasks nothing builds on
                    found.update(dict.fromkeys(ends[0] if kind == "all-tasks" else ends[1]))
                    continue
                target = _lookup(kind, word, ids, phases)
                if target is None:
                    self._unknown(task, word, kind, list(ids.values()), n, column + offset)
                    continue
                for other in target:
                    if other is task:
                        self.warn(f"task {task.id} depends on itself; ignored", "remove it from its dependencies",
                                  n, column + offset)
                    elif not relax and order[id(other)] > order[id(task)] and (
                            other.phase is not task.phase or task.phase.strategy == "sequential"):
                        self.err(f"task {task.id} depends on task {other.id}, which comes later in the plan",
                                 "phases (and the tasks of a sequential phase) run in the order written: move "
                                 f"task {other.id} before it, or fix the dependency", n, column + offset)
                    else:
                        found[other.id] = None
        return list(found)

    def _unknown(self, task: _Task, word: str, kind: str, tasks: list[_Task], n: int, column: int) -> None:
        shown = f"{'Phase' if kind == 'phase' else 'Task'} {word}"
        close = [t.id for t in tasks if _related(word, t.id)]
        hint = (f"did you mean Task {close[0]}? Otherwise, if it is a task of an earlier plan, make sure its work "
                "is in the base branch") if close else ("if it is a task of an earlier plan, make sure its "
                                                       "work is in the base branch; otherwise fix the reference")
        self.warn(f"task {task.id} depends on '{shown}', which is not in this plan; ignored", hint, n, column)

    def _data(self, tasks: list[_Task]) -> Parsed:
        positions: dict[Keys, Position] = {(): (1, 1)}
        title = self.title[0] if self.title else ""
        name = re.sub(r"^(execution\s+plan|implementation\s+plan|plan|feature)\s*[:\-–—]\s*", "", title, flags=re.I)
        name = re.sub(r"\s*[-–—:]?\s*(implementation|execution)\s+plan\s*$", "", name, flags=re.I).strip()
        name = name or str(self.front.get("feature") or self.front.get("title") or Path(self.source).stem)
        if self.title:
            positions[("name",)] = self.pos(self.title[1])
        for i, t in enumerate(tasks):
            for keys in ((), ("id",), ("title",), ("prompt",), ("needs",)):
                positions[("tasks", i, *keys)] = self.pos(t.line)
            positions.update({("tasks", i, key): self.pos(*at) for key, at in t.at.items()})
            for key, refs in (("files", t.files), ("reads", t.reads), ("acceptance", t.acceptance)):
                positions.update({("tasks", i, key, j): self.pos(n, c) for j, (_, n, c) in enumerate(refs)})
        data: dict[str, Any] = {"plait": 1, "name": name, "tasks": [_task_data(t) for t in tasks]}
        if isinstance(self.front.get("verify"), str):  # plait's extension: a default verify command
            data["defaults"] = {"verify": self.front["verify"]}
        inferred = {t.id: dict(t.why) for t in tasks if t.why}
        return Parsed(data, positions, self.found, inferred)


def _task_data(t: _Task) -> dict[str, Any]:
    body = re.sub(r"\n{3,}", "\n\n", "\n".join(t.body)).strip()
    item: dict[str, Any] = {"id": t.id, "title": t.title, "prompt": body or t.title, "needs": t.needs,
                            "files": list(dict.fromkeys(f for f, *_ in t.files)),
                            "acceptance": [a for a, *_ in t.acceptance]}
    reads = [f for f, *_ in t.reads if f not in item["files"]]
    verify = t.verify or (" && ".join(t.gates) if t.gates else None)
    optional = {"size": t.size, "estimate": t.estimate, "verify": verify, "repo": t.repo,
                "reads": list(dict.fromkeys(reads))}
    return item | {key: value for key, value in optional.items() if value}


def _label(label: str) -> str | None:
    """A field label's kind: `Files to Create/Modify` is files, `Dependency Reason` is prose."""
    if label in _LABELS:
        return _LABELS[label]
    return "files" if re.match(r"files? (to|changed|affected|modified|created)\b", label) else None


def _split_commas(text: str) -> list[tuple[str, int]]:
    """`a.py`, b.py, `c, d.py` -> pieces with their offsets (commas inside backticks do not split)."""
    pieces, start, quoted = [], 0, False
    for i, char in enumerate(text):
        if char == "`":
            quoted = not quoted
        elif char in ",;" and not quoted:
            pieces.append((text[start:i], start))
            start = i + 1
    pieces.append((text[start:], start))
    return [(p.strip(), o + len(p) - len(p.lstrip())) for p, o in pieces if p.strip()]


def _is_path(word: str, quoted: bool = False) -> bool:
    """Whether a Files entry's word is a path: backticked and path-shaped, or with a `/` or an extension."""
    word = word.strip()
    if not word or len(word) > 300 or "://" in word or " " in word or not _PATHISH.match(word):
        return False
    if quoted:
        return word.lower() not in ("none", "n/a", "tbd", "todo")
    return "/" in word or bool(re.search(r"\.[A-Za-z0-9]{1,10}$", word)) or word.lower() in _KNOWN_FILES \
        or word.startswith(".")


def _references(text: str) -> list[tuple[str, str, int]] | None:
    """What a Dependencies text names: (kind, id, offset) with kind task/phase/any/all-tasks/all-phases.
    `[]` for `None`; None when nothing in it reads as a reference. Numbers count only where a list of
    references expects one (`Tasks 4.2 and 4.3 complete`), and ` - explanation` after a reference is
    skipped up to the next comma."""
    clean = re.sub(r"[*`\[\]\"'{}]", " ", text)
    clean = re.sub(r"\([^()]{0,300}\)", lambda m: " " * len(m.group(0)), clean)
    if _NONE.match(clean.strip()):
        return []
    found: list[tuple[str, str, int]] = []
    if re.search(r"\ball\s+(?:the\s+)?(?:previous|prior|earlier|preceding)\s+(?:tasks|work)\b", clean, re.I):
        found.append(("all-tasks", "", 0))
    if re.search(r"\ball\s+(?:the\s+)?(?:previous|prior|earlier|preceding)\s+phases\b", clean, re.I):
        found.append(("all-phases", "", 0))
    kind, expect, skip, refs_here = "any", True, False, False
    for match in _DEP_TOKEN.finditer(clean):
        word, lower = match.group(0), match.group(0).strip().lower()
        if lower in (",", ";"):
            expect, skip, refs_here = True, False, False
        elif skip and lower not in ("task", "tasks", "phase", "phases"):
            continue
        elif lower in ("-", "—", "–"):
            skip = refs_here
        elif lower in ("&", "+", "/", "and", "or"):
            expect = True
        elif lower in ("task", "tasks"):
            kind, expect, skip = "task", True, False
        elif lower in ("phase", "phases"):
            kind, expect, skip = "phase", True, False
        elif re.match(r"task[-_]\d", lower):
            found.append(("task", word[5:].rstrip("."), match.start()))
            expect, refs_here = False, True
        elif expect and any(c.isdigit() for c in word):
            found.append((kind, word.rstrip("."), match.start()))
            expect, refs_here = False, True
        elif not any(c.isdigit() for c in word):
            expect = expect and lower in _LEAD_WORDS
            skip = lower not in _STATUS_WORDS and lower not in _LEAD_WORDS  # prose: numbers in it are not ids
    return found or None


_LEAD_WORDS = ("the", "all", "of", "in", "from", "on", "upon", "after", "needs", "requires", "both", "depends",
               "blocked", "by", "waits", "for", "see", "until", "needed", "builds")
_STATUS_WORDS = ("complete", "completed", "done", "finished", "merged", "must", "be", "is", "are", "first",
                 "and", "or", "both")


def _lookup(kind: str, word: str, ids: dict[str, _Task], phases: dict[str, _Phase]) -> list[_Task] | None:
    key = _norm(word)
    if kind in ("task", "any") and key in ids:
        return [ids[key]]
    if kind in ("phase", "any") and key in phases:
        return list(phases[key].tasks)
    if key in ids:  # `Phase 5.1` names Task 5.1
        return [ids[key]]
    parts = key.split(".")
    for k in range(len(parts) - 1, 0, -1):  # `task-1-database-schema`: the id, then a slug
        if all(not p.isdigit() for p in parts[k:]) and ".".join(parts[:k]) in ids:
            return [ids[".".join(parts[:k])]]
    return None


def _related(word: str, candidate: str) -> bool:
    """A did-you-mean only between ids of the same shape that differ in one character."""
    a, b = _norm(word), _norm(candidate)
    if a.count(".") != b.count(".") or len(a) != len(b):
        return False
    return sum(x != y for x, y in zip(a, b, strict=True)) == 1 and not a.replace(".", "").isdigit()


def _norm(ref: str) -> str:
    """`Task 1-1`, `1_1` and `1.1` name the same task."""
    return re.sub(r"[._-]", ".", ref.strip().lower())
