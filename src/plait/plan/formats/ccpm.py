"""ccpm (Claude Code PM, github.com/automazeio/ccpm) epic folders as plait plan data (format 1).

An epic is a folder: `epic.md` and one file per task, YAML front matter (`name`, `status`, `depends_on`,
`parallel`, `conflicts_with`) over `## ` sections. `/pm:epic-decompose` writes `001.md`, `002.md`…;
`/pm:epic-sync` renames each to its issue number (`1234.md`) and rewrites the references to match. The rules:

- tasks: files named `<digits>.md`, in numeric order; the id is the stem. `epic.md`, `<n>-analysis.md`,
  `github-mapping.md` and sub-folders (`updates/`) are not tasks. Name: `epic.md`'s `name:`, else the folder's.
- title: `name:`. prompt: the body less its `# Task:` line and the Acceptance Criteria, Effort Estimate and
  Definition of Done sections (held in fields, or ccpm's team checklist: "deployed to staging" is no agent's).
- needs: `depends_on` (a list, a number, or comma-separated text). `001`, `1` and `#1` name the same file when
  only one file has that number; the text is read as written, so YAML never turns `010` into 8.
- `status: closed|completed|done`: the task is left out, and depending on it is satisfied.
- `conflicts_with` (on either side): the later file needs the earlier, unless one already needs the other
  transitively; pairs go later file first, then its nearest partner, so mutual conflicts make a chain.
- `parallel: false` without `depends_on`: needs the previous open task in file order, unless already ordered.
  These two edges are `inferred`, with reason "conflicts_with" or "parallel: false".
- acceptance: the list items (checkboxes or plain) under `## Acceptance Criteria`. From `## Effort Estimate`:
  `Size: XS|S|M|L|XL` (XS is S); `Hours: 8` is `8h`, a range `4-6` its midpoint, a day 8 hours. ccpm sizes
  tasks in days: more than 8h (or XL) is imported as 8h (L), with a warning to split it.
- files: the items under a `Files` heading (`### Files to modify`) or after a `Files:` label (`**Files
  affected**:`, `Code locations:`), and the label's line: backticked spans, else the words that are paths (a
  known extension, a folder `src/a/`, a glob with `/`). With none, the backticked paths of `## Technical
  Details`. No other prose becomes a file.
- relax_phases: ccpm has no phases; the argument keeps readers' signatures alike and changes nothing.
- a reference to no task file is an error at its place; when a file's unknown references are task numbers
  (`001`) and the files issue numbers, or the reverse, one error for that file says epic-sync renumbered it.
"""

from __future__ import annotations

import re
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import Any, NoReturn

import yaml

from plait.errors import Location
from plait.plan.formats import Keys, Parsed, Position
from plait.plan.model import MAX_TASK_SECONDS
from plait.plan.validate import Diagnostic, PlanError, Severity, did_you_mean, shown

MAX_FILE_BYTES = 1 << 20  # a task file is a page or two of markdown
MAX_FRONT_MATTER = 16 << 10  # ccpm writes under 1 KiB
MAX_TASK_FILES = 2000  # a ccpm epic has tens of tasks

# Every pattern runs in linear time on hostile lines: no two adjacent quantifiers can match the same text.
_TASK_FILE = re.compile(r"[0-9]{1,18}\.md")
_CCPM_KEY = re.compile(r"^(depends_on|parallel|conflicts_with|name|status)[ \t]*:", re.M)
_FENCE = re.compile(r"\s*(```|~~~)")
_HEADING = re.compile(r"(#{1,6})(?:[ \t]|$)")
_ITEM = re.compile(r"(\s*)(?:[-*+]|\d{1,9}[.)])\s+(?:\[[ xX]\]\s+)?(?P<text>\S.*)")
_FILES = r"(?:key |affected )?files?(?: affected| to \w+(?: ?/ ?\w+)?)?|code locations(?:/files affected)?"
_FILES_HEADING = re.compile(rf"(?:{_FILES}):?", re.I)
_FILES_LABEL = re.compile(rf"\s*(?:[-*+]\s+)?(?:\*\*)?(?:{_FILES})(?:\*\*)?[ \t]*:(?:\*\*)?(?P<rest>.*)", re.I)
_BACKTICKED = re.compile(r"`([^`\s]+)`")
_EXTENSION = re.compile(r"\.(?:py|pyi|ts|tsx|js|jsx|mjs|cjs|json|ya?ml|toml|md|rst|txt|go|rs|java|kt|rb|php|cs|c|h|"
                        r"cc|cpp|hpp|css|scss|html|sql|sh|swift|vue|svelte|cfg|ini|xml|proto|graphql|lock|env)$", re.I)
