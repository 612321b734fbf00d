"""Semantic checks on a plan that parsed: the problems a schema cannot see (unknown `needs`, cycles,
oversized tasks, paths outside the repository…). Errors stop a load; warnings are valid but risky.

The parallelization anti-patterns (overlapping files, tiny tasks, contract edits by non-owners, no
integration checkpoint) are judgements about a valid plan and live in `plait.plan.analyze`.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from plait import graph
from plait.errors import Location, PlaitError
from plait.plan.model import MAX_TASK_SECONDS, SIZE_SECONDS, Environment, Plan, Size, format_duration

Severity = Literal["error", "warning"]
Locate = Callable[..., Location]


@dataclass(frozen=True)
class Diagnostic:
    """One problem in a plan: what is wrong, how to fix it, and where."""

    severity: Severity
    message: str
    fix: str
    location: Location

    def __str__(self) -> str:
        text = f"{self.location}: {self.message}"
        return f"{text} — {self.fix}" if self.fix else text


class PlanError(PlaitError):
    """A plan that cannot be used. Carries every error found; `str()` is the first, on one line."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        if not diagnostics:
            raise ValueError("PlanError needs at least one diagnostic")
        self.diagnostics = tuple(diagnostics)
        first = self.diagnostics[0]
        super().__init__(first.message, first.fix, first.location)

    def lines(self) -> list[str]:
        return [str(d) for d in self.diagnostics]


def error(message: str, fix: str, location: Location) -> Diagnostic:
    return Diagnostic("error", message, fix, location)


def warning(message: str, fix: str, location: Location) -> Diagnostic:
    return Diagnostic("warning", message, fix, location)


# difflib compares a word with each choice in quadratic time: over 10,000 task ids one suggestion took a
# second. Past this many choices there is no suggestion, and a plan gets at most MAX_SUGGESTIONS of each kind.
MAX_SUGGESTION_CHOICES = 500
MAX_SUGGESTIONS = 10


def did_you_mean(word: str, choices: Sequence[str], otherwise: str) -> str:
    if len(choices) > MAX_SUGGESTION_CHOICES:
        return otherwise
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else otherwise


