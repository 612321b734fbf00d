"""Read a plan file into a validated `Plan`, keeping where every value came from so that each problem is
reported as `file:line:col: what — how to fix it`.

Formats, told apart by their content: plait's YAML; spectacular's `plan.md` (also split into one file per
phase behind an index that links them); GitHub spec-kit's `tasks.md`; Taskmaster's `tasks.json`; a ccpm
epic folder. Every problem of a plan (reading, schema and checks) is reported at once."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import yaml
from pydantic import ValidationError

from plait.errors import Location
from plait.plan import limits
from plait.plan.formats import Parsed, Position
from plait.plan.markdown import has_tasks, linked_parts, parse_markdown, title_only
from plait.plan.model import Plan
from plait.plan.validate import Diagnostic, PlanError, error, kind, schema_diagnostic, shown, validate

Keys = tuple[str | int, ...]
Positions = dict[Keys, Position]
FORMATS = ("yaml", "spectacular", "speckit", "taskmaster", "ccpm")

__all__ = ["Diagnostic", "LoadedPlan", "PlanError", "load_plan"]


@dataclass(frozen=True)
class LoadedPlan:
    plan: Plan
    path: Path
    warnings: tuple[Diagnostic, ...] = ()
    positions: Mapping[Keys, Position] = field(default_factory=dict, repr=False, compare=False)
    format: str = "yaml"
    # task id -> {needed id: why}, for the edges the plan's format implies rather than states
    inferred: Mapping[str, Mapping[str, str]] = field(default_factory=dict, repr=False, compare=False)

    def locate(self, *keys: str | int) -> Location:
        """Where `keys` (e.g. "tasks", 3, "files", 0) is in the file, or its nearest enclosing node."""
        return locate_in(str(self.path), self.positions, keys)


def locate_in(source: str, positions: Mapping[Keys, Position], keys: Keys) -> Location:
    path = tuple(keys)
    while path and path not in positions:
        path = path[:-1]
    where = positions.get(path, (1, 1))
    if len(where) == 3:  # in another file of a plan that spans several
        return Location(str(where[0]), int(where[1]), int(where[2]))
    return Location(source, int(where[0]), int(where[1]))


def load_plan(path: str | Path, *, relax_phases: bool = False, root: Path | None = None) -> LoadedPlan:
    """Parse, type-check and validate a plan. Raises PlanError listing every error found.
    `relax_phases`: keep only the dependencies a phased plan states (see docs/plan-format.md).
    `root`: the repository (found from the plan's place when not given)."""
    path = Path(path)
    source = str(path)
    fmt, parsed = read_plan(path, relax_phases, root)
    data, positions = parsed.data, parsed.positions
    absurd = limits.check_data(data, lambda *keys: locate_in(source, positions, keys))
    if absurd:  # checking an absurd plan further would only take long
        raise PlanError(_ordered(absurd))
    early = parsed.warnings
    read_errors = [d for d in early if d.severity == "error"]
    if read_errors and not data.get("tasks"):  # the schema could only add "the plan has no tasks"
        raise PlanError(_ordered(read_errors))
    # Errors found while reading are reported together with the schema's and the checks'.
    plan = _to_model(data, positions, source, read_errors)
    found = [*early, *validate(plan, lambda *keys: locate_in(source, positions, keys))]  # read errors too
    errors = [d for d in found if d.severity == "error"]
    if errors:
        raise PlanError(_ordered(errors))
    warnings = tuple(_ordered([d for d in found if d.severity == "warning"]))
    return LoadedPlan(plan, path, warnings, positions, fmt, parsed.inferred)


def read_plan(path: Path, relax_phases: bool = False, root: Path | None = None) -> tuple[str, Parsed]:
    """The plan's format and its data, before type-checking; raises PlanError when it cannot be read."""
    source = str(path)
    root = root if root is not None else _repository_of(path)
    if path.is_dir():
        return _read_folder(path, relax_phases, root)
    text = _read(path, source)
    suffix = path.suffix.lower()
    if suffix == ".json":
        from plait.plan.formats.taskmaster import parse_taskmaster

        return "taskmaster", parse_taskmaster(text, source, relax_phases=relax_phases)
    if suffix in (".md", ".markdown"):
        from plait.plan.formats.speckit import looks_like_speckit, parse_speckit

        if looks_like_speckit(text):
            return "speckit", parse_speckit(text, source, relax_phases=relax_phases)
        if path.name.lower() not in ("epic.md",) and _ccpm_task(text):
            return _read_folder(path.parent, relax_phases, root)
        parts = [] if has_tasks(text) else linked_parts(text, path.parent)
        documents = [(str(p), _read(p, str(p))) for p in parts]
        if documents:  # a split plan: the index gives the title, the linked files the phases and tasks
            text = title_only(text)
        return "spectacular", parse_markdown(text, source, relax_phases=relax_phases, root=root, parts=documents)
    data, positions, early = _parse_yaml(text, source)
    return "yaml", Parsed(data, dict(positions), early)


def _read_folder(path: Path, relax_phases: bool, root: Path | None) -> tuple[str, Parsed]:
    """A folder: a ccpm epic, a Taskmaster project, or a folder holding a plan file."""
    from plait.plan.formats.ccpm import looks_like_ccpm, parse_ccpm

    if looks_like_ccpm(path):
        return "ccpm", parse_ccpm(path, relax_phases=relax_phases)
    for inside in (".taskmaster/tasks/tasks.json", "tasks/tasks.json", "plan.yaml", "plan.yml", "plan.md",
                   "tasks.md", "README.md"):
        if (path / inside).is_file():
            return read_plan(path / inside, relax_phases, root)
    _fail("is a directory, not a plan file", "give the path of a plan file (plan.yaml, plan.md, tasks.md, "
          "tasks.json) or of a ccpm epic folder", Location(str(path)))


def _ccpm_task(text: str) -> bool:
    """A ccpm task file (front matter with `depends_on`): its epic is the folder."""
    head = text[:2000]
    return head.startswith("---") and "depends_on" in head


def _repository_of(path: Path) -> Path | None:
    """The folder above the plan that holds `.git` (looked up on disk: no git command is run)."""
    try:
        here = path.resolve().parent if not path.is_dir() else path.resolve()
    except OSError:
        return None
    for folder in (here, *here.parents):
        if (folder / ".git").exists():
            return folder
    return None


def _ordered(found: list[Diagnostic]) -> list[Diagnostic]:
    unique = list(dict.fromkeys(found))
    return sorted(unique, key=lambda d: (d.location.path, d.location.line, d.location.column))


def _fail(message: str, fix: str, location: Location) -> NoReturn:
    raise PlanError([error(message, fix, location)]) from None


def _read(path: Path, source: str) -> str:
    try:
        with path.open("rb") as f:
            raw = f.read(limits.MAX_PLAN_BYTES + 1)
    except FileNotFoundError:
        _fail("no such file", "check the path: a plan is a YAML file (plan.yaml) or a spectacular plan.md",
              Location(source))
    except IsADirectoryError:
        inside = [p for p in (path / "plan.yaml", path / "plan.yml", path / "plan.md") if p.is_file()]
        _fail("is a directory, not a plan file",
              f"give the plan file inside it: {inside[0]}" if inside else "give the path of a plan file",
              Location(source))
    except PermissionError:
        _fail("cannot be read: permission denied", "check the file's permissions", Location(source))
    except OSError as exc:
        _fail(f"cannot be read: {exc.strerror or exc}", "check the path and the file", Location(source))
    if len(raw) > limits.MAX_PLAN_BYTES:
        _fail(f"the plan file is over the limit of {limits.MAX_PLAN_BYTES // 2**20} MiB",
              "split it into several plans and run them one after another", Location(source))
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line, column = before.count(b"\n") + 1, exc.start - before.rfind(b"\n")
        _fail(f"is not UTF-8 text (byte 0x{raw[exc.start]:02x})", "save the file as UTF-8",
              Location(source, line, column))


_EMPTY_FIX = "start it with `plait: 1`, `name:` and a `tasks:` list (see examples/)"


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """libyaml's parser when PyYAML has it (4-6 times faster, the same nodes and marks), else PyYAML's
    own; a plain scalar's type is looked up once per distinct text (ids repeat in every `needs`)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._tags: dict[str, str] = {}

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is not yaml.ScalarNode or implicit != (True, False) or len(self._tags) > 100_000:
            return super().resolve(kind, value, implicit)
        tag = self._tags.get(value)
        if tag is None:
            tag = self._tags[value] = super().resolve(kind, value, implicit)
        return tag
_UNPRINTABLE = re.compile("[^\x09\x0A\x0D\x20-\x7E\x85\xA0-\uD7FF\uE000-\uFFFD\U00010000-\U0010FFFF]")


def _printable(text: str, source: str) -> None:
    """What PyYAML's reader refuses (libyaml's lets some through): a control character."""
    bad = _UNPRINTABLE.search(text)
    if bad:
        at = bad.start()
        line, column = text.count("\n", 0, at) + 1, at - text.rfind("\n", 0, at)
        _fail(f"invalid character U+{ord(bad.group()):04X} in YAML", "remove it: a plan is plain UTF-8 text",
              Location(source, line, column))


def _python_error(text: str) -> yaml.MarkedYAMLError | None:
    """PyYAML's own wording and position for a syntax error (clearer than libyaml's); only for plans of a
    size it parses quickly."""
    if not hasattr(yaml, "CSafeLoader") or len(text) > 256 * 1024:
        return None
    try:
        yaml.SafeLoader(text).get_single_node()
    except yaml.MarkedYAMLError as exc:
        return exc
    return None


def _parse_yaml(text: str, source: str) -> tuple[dict[str, Any], Positions, list[Diagnostic]]:
    """Compose the node tree (for positions and duplicate keys), then build plain data from it."""
    root: yaml.Node | None = None
    top = Location(source, 1, 1)
    try:
        _printable(text, source)
        loader = _Loader(text)
        root = loader.get_single_node()
        if root is None:
            _fail("the plan is empty", _EMPTY_FIX, top)
        limits.check_yaml(root, source)  # before building the data: aliases and merge keys can multiply it
        positions: Positions = {}
        duplicates = _walk(root, (), positions, source)
        data = loader.construct_document(root)
        loader.dispose()
    except yaml.MarkedYAMLError as exc:
        raise PlanError([_yaml_error(_python_error(text) or exc, source)]) from None
    except yaml.reader.ReaderError as exc:
        line, column = text.count("\n", 0, exc.position) + 1, exc.position - text.rfind("\n", 0, exc.position)
        char = f" U+{exc.character:04X}" if isinstance(exc.character, int) else ""
        _fail(f"invalid character{char} in YAML", "remove it: a plan is plain UTF-8 text",
              Location(source, line, column))
    except yaml.YAMLError as exc:
        _fail(f"invalid YAML: {exc}", "fix the YAML syntax", top)
    except RecursionError:
        _fail("the YAML is nested too deeply", "flatten the structure", top)
    except (ValueError, TypeError, OverflowError) as exc:  # PyYAML lets `2024-02-30` escape as ValueError
        _fail(f"a value cannot be read: {exc}", "quote values YAML may misread (dates, numbers) so they stay "
              "text", _bad_scalar(root, source))
    start = locate_in(source, positions, ())
    if data is None:
        _fail("the plan is empty", _EMPTY_FIX, start)
    if not isinstance(data, dict):
        _fail(f"the top level of a plan must be a mapping of keys, not {kind(data)}",
              "start the file with `plait: 1`, `name: ...` and `tasks:` lines", start)
    return data, positions, duplicates


def _walk(node: yaml.Node, keys: Keys, positions: Positions, source: str) -> list[Diagnostic]:
    """Record where every key and item starts; report duplicate keys (YAML silently keeps the last)."""
    found: list[Diagnostic] = []
    stack: list[tuple[yaml.Node, Keys]] = [(node, keys)]
    seen: set[int] = set()  # aliases share nodes: visit each once
    while stack:
        current, path = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        positions.setdefault(path, (current.start_mark.line + 1, current.start_mark.column + 1))
        if isinstance(current, yaml.MappingNode):
            names: set[str] = set()
            for key_node, value_node in current.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "<<":
                    continue
                name = key_node.value
                child = (*path, name)
                mark = key_node.start_mark
                if name in names:
                    found.append(error(f"duplicate key '{name}'", "remove one of them (YAML keeps the last)",
                                       Location(source, mark.line + 1, mark.column + 1)))
                    continue
                names.add(name)
                positions[child] = (mark.line + 1, mark.column + 1)
                stack.append((value_node, child))
        elif isinstance(current, yaml.SequenceNode):
            stack.extend((item, (*path, i)) for i, item in enumerate(current.value))
    return found


def _scalars(node: yaml.Node) -> Iterator[yaml.ScalarNode]:
    stack, seen = [node], set()
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, yaml.ScalarNode):
            yield current
        elif isinstance(current, yaml.MappingNode):
            stack.extend(n for pair in reversed(current.value) for n in reversed(pair))
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(reversed(current.value))


def _bad_scalar(root: yaml.Node | None, source: str) -> Location:
    """The first scalar PyYAML cannot construct (only searched for when construction failed)."""
    if root is not None:
        probe = yaml.SafeLoader("")
        for node in _scalars(root):
            try:
                probe.construct_object(node)
            except Exception:  # any failure marks the culprit
                return Location(source, node.start_mark.line + 1, node.start_mark.column + 1)
    return Location(source, 1, 1)


_YAML_HINTS = (
    ("found character '\\t'", "YAML does not allow tabs: indent with spaces"),
    ("mapping values are not allowed", "quote a value that contains ': ', e.g. title: \"Fix: login\""),
    ("could not find expected ':'", "each line of a mapping is `key: value`; check this line and the one "
                                    "above for a missing colon or an unclosed quote"),
    ("expected <block end>", "check the indentation: items of one list or mapping start in the same column"),
    ("found unexpected end of stream", "close the quote or bracket opened here"),
    ("flow", "close the `[` or `{` opened here, or quote the value"),
    ("expected a single document", "keep one plan per file (remove the extra `---`)"),
    ("found undefined alias", "define the anchor (`&name`) before using `*name`"),
    ("could not determine a constructor", "remove the `!tag`: plans use plain YAML values"),
)


def _yaml_error(exc: yaml.MarkedYAMLError, source: str) -> Diagnostic:
    problem = (exc.problem or exc.context or "invalid YAML").strip()
    context = f" ({exc.context})" if exc.context and exc.problem else ""
    mark = exc.problem_mark or exc.context_mark
    if exc.context_mark and ("end of stream" in problem or "<stream end>" in problem):
        mark = exc.context_mark or mark  # the file ended inside something: point at where it opened
        context = f" ({exc.context} started here)" if exc.context else ""
    where = Location(source, mark.line + 1, mark.column + 1) if mark else Location(source, 1, 1)
    full = f"{problem}{context}"
    fix = next((hint for key, hint in _YAML_HINTS if key in full),
               "fix the YAML syntax here (check indentation, colons and quotes)")
    return error(f"invalid YAML: {full}", fix, where)


def _to_model(data: dict[str, Any], positions: Positions, source: str, earlier: list[Diagnostic]) -> Plan:
    """Type-check the data; every schema error becomes a located, plain-English diagnostic. `earlier`
    (errors found while reading) are raised with the schema's; when the schema is satisfied, the caller
    reports them with the checks'."""
    found = list(earlier)
    version = data.get("plait")
    if "plait" not in data:
        found.append(error("missing the plan format version", "add `plait: 1` as the first line",
                           locate_in(source, positions, ())))
    elif version != 1 or isinstance(version, bool):
        found.append(error(f"unsupported plan format version {shown(version)}",
                           "this plait reads format 1: add `plait: 1`",
                           locate_in(source, positions, ("plait",))))
    try:
        plan = Plan.model_validate({**data, "plait": 1})
    except ValidationError as exc:
        for err in exc.errors():
            message, fix = schema_diagnostic(err)
            found.append(error(message, fix, locate_in(source, positions, tuple(err["loc"]))))
        raise PlanError(_ordered(found)) from None
    except OverflowError:  # a 400-digit duration overflows float(): pydantic does not catch that
        found.append(error("a number is too large", "use a smaller number",
                           locate_in(source, positions, _huge_number(data))))
        raise PlanError(_ordered(found)) from None
    if len(found) > len(earlier):  # the version is wrong: the checks would judge a plan of another format
        raise PlanError(_ordered(found))
    return plan


def _huge_number(data: Any, keys: Keys = ()) -> Keys:
    """Where the first integer too large for a float is."""
    children = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in children:
        if isinstance(value, int) and abs(value) > 10**300:
            return (*keys, key)
        if isinstance(value, dict | list) and (found := _huge_number(value, (*keys, key))):
            return found
    return ()