_EFFORT = re.compile(r"\s*(?:[-*+]\s+)?(?:\*\*)?(?P<key>size|hours|estimated hours)(?:\*\*)?[ \t]*:(?:\*\*)?"
                     r"(?P<value>.*)", re.I)
_SIZE = re.compile(r"(xs|xl|s|m|l|extra[- ]small|extra[- ]large|small|medium|large)\b", re.I)
_SIZES = {"xs": "S", "s": "S", "small": "S", "extra small": "S", "m": "M", "medium": "M", "l": "L", "large": "L",
          "xl": "XL", "extra large": "XL"}
_HOURS = re.compile(r"~? ?(\d{1,4}(?:\.\d{1,2})?) ?(?:h|hrs?|hours?)? ?(?:(?:-|–|—|to) ?(\d{1,4}(?:\.\d{1,2})?))? ?"
                    r"(?P<unit>h|hrs?|hours?|d|days?)?\b", re.I)  # on text with single spaces
_MAX_HOURS = MAX_TASK_SECONDS / 3600
_DROPPED = ("acceptance", "effort", "estimate", "definition of done")
_BAD_REF = "write task numbers, e.g. `depends_on: [001, 002]`"
# The same safe loader, ten times faster when PyYAML has libyaml; either way only nodes are composed.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

Where = tuple[int, int]
Pairs = dict[tuple[str, str], tuple[str, Position]]  # (later, earlier) -> (reason, where it is written)


class _Found(list[Diagnostic]):
    def add(self, message: str, fix: str, source: str, where: Where = (0, 0), severity: Severity = "error") -> None:
        self.append(Diagnostic(severity, message, fix, Location(source, *where)))


def _fail(message: str, fix: str, source: str, where: Where = (0, 0)) -> NoReturn:
    raise PlanError([Diagnostic("error", message, fix, Location(source, *where))])


@dataclass(frozen=True)
class _Ref:
    text: str
    key: str  # depends_on or conflicts_with
    at: Where


@dataclass(frozen=True)
class _File:
    id: str
    source: str
    closed: bool
    sequential: bool  # parallel: false
    refs: tuple[_Ref, ...]
    at: dict[str, Where]  # front matter key -> where it is written
    task: dict[str, Any]  # the plan data, but for needs
    here: dict[Keys, Where]  # where each of the task's values is written


def looks_like_ccpm(directory: Path) -> bool:
    """An `epic.md` or a numbered task file whose front matter has ccpm's keys (reads a few KiB at most)."""
    try:
        numbered = (p for p in directory.iterdir() if _TASK_FILE.fullmatch(p.name))
        for path in [directory / "epic.md", *(p for _, p in zip(range(3), numbered, strict=False))]:
            if path.is_file():
                with path.open("rb") as f:
                    head = f.read(4096).decode("utf-8-sig", errors="replace")
                if head.startswith("---") and _CCPM_KEY.search(head.split("\n---", 1)[0]):
                    return True
    except OSError:
        pass
    return False