def _one_of(choices: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(choices[:limit])
    return shown + (", …" if len(choices) > limit else "")


def validate(plan: Plan, locate: Locate) -> list[Diagnostic]:
    """Every semantic error and warning in `plan`; `locate(*keys)` maps a document path to a place."""
    found: list[Diagnostic] = []
    found += _text(plan, locate)
    found += _ids_and_needs(plan, locate)
    found += _cycles(plan, locate)
    found += _sizes(plan, locate)
    found += _paths(plan, locate)
    found += _contracts_and_checks(plan, locate)
    found += _environments(plan, locate)
    found += _risks(plan, locate)
    return found


def _text(plan: Plan, locate: Locate) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    if not plan.name.strip():
        out.append(error("the plan's `name` is empty", "give it a short name, e.g. `name: user-auth`",
                         locate("name")))
    for i, t in enumerate(plan.tasks):
        if not t.title.strip():
            out.append(error(f"task '{t.id}' has an empty title", "give it a short title saying what it "
                             "builds", locate("tasks", i, "title")))
        if not t.prompt.strip():
            out.append(error(f"task '{t.id}' has an empty prompt", "write in `prompt:` what the agent "
                             "should do", locate("tasks", i, "prompt")))
    return out


def _ids_and_needs(plan: Plan, locate: Locate) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    ids = [t.id for t in plan.tasks]
    first_index: dict[str, int] = {}
    for i, t in enumerate(plan.tasks):
        if t.id in first_index:
            out.append(error(f"duplicate task id '{t.id}' (also tasks[{first_index[t.id]}])",
                             "give every task a unique id", locate("tasks", i, "id")))
        else:
            first_index[t.id] = i
    suggestions = MAX_SUGGESTIONS
    for i, t in enumerate(plan.tasks):
        for j, dep in enumerate(t.needs):
            if dep == t.id:
                out.append(error(f"task '{t.id}' needs itself", f"remove '{dep}' from its `needs`",
                                 locate("tasks", i, "needs", j)))
            elif dep not in first_index:
                fix = f"use one of: {_one_of([x for x in ids[:10] if x != t.id])}"
                if suggestions:
                    suggestions -= 1
                    fix = did_you_mean(dep, [x for x in ids if x != t.id], fix)
                out.append(error(f"task '{t.id}' needs '{dep}', which is not a task in this plan", fix,
                                 locate("tasks", i, "needs", j)))
        if len(set(t.needs)) == len(t.needs):
            continue
        for dep, count in Counter(t.needs).items():
            if count > 1:
                out.append(warning(f"task '{t.id}' lists '{dep}' {count} times in `needs`",
                                   "list each dependency once", locate("tasks", i, "needs")))
    return out


def _cycles(plan: Plan, locate: Locate) -> list[Diagnostic]:
    """Name every independent cycle (up to a few): break one edge of each found and look again."""
    index = {t.id: i for i, t in reversed(list(enumerate(plan.tasks)))}
    needs: dict[str, list[str]] = {}
    for t in plan.tasks:
        needs.setdefault(t.id, [d for d in dict.fromkeys(t.needs) if d != t.id])
    out: list[Diagnostic] = []
    for _ in range(10):
        cycle = graph.find_cycle(needs)
        if cycle is None:
            break
        first = cycle[0]
        out.append(error(f"dependency cycle: {' -> '.join(cycle)}", "remove one of these `needs` (e.g. "
                         f"'{cycle[1]}' from '{first}') so the tasks form a chain",
                         locate("tasks", index[first], "needs")))
        needs[first] = [d for d in needs[first] if d != cycle[1]]
    return out


def _sizes(plan: Plan, locate: Locate) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    split = (f"split it into tasks of at most L ({format_duration(SIZE_SECONDS[Size.L])}) each, "
             "connected by `needs`")
    for i, t in enumerate(plan.tasks):
        if t.size is Size.XL:
            out.append(error(f"task '{t.id}' is size XL, too big for one agent", split,
                             locate("tasks", i, "size")))
        elif t.estimate is not None and t.estimate > MAX_TASK_SECONDS:
            out.append(error(f"task '{t.id}' is estimated at {format_duration(t.estimate)}, over the "
                             f"{format_duration(MAX_TASK_SECONDS)} limit for one agent", split,
                             locate("tasks", i, "estimate")))
    return out


_DRIVE = re.compile(r"^[A-Za-z]:")


def path_problem(path: str) -> tuple[str, str] | None:
    """Why a declared repository path is unusable, and the fix; None when it is fine."""
    if not path.strip():
        return "is empty", "write a path relative to the repository root, e.g. `src/app.py`"
    if "\\" in path:
        return "uses backslashes", f"use forward slashes: `{path.replace(chr(92), '/')}`"
    if path.startswith("/") or _DRIVE.match(path):
        relative = _DRIVE.sub("", path).lstrip("/")
        return "is an absolute path", f"write it relative to the repository root, e.g. `{relative}`"
    if ".." in path.split("/"):
        return "goes outside the repository (`..`)", "write it relative to the repository root, without `..`"
    return None


def _paths(plan: Plan, locate: Locate) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for i, t in enumerate(plan.tasks):
        for key, paths in (("files", t.files), ("reads", t.reads)):
            for j, f in enumerate(paths):
                if problem := path_problem(f):
                    out.append(error(f"task '{t.id}': file '{f}' {problem[0]}", problem[1],
                                     locate("tasks", i, key, j)))
    for i, c in enumerate(plan.contracts):
        if problem := path_problem(c.path):
            out.append(error(f"contract path '{c.path}' {problem[0]}", problem[1],
                             locate("contracts", i, "path")))
    return out


def environment_problems(env: Environment) -> list[tuple[tuple[str | int, ...], str, str]]:
    """What is wrong with one layer of environment settings: (keys below the layer, problem, fix)."""
    out: list[tuple[tuple[str | int, ...], str, str]] = []
    paths: dict[str, tuple[str | int, ...]] = {}

    def claim(path: str, keys: tuple[str | int, ...]) -> None:
        if problem := path_problem(path):
            out.append((keys, f"'{path}' {problem[0]}", problem[1]))
        elif path.strip("/") in ("", ".") or path.split("/")[0] in (".git", ".plait"):
            out.append((keys, f"'{path}' is not a file the workspace may be given", "name a file or folder "
                        "inside the repository, outside .git and .plait"))
        elif path.strip("/") in paths:
            out.append((keys, f"'{path}' is listed twice", "keep one entry per path"))
        paths[path.strip("/")] = keys

    for i, f in enumerate(env.copy_files or []):
        claim(f, ("copy", i))
    for i, c in enumerate(env.cache or []):
        claim(c.path, ("cache", i, "path"))
        for j, k in enumerate(c.key):
            if problem := path_problem(k):
                out.append((("cache", i, "key", j), f"key file '{k}' {problem[0]}", problem[1]))
    names = [n.upper() for n in env.ports or []]
    for i, n in enumerate(names):
        if n in names[:i]:
            out.append((("ports", i), f"port '{(env.ports or [])[i]}' is listed twice (names ignore case)",
                        "give each port one name"))
    return out


def _environments(plan: Plan, locate: Locate) -> list[Diagnostic]:
    out = [error(f"defaults: {message}", fix, locate("defaults", *keys))
           for keys, message, fix in environment_problems(plan.defaults)]
    for i, t in enumerate(plan.tasks):
        out += [error(f"task '{t.id}': {message}", fix, locate("tasks", i, *keys))
                for keys, message, fix in environment_problems(t)]
    return out


def _contracts_and_checks(plan: Plan, locate: Locate) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    ids = [t.id for t in plan.tasks]
    known, suggestions = set(ids), MAX_SUGGESTIONS
    for i, c in enumerate(plan.contracts):
        if c.owner not in known:
            fix = f"set `owner:` to one of: {_one_of(ids)}"
            if suggestions:
                suggestions -= 1
                fix = did_you_mean(c.owner, ids, fix)
            out.append(error(f"contract '{c.path}' is owned by '{c.owner}', which is not a task in this plan",
                             fix, locate("contracts", i, "owner")))
    seen: dict[tuple[str | None, str | None, str | None], int] = {}
    for i, check in enumerate(plan.preflight):
        key = (check.run, check.env, check.tool)
        if key in seen:
            out.append(error(f"preflight check '{check.label}' is listed twice (also preflight[{seen[key]}])",
                             "remove the repeated check", locate("preflight", i)))
        else:
            seen[key] = i
    return out


def _risks(plan: Plan, locate: Locate) -> list[Diagnostic]:
    """Valid but risky plans. The same risk in more than a few tasks is one line that names them."""
    out: list[Diagnostic] = []
    needed = {d for t in plan.tasks for d in t.needs}
    index = {t.id: i for i, t in reversed(list(enumerate(plan.tasks)))}
    unverified = [t.id for t in plan.tasks if plan.verify_for(t) is None]
    if len(plan.tasks) > 1 and len(unverified) == len(plan.tasks):
        out.append(warning("no task has a verify command, so only the agents' word says the work is done",
                           "set `defaults.verify: <test command>` or give tasks a `verify:`",
                           locate("tasks")))
        unverified = []
    risks = [
        (unverified, "has no verify command, so only the agent's word says it works",
         "have no verify command, so only the agents' word says they work",
         "add `verify: <command that proves it>` or set `defaults.verify`"),
        ([t.id for t in plan.tasks if not t.files], "declares no files, so overlaps and deviations cannot be "
         "checked", "declare no files, so overlaps and deviations cannot be checked",
         "list the paths or globs each will change under `files:`"),
        ([t.id for t in plan.tasks if plan.agent_for(t) == "script" and t.script is None and not t.allow_empty],
         "runs the built-in `script` agent with no `script:`, so it will change nothing and fail",
         "run the built-in `script` agent with no `script:`, so they will change nothing and fail",
         "name an agent profile (`agent:` or `defaults.agent`), give them `script:` edits, or set "
         "`allow_empty: true` for a check-only task"),
        ([t.id for t in plan.tasks if t.gate and t.id not in needed], "is a gate with no dependents, so nothing "
         "waits for it", "are gates with no dependents, so nothing waits for them",
         "make the tasks that follow them `needs` them, or drop `gate: true`"),
    ]
    for ids, one, many, fix in risks:
        if len(ids) > 3:
            named = ", ".join(f"'{i}'" for i in ids[:5]) + (", …" if len(ids) > 5 else "")
            out.append(warning(f"{len(ids)} tasks ({named}) {many}", fix, locate("tasks", index[ids[0]])))
        else:
            out += [warning(f"task '{i}' {one}", fix, locate("tasks", index[i])) for i in ids]
    return out


# --- schema errors: pydantic's error records -> plain English with a fix ------------------------------

_MAPPING = "a mapping (indented `key: value` lines)"
_EXPECTED = {"string_type": "text", "list_type": "a list", "model_type": _MAPPING, "dict_type": _MAPPING,
             "bool_type": "true or false", "bool_parsing": "true or false", "int_type": "a whole number",
             "int_parsing": "a whole number", "int_from_float": "a whole number", "float_type": "a number",
             "float_parsing": "a number"}
_MISSING = {"id": "a unique id, e.g. `id: api-login`", "title": "`title: <what it builds>`",
            "prompt": "`prompt: <what the agent should do>`", "name": "`name: <plan name>`",
            "tasks": "a `tasks:` list", "path": "`path: <repo-relative path>`", "owner": "`owner: <task id>`"}
# Words people reach for, by the key plait uses; used before fuzzy matching.
_SYNONYMS = {"needs": ("depends", "depends_on", "dependencies", "deps", "requires", "after", "blocked_by"),
             "prompt": ("description", "desc", "instructions", "details", "body"),
             "files": ("paths", "scope", "file"), "acceptance": ("acceptance_criteria", "criteria"),
             "size": ("complexity",), "estimate": ("duration", "time", "hours", "eta"),
             "verify": ("test", "tests", "check", "command", "cmd"), "run": ("command", "cmd", "shell"),
             "title": ("name", "summary"), "plait": ("version",), "tasks": ("steps", "jobs")}
_DURATIONS = ("estimate", "timeout", "delay")
_BOUNDS = {"less_than_equal": ("of at most", "le"), "greater_than_equal": ("of at least", "ge"),
           "less_than": ("below", "lt"), "greater_than": ("above", "gt")}


def where(loc: Sequence[str | int]) -> str:
    """`("tasks", 2, "files", 0)` -> `tasks[2].files[0]`; the root is `the plan`."""
    text = ""
    for key in loc:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else str(key))
    return text or "the plan"


