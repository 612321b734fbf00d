"""Limits that turn an absurd plan into one clear error before it is parsed, checked or analyzed.

Plans come from other tools and agents, so a plan file can be anything. Each limit is far beyond any plan
a person or a planner writes, and every step after these checks is near-linear in the plan's size:

- the plan file: 4 MiB (PyYAML reads about 0.2 MB/s here, so this is already seconds);
- tasks: 10,000;
- items in any one list or mapping (`files`, `needs`, `acceptance`…): 10,000;
- `files` entries in all (every task's, and contract paths): 100,000;
- one `files` entry or contract path: 4,096 characters (the longest path Linux accepts);
- any other text (a prompt…): 1,000,000 characters;
- nesting: 32 levels (a plan has 6 at most);
- values in all, counting every use of a YAML alias: 1,000,000 (a kilobyte of aliases and merge keys
  `<<` can stand for millions).

`check_text` runs on the raw text, `check_yaml` on PyYAML's node tree before the data is built from it,
`check_data` on the plan data of any format. Each error is one line: where, which limit, how to fix it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import yaml

from plait.errors import Location
from plait.plan.validate import Diagnostic, PlanError, error, where

MAX_PLAN_BYTES = 4 * 1024 * 1024
MAX_TASKS = 10_000
MAX_ITEMS = 10_000
MAX_FILE_ENTRIES = 100_000
MAX_PATH_CHARS = 4096
MAX_TEXT_CHARS = 1_000_000
MAX_DEPTH = 32
MAX_VALUES = 1_000_000

Locate = Callable[..., Location]
_SPLIT = "split it into several plans and run them one after another"
_GLOBS = "declare directories or globs (`src/api/`, `src/**/*.py`) instead of every file"
_ALIASES = "use fewer YAML aliases (`*name`) and merge keys (`<<`), or write the values out"


def check_text(text: str, source: str) -> None:
    """Refuse a plan file over MAX_PLAN_BYTES before parsing it."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_PLAN_BYTES:
        raise PlanError([error(f"the plan file is {size / 2**20:.1f} MiB, over the limit of "
                               f"{MAX_PLAN_BYTES / 2**20:g} MiB", _SPLIT, Location(source))])


def check_yaml(root: yaml.Node, source: str) -> None:
    """Refuse a YAML node tree whose data would be huge: too many items in one collection, or too many
    values once every alias is followed (what PyYAML's merge keys copy)."""
    seen, stack = 0, [root]
    while stack:
        node = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise PlanError([error(f"the plan expands to more than {MAX_VALUES:,} values", _ALIASES,
                                   _at(node, source))])
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            if len(node.value) > MAX_ITEMS:
                raise PlanError([_too_many(len(node.value), "", "", _at(node, source))])
            for item in node.value:
                stack.extend(item if isinstance(item, tuple) else (item,))


def _at(node: yaml.Node, source: str) -> Location:
    return Location(source, node.start_mark.line + 1, node.start_mark.column + 1)


def check_data(data: dict[str, Any], locate: Locate) -> list[Diagnostic]:
    """The limits plan data (from any format) breaks, each where it is first broken; `locate(*keys)`
    maps a document path to a place."""
    tasks = data.get("tasks")
    if isinstance(tasks, list) and len(tasks) > MAX_TASKS:
        return [error(f"the plan has {len(tasks):,} tasks, over the limit of {MAX_TASKS:,}", _SPLIT,
                      locate("tasks"))]
    found: dict[str, Diagnostic] = {}  # limit -> its first breach
    total = _file_entries(data)
    if total > MAX_FILE_ENTRIES:
        found["files"] = error(f"the plan declares {total:,} files in all, over the limit of "
                               f"{MAX_FILE_ENTRIES:,}", f"{_GLOBS}, or {_SPLIT}", locate("tasks"))
    for limit, diagnostic in _breaches(data, locate):
        found.setdefault(limit, diagnostic)
    return list(found.values())


def _breaches(data: dict[str, Any], locate: Locate) -> Iterator[tuple[str, Diagnostic]]:
    """Depth first in document order, following shared values (YAML aliases) each time they are used."""
    seen = 0
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(data, ())]
    while stack:
        value, keys = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            yield "values", error(f"the plan expands to more than {MAX_VALUES:,} values", _ALIASES, locate())
            return
        if len(keys) > MAX_DEPTH:
            yield "depth", error(f"{where(keys)}: nested {len(keys)} levels deep, over the limit of {MAX_DEPTH}",
                                 "a plan is a few levels deep: flatten it", locate(*keys))
        elif isinstance(value, str):
            limit = MAX_PATH_CHARS if _is_path(keys) else MAX_TEXT_CHARS
            if len(value) > limit:
                yield "text", error(f"{where(keys)}: {len(value):,} characters, over the limit of {limit:,}",
                                    "write a repository path or glob" if limit == MAX_PATH_CHARS else
                                    "shorten it: an agent's prompt is a few pages at most", locate(*keys))
        elif isinstance(value, dict | list):
            if len(value) > MAX_ITEMS:
                yield "items", _too_many(len(value), where(keys), _GLOBS if keys[-1:] == ("files",) else "",
                                         locate(*keys))
            items = list(value.items() if isinstance(value, dict) else enumerate(value))
            stack.extend((v, (*keys, k)) for k, v in reversed(items))


def _is_path(keys: tuple[str | int, ...]) -> bool:
    return (len(keys) == 4 and keys[0] == "tasks" and keys[2] == "files") or \
        (len(keys) == 3 and keys[0] == "contracts" and keys[2] == "path")


def _file_entries(data: dict[str, Any]) -> int:
    tasks, contracts = data.get("tasks"), data.get("contracts")
    total = len(contracts) if isinstance(contracts, list) else 0
    for task in tasks if isinstance(tasks, list) else ():
        files = task.get("files") if isinstance(task, dict) else None
        total += len(files) if isinstance(files, list) else 0
    return total


def _too_many(count: int, what: str, fix: str, location: Location) -> Diagnostic:
    subject = f"{what}: {count:,} items," if what else f"{count:,} items in one list or mapping,"
    return error(f"{subject} over the limit of {MAX_ITEMS:,}" + (" in one list or mapping" if what else ""),
                 fix or "shorten it, or split the plan", location)