def parse_ccpm(directory: Path, relax_phases: bool = False) -> Parsed:
    """Read an epic folder. Raises PlanError listing every problem found. `relax_phases` changes nothing."""
    directory, found = Path(directory), _Found()
    paths, epic = _task_paths(directory), directory / "epic.md"
    top: Position = (str(epic), 1, 1) if epic.is_file() else (str(directory), 0, 0)
    positions: dict[Keys, Position] = {(): top, ("plait",): top, ("name",): top}
    name, title = directory.resolve().name or "epic", None
    try:
        title = _text(_front_matter(epic, required=False)[0], "name", str(epic), found) if epic.is_file() else None
    except PlanError as exc:
        found += exc.diagnostics
    if title:
        name, positions[("name",)] = title[0], (str(epic), *title[1])
    files = [f for p in paths if (f := _read_task(p, found))]
    open_files = [f for f in files if not f.closed]
    if not open_files and not found:
        found.add("nothing to run: " + ("every task in it is closed" if files else "it has no task files (001.md…)"),
                  "reopen a task (`status: open`)" if files else "run `/pm:epic-decompose`", str(directory))
    needs, pairs = _references(open_files, [p.stem for p in paths], found)
    if errors := [d for d in found if d.severity == "error"]:
        rank = {str(p): i for i, p in enumerate(paths)}
        raise PlanError(sorted(errors, key=lambda d: (rank.get(d.location.path, -1), d.location.line,
                                                      d.location.column)))
    inferred = _order([f.id for f in open_files], {t: [d for d, _ in ds] for t, ds in needs.items()}, pairs)
    for i, f in enumerate(open_files):
        f.task["needs"] = [d for d, _ in needs[f.id]] + list(inferred.get(f.id, {}))
        wheres = [(f.source, *at) for _, at in needs[f.id]] + [pairs[(f.id, d)][1] for d in inferred.get(f.id, {})]
        positions.update({("tasks", i, "needs", j): where for j, where in enumerate(wheres)})
        positions.update({("tasks", i, *key): (f.source, *at) for key, at in f.here.items()})
    reasons = {t: {d: pairs[(t, d)][0] for d in deps} for t, deps in inferred.items()}
    return Parsed({"plait": 1, "name": name, "tasks": [f.task for f in open_files]}, positions, list(found), reasons)


def _task_paths(directory: Path) -> list[Path]:
    try:
        paths = [p for p in directory.iterdir() if _TASK_FILE.fullmatch(p.name) and p.is_file()]
    except OSError as exc:
        what = {FileNotFoundError: "no such folder", NotADirectoryError: "is a file, not an epic folder"}
        _fail(what.get(type(exc), f"cannot be read: {exc.strerror or exc}"), "give the path of a ccpm epic folder: "
              "it holds epic.md and the numbered task files", str(directory))
    if len(paths) > MAX_TASK_FILES:
        _fail(f"{len(paths)} task files, more than the {MAX_TASK_FILES} plait reads", "split the epic", str(directory))
    return sorted(paths, key=lambda p: (int(p.stem), p.stem))