def kind(value: object) -> str:
    """A value's YAML kind in plain words, for messages."""
    if value is None:
        return "nothing"
    names = ((bool, "true/false"), (int | float, "a number"), (str, "text"), (list | tuple | set, "a list"),
             (dict, "a mapping"))
    return next((name for t, name in names if isinstance(value, t)), f"a {type(value).__name__}")


def shown(value: object) -> str:
    """A value as the user wrote it when it is a scalar (`'soon'`, `7`, `true`), else its kind."""
    if isinstance(value, bool):
        return str(value).lower()
    text = repr(value) if isinstance(value, str) else str(value) if isinstance(value, int | float) else ""
    return (text if len(text) <= 40 else text[:37] + "...") if text else kind(value)


def schema_diagnostic(err: Mapping[str, Any]) -> tuple[str, str]:
    """(message, fix) for one pydantic error record, in the words of the plan file."""
    loc: tuple[str | int, ...] = tuple(err["loc"])
    type_, value, last = err["type"], err.get("input"), loc[-1] if loc else ""
    here, scalar = where(loc), isinstance(value, str | int | float)
    if type_ == "missing":
        example = _MISSING.get(str(last), f"`{last}:`")
        return f"{where(loc[:-1])}: missing required key `{last}`", f"add {example}"
    if type_ == "extra_forbidden":
        return f"{where(loc[:-1])}: unknown key '{last}'", _suggest_key(str(last), loc[:-1])
    if type_ == "invalid_key":
        return f"{where(loc[:-1])}: key {shown(value)} is not text", "write keys as plain words, e.g. `name:`"
    if last in _DURATIONS and type_ == "value_error":
        negative = "negative" in err["msg"]
        problem = "a duration cannot be negative" if negative else f"{shown(value)} is not a duration"
        return f"{here}: {problem}", "write e.g. 30s, 90m, 1.5h or 2h30m (a bare number means minutes)"
    if type_ == "string_pattern_mismatch" and last == "id":
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(value)).strip("-_.") or "task-1"
        return (f"{here}: {shown(value)} is not a valid task id", "use letters, digits, '.', '_' and '-', "
                f"starting and ending with a letter or digit, e.g. `{slug}`")
    if type_ == "string_too_long":
        return f"{here}: too long ({len(str(value))} characters)", "shorten it to 64 characters or fewer"
    if type_ == "too_short" and loc == ("tasks",):
        return "the plan has no tasks", "add at least one task under `tasks:`"
    if type_ == "enum" and last == "size":
        return f"{here}: unknown size {shown(value)}", "use S (~1h), M (~2h) or L (~4h); split larger work"
    if type_ == "value_error" and len(loc) == 2 and loc[0] == "preflight":
        return (f"{here}: a preflight check needs exactly one of `run`, `env`, `tool`",
                "give each check one of `run:`, `env:` or `tool:` (one check per condition)")
    if type_ in _BOUNDS:
        phrase, bound = _BOUNDS[type_]
        limit = (err.get("ctx") or {}).get(bound)
        return f"{here}: {shown(value)} is out of range", f"use a number {phrase} {limit}"
    if type_ in _EXPECTED:
        got = f"{kind(value)} {shown(value)}" if scalar and not isinstance(value, bool) else shown(value)
        return f"{here}: expected {_EXPECTED[type_]}, got {got}", _type_fix(type_, value, last)
    text = str(err["msg"]).removeprefix("Value error, ")
    return f"{here}: {text[:1].lower()}{text[1:]} (got {shown(value)})", "see `plait schema` for the format"


def _type_fix(type_: str, value: object, last: str | int) -> str:
    if value is None:
        return f"give `{last}` a value, or remove it"
    scalar = isinstance(value, str | int | float)
    if type_ == "string_type":
        return (f'quote it so YAML reads it as text: "{shown(value)}"' if scalar else
                "write plain text, quoted if it starts with `[` or `{` or contains `: `")
    if type_ == "list_type":
        if not scalar:
            return "write one `- item` per line"
        item = value if isinstance(value, str) else shown(value)
        return f"write a list: `[{item}]`, or one `- item` per line"
    if type_ in ("model_type", "dict_type"):
        return f"write `{last}:` followed by indented `key: value` lines"
    return f"write {_EXPECTED[type_]}"


def _fields_at(loc: Sequence[str | int]) -> tuple[str, ...]:
    """The keys the model accepts at `loc` (a mapping in the document), () if unknown."""
    current: Any = Plan
    for key in loc:
        if isinstance(current, type) and issubclass(current, BaseModel) and isinstance(key, str):
            info = current.model_fields.get(key)
            current = _unwrap(info.annotation) if info else None
        elif get_origin(current) is list and isinstance(key, int):
            current = _unwrap(get_args(current)[0])
        else:
            return ()
    return tuple(current.model_fields) if isinstance(current, type) and issubclass(current, BaseModel) else ()


def _unwrap(tp: Any) -> Any:
    if get_origin(tp) in (Union, UnionType):
        rest = [a for a in get_args(tp) if a is not type(None)]
        return _unwrap(rest[0]) if len(rest) == 1 else tp
    return tp


def _suggest_key(key: str, loc: Sequence[str | int]) -> str:
    fields = _fields_at(loc)
    for target, words in _SYNONYMS.items():
        if target in fields and key.lower() in words:
            return f"did you mean '{target}'?"
    return did_you_mean(key.lower(), fields, f"remove it; the keys allowed here are: {', '.join(fields)}"
                        if fields else "remove it")