def _front_matter(path: Path, required: bool = True) -> tuple[dict[str, tuple[yaml.Node, Where]], list[str], int]:
    """The front matter's top-level keys (YAML nodes, never constructed), the body's lines and its first line."""
    source = str(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        _fail(f"cannot be read: {exc.strerror or exc}", "check the file's permissions", source)
    if len(raw) > MAX_FILE_BYTES:
        _fail(f"is over {MAX_FILE_BYTES >> 20} MiB, too large for a task file", "shorten it", source)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        _fail(f"is not UTF-8 text (byte 0x{raw[exc.start]:02x})", "save the file as UTF-8", source,
              (before.count(b"\n") + 1, exc.start - before.rfind(b"\n")))
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    if lines[0].rstrip() != "---":
        if not required:
            return {}, lines, 1
        _fail("has no front matter", "start the file with a `---` line, then `name:`, `status:` and "
              "`depends_on:`, then a closing `---` line", source, (1, 1))
    end, size = 1, 0
    while end < len(lines) and lines[end].rstrip() not in ("---", "...") and size <= MAX_FRONT_MATTER:
        size, end = size + len(lines[end]) + 1, end + 1
    if size > MAX_FRONT_MATTER:
        _fail(f"front matter is over {MAX_FRONT_MATTER >> 10} KiB", "keep only ccpm's keys in it (name, status, "
              "depends_on…): the task text goes below the closing `---`", source, (1, 1))
    if end == len(lines):
        _fail("front matter is not closed", "end it with a `---` line", source, (1, 1))
    return _yaml_keys("\n".join(lines[1:end]), source), lines[end + 1:], end + 2


def _yaml_keys(text: str, source: str) -> dict[str, tuple[yaml.Node, Where]]:
    def at(mark: Any) -> Where:  # the front matter starts on line 2
        return (mark.line + 2, mark.column + 1) if mark else (1, 1)

    fix = "fix the front matter: one `key: value` a line, lists written [001, 002]"
    depth = max(accumulate((1 if b in "[{" else -1 for b in re.findall(r"[][{}]", text)), initial=0))
    if depth > 16:  # pure-Python PyYAML takes time quadratic in the nesting of `[` and `{`
        _fail(f"the front matter nests brackets {depth} deep", fix, source, (2, 1))
    try:
        loader = _SafeLoader(text)
        try:
            root = loader.get_single_node()  # composed only: no value is constructed, no alias expanded
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        unclosed = "flow" in (exc.context or "") and exc.context_mark
        _fail(f"invalid YAML in the front matter: {exc.problem or exc.context}",
              "close the `[` or `{` opened here" if unclosed else fix, source,
              at(exc.context_mark if unclosed else exc.problem_mark or exc.context_mark))
    except yaml.reader.ReaderError as exc:
        line, column = text.count("\n", 0, exc.position) + 2, exc.position - text.rfind("\n", 0, exc.position)
        _fail("invalid character in the front matter", "remove it", source, (line, column))
    except (yaml.YAMLError, RecursionError) as exc:
        _fail(f"unreadable front matter ({type(exc).__name__})", fix, source, (2, 1))
    if root is not None and not isinstance(root, yaml.MappingNode):
        _fail("the front matter is not `key: value` lines", fix, source, at(root.start_mark))
    keys: dict[str, tuple[yaml.Node, Where]] = {}
    for key, value in root.value if root else []:
        if isinstance(key, yaml.ScalarNode):
            if key.value in keys:
                _fail(f"duplicate key {shown(key.value)}", "remove one of them", source, at(key.start_mark))
            keys[key.value] = (value, at(key.start_mark))
    return keys


def _text(keys: dict[str, tuple[yaml.Node, Where]], key: str, source: str, found: _Found) -> tuple[str, Where] | None:
    """A scalar's written text (None when absent or null); a list or mapping is an error."""
    node, where = keys.get(key, (None, (0, 0)))
    if isinstance(node, yaml.ScalarNode) or node is None:
        return None if node is None or node.tag.endswith(":null") else (node.value, where)
    found.add(f"`{key}` is a list or mapping, not text", f"write `{key}:` and one value", source, where)
    return None


def _read_task(path: Path, found: _Found) -> _File | None:
    source = str(path)
    try:
        keys, body, body_line = _front_matter(path)
    except PlanError as exc:
        found += exc.diagnostics
        return None
    title, status, parallel = (_text(keys, k, source, found) for k in ("name", "status", "parallel"))
    if parallel and parallel[0].lower() not in ("true", "false", "yes", "no", "on", "off"):
        found.add(f"`parallel` is {shown(parallel[0])}, not true or false",
                  "write `parallel: true` or `parallel: false`", source, parallel[1])
    if not title or not title[0].strip():
        found.add("the task has no name", "add `name: <short title>` to the front matter", source, (1, 1))
    closed = bool(status and status[0].strip().lower() in ("closed", "completed", "done"))
    here: dict[Keys, Where] = {(): (1, 1), ("id",): (1, 1), ("title",): title[1] if title else (1, 1),
                               ("prompt",): (body_line, 1), ("needs",): keys.get("depends_on", (None, (1, 1)))[1]}
    task: dict[str, Any] = {"id": path.stem, "title": title[0].strip() if title else ""}
    if not closed:
        task |= _body(body, body_line, source, here, found)
    refs = [r for k in ("depends_on", "conflicts_with") if k in keys for r in _refs(k, *keys[k], source, found)]
    return _File(path.stem, source, closed, bool(parallel and parallel[0].lower() in ("false", "no", "off")),
                 tuple(refs), {k: where for k, (_, where) in keys.items()}, task, here)


def _refs(key: str, node: yaml.Node, where: Where, source: str, found: _Found) -> list[_Ref]:
    """`[001, 002]`, `001`, or `001, 002`, as written (before YAML reads numbers)."""
    def null(n: yaml.Node) -> bool:
        return isinstance(n, yaml.ScalarNode) and n.tag.endswith(":null")

    def at(n: yaml.Node) -> Where:
        return n.start_mark.line + 2, n.start_mark.column + 1

    if isinstance(node, yaml.ScalarNode) and not null(node):
        return [_Ref(t, key, at(node)) for t in re.split(r"[\s,]+", node.value.strip(" []")) if t]
    items = [n for n in node.value if not null(n)] if isinstance(node, yaml.SequenceNode) else []
    if null(node) or (isinstance(node, yaml.SequenceNode) and all(isinstance(n, yaml.ScalarNode) for n in items)):
        return [_Ref(n.value.strip(), key, at(n)) for n in items]
    found.add(f"`{key}` is not a list of task numbers", _BAD_REF, source, where)
    return []


def _body(body: list[str], first: int, source: str, here: dict[Keys, Where], found: _Found) -> dict[str, Any]:
    """prompt, files, acceptance, size and estimate from the body's sections (`first` is its file line)."""
    task: dict[str, Any] = {}
    section, fence, files_mode, title_line = "", False, "", False
    prompt: list[str] = []
    acceptance: list[str] = []
    files: list[str] = []
    technical: list[str] = []
    for n, line in enumerate(body):
        is_fence = bool(_FENCE.match(line))
        fence ^= is_fence
        heading = None if fence or is_fence else _HEADING.match(line)
        if heading and len(heading[1]) == 1 and not title_line:  # ccpm's `# Task: <name>` line
            title_line = True
            continue
        if heading:
            text = " ".join(line[heading.end():].strip().rstrip("#").strip("*_: ").lower().split())
            section = text if len(heading[1]) <= 2 else section
            files_mode = "heading" if _FILES_HEADING.fullmatch(text) else ""
        if not section.startswith(_DROPPED):
            prompt.append(line)
        if fence or is_fence or heading:
            continue
        item, label = _ITEM.match(line), _FILES_LABEL.match(line)
        if section.startswith("acceptance") and item:
            here[("acceptance", len(acceptance))] = (first + n, len(item[1]) + 1)
            acceptance.append(item["text"].rstrip())
        elif section.startswith(("effort", "estimate")) and (field := _EFFORT.match(line)):
            value = " ".join(field["value"].strip("* \t").split())
            _effort(field["key"].lower(), value, task, source, (first + n, 1), here, found)
        if label:
            files_mode, files = "label", files + _paths(label["rest"], inline=True)
        elif item and files_mode:
            files += _paths(item["text"], inline=False)
        elif line.strip() and files_mode == "label":
            files_mode = ""
        if section.startswith("technical"):
            technical += [_clean(s) for s in _BACKTICKED.findall(line) if _strict_path(s)]
    task["prompt"] = "\n".join(prompt).strip("\n")
    if not task["prompt"].strip():
        found.add("the task has no description", "write what to do under `## Description`", source, (first, 1))
    return {**task, "needs": [], "files": list(dict.fromkeys(files or technical)), "acceptance": acceptance}


def _effort(key: str, value: str, task: dict[str, Any], source: str, where: Where, here: dict[Keys, Where],
            found: _Found) -> None:
    size, hours = _SIZE.match(value), _HOURS.match(value)
    split = "split the task into parts of at most 8h for more parallel work"
    if key == "size" and size:
        task["size"], here[("size",)] = _SIZES[size[1].lower().replace("-", " ")], where
        if task["size"] == "XL":  # ccpm sizes in days: an XL task is imported, as plait's largest
            task["size"] = "L"
            found.add("size XL is more than one agent's task (8h); it is scheduled as L", split, source, where,
                      "warning")
    elif key != "size" and hours:
        amount = (float(hours[1]) + float(hours[2] or hours[1])) / 2
        days = (hours["unit"] or "h").lower().startswith("d")
        total = amount * (8 if days else 1)
        if total > _MAX_HOURS:
            found.add(f"estimated at {total:g}h, more than one agent's task ({_MAX_HOURS:g}h); it is scheduled "
                      f"as {_MAX_HOURS:g}h", split, source, where, "warning")
            total = _MAX_HOURS
        task["estimate"], here[("estimate",)] = f"{total:g}h", where
    else:
        found.add(f"{key} {shown(value)} is not {'XS, S, M, L or XL' if key == 'size' else 'a number of hours'}",
                  "write e.g. `- Size: M` and `- Hours: 4-6`; plait ignores this line", source, where, "warning")


def _clean(token: str) -> str:
    return token.strip().strip("*_\"'").rstrip(",;:)").removeprefix("./")


def _strict_path(token: str) -> bool:
    """A path, not a word: a known extension, a folder (`src/auth/`), or a glob with a `/`."""
    token = _clean(token)
    if not token or token.startswith(("/", "~", "-")) or "://" in token or any(c in token for c in "()<>$=|"):
        return False
    return bool(_EXTENSION.search(token)) or ("/" in token and (token.endswith("/") or "*" in token))


def _paths(text: str, inline: bool) -> list[str]:
    """The files a list item (or a label's line) names: backticked spans, else the words that are paths."""
    if spans := _BACKTICKED.findall(text):
        return [c for s in spans if (c := _clean(s)) and "://" not in c]
    words = re.split(r"[\s,]+", text) if inline else text.split()[:1]
    return [_clean(w) for w in words if _strict_path(w)]


def _references(open_files: list[_File], ids: list[str],
                found: _Found) -> tuple[dict[str, list[tuple[str, Where]]], Pairs]:
    """Each open task's `depends_on` (closed tasks dropped), and the pairs that must not overlap:
    `conflicts_with` (either side), then `parallel: false`. References to no task file are errors."""
    numbers: dict[int, list[str]] = {}
    for stem in ids:
        numbers.setdefault(int(stem), []).append(stem)
    index = {f.id: i for i, f in enumerate(open_files)}
    needs: dict[str, list[tuple[str, Where]]] = {f.id: [] for f in open_files}
    pairs: Pairs = {}
    for f in open_files:
        unknown: list[_Ref] = []
        for ref in f.refs:
            number = _number(ref.text)
            matches = numbers.get(int(number), []) if number else []
            matches = [number] if number in matches else matches
            if len(matches) > 1:
                found.add(f"`{ref.key}` names {shown(ref.text)}, which matches {' and '.join(matches)}.md",
                          "write the number exactly as the file is named", f.source, ref.at)
            elif not matches:
                unknown.append(ref)
            elif matches[0] not in index or (matches[0] == f.id and ref.key == "conflicts_with"):
                continue  # a closed task (or an unreadable file, reported already)
            elif ref.key == "depends_on":
                needs[f.id].append((matches[0], ref.at))
            else:
                late, early = sorted((f.id, matches[0]), key=index.__getitem__, reverse=True)
                if late == f.id or (late, early) not in pairs:  # point at the needing task's own file
                    pairs[(late, early)] = ("conflicts_with", (f.source, *ref.at))
        if unknown:
            _unknown(f, unknown, ids, found)
    for f, previous in zip(open_files[1:], open_files, strict=False):
        if f.sequential and not any(r.key == "depends_on" for r in f.refs):
            pairs.setdefault((f.id, previous.id), ("parallel: false", (f.source, *f.at["parallel"])))
    return needs, pairs


def _number(text: str) -> str | None:
    """`001`, `#1234` or `001.md` -> the digits; None for anything else."""
    text = text.strip().lstrip("#").removesuffix(".md")
    return text if re.fullmatch(r"[0-9]{1,18}", text) else None


def _unknown(f: _File, refs: list[_Ref], ids: list[str], found: _Found) -> None:
    """One error for a renumbered epic, else one per reference that names no task file."""
    texts = [_number(r.text) for r in refs]
    padded = [bool(t and len(t) > 1 and t[0] == "0") for t in texts]
    files_padded = [len(i) > 1 and i[0] == "0" for i in ids]
    keys = list(dict.fromkeys(f"`{r.key}`" for r in refs))
    said = f"{' and '.join(keys)} name{'s' if len(keys) == 1 else ''}"
    listed = f"number{'s' if len(texts) > 1 else ''} {', '.join(t or '' for t in texts)}"
    files = ", ".join(f"{i}.md" for i in ids[:2]) + (", …" if len(ids) > 2 else "")
    if None not in texts and all(padded) and not any(files_padded):
        found.add(f"{said} task {listed}, but the task files are GitHub issue numbers ({files}): the epic was "
                  "renumbered by epic-sync", "re-run `/pm:epic-sync` to rewrite the references, or write the issue "
                  "numbers instead (github-mapping.md lists them)", f.source, refs[0].at)
    elif None not in texts and ids and not any(padded) and all(files_padded):
        found.add(f"{said} issue {listed}, but the task files are task numbers ({files}): the references were "
                  "renumbered and the files were not", "re-run `/pm:epic-sync` to rename the files to their issue "
                  "numbers, or write task numbers (e.g. 001) instead", f.source, refs[0].at)
    else:
        for r, t in zip(refs, texts, strict=True):
            found.add(f"`{r.key}` names {shown(r.text)}, which is no task file in this epic",
                      did_you_mean(r.text, ids, f"use one of: {', '.join(ids[:8])}") if t else _BAD_REF,
                      f.source, r.at)


def _order(order: list[str], needs: dict[str, list[str]], pairs: Pairs) -> dict[str, dict[str, None]]:
    """Add `later needs earlier` for each pair not already ordered either way; returns the edges added."""
    index = {t: i for i, t in enumerate(order)}
    users: dict[str, list[str]] = {t: [] for t in order}
    for t in order:
        for d in needs[t]:
            users[d].append(t)
    added: dict[str, dict[str, None]] = {}
    current, before, after = "", set[str](), set[str]()
    for late, early in sorted(pairs, key=lambda p: (index[p[0]], -index[p[1]])):
        if late != current:  # the edges added from `late` change what it reaches, never what reaches it
            current, before, after = late, _reach(needs, late), _reach(users, late)
        if early not in before and early not in after:
            needs[late].append(early)
            users[early].append(late)
            added.setdefault(late, {})[early] = None
            before |= {early} | _reach(needs, early, before)
    return added


def _reach(graph: dict[str, list[str]], start: str, known: AbstractSet[str] = frozenset()) -> set[str]:
    """Every node reachable from `start`, without entering `known` (reached already)."""
    found: set[str] = set()
    stack = [start]
    while stack:
        for nxt in graph[stack.pop()]:
            if nxt not in found and nxt not in known:
                found.add(nxt)
                stack.append(nxt)
    return found
