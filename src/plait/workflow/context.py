"""What a role agent is told about the repository, and the `[workflow]` settings that choose it.

    [workflow]                      # plait.toml (or [tool.plait.workflow] in pyproject.toml)
    context = ["docs/constitutions/current/", "ARCHITECTURE.md", "docs/ARCHITECTURE.md", "CLAUDE.md", "AGENTS.md"]
    context_bytes = 48000           # of those documents, at most this much goes into a prompt
    map_files = 400                 # files listed in the repository map
    timeout = "30m"                 # per agent run, unless the profile sets its own

    [workflow.roles]                # which agent profile plays which role
    spec-writer = "opus"
    planner = "claude"
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from plait.agents.base import Profile
from plait.errors import Location, PlaitError
from plait.git.repo import Git
from plait.plan.model import parse_duration
from plait.text import clip

DEFAULT_CONTEXT = ("docs/constitutions/current/", "ARCHITECTURE.md", "docs/ARCHITECTURE.md", "CLAUDE.md",
                   "AGENTS.md")
DEFAULT_PROFILE = "claude"
DOC_SUFFIXES = (".md", ".markdown", ".txt", ".rst")


@dataclass(frozen=True)
class Settings:
    context: tuple[str, ...] = DEFAULT_CONTEXT
    context_bytes: int = 48_000
    map_files: int = 400
    timeout: float = 1800.0
    roles: Mapping[str, str] = field(default_factory=dict)  # role -> profile name


def settings(repo_root: Path) -> Settings:
    """The repository's `[workflow]` settings over the defaults."""
    source, table = _workflow_table(repo_root)
    where = Location(str(source))
    known = {"context", "context_bytes", "map_files", "timeout", "roles"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise PlaitError(f"[workflow] {unknown[0]}: unknown key", f"use one of {', '.join(sorted(known))}", where)
    out = Settings()
    try:
        if "context" in table:
            out = replace(out, context=tuple(_strings(table["context"])))
        if "context_bytes" in table:
            out = replace(out, context_bytes=_count(table, "context_bytes"))
        if "map_files" in table:
            out = replace(out, map_files=_count(table, "map_files"))
        if "timeout" in table:
            out = replace(out, timeout=parse_duration(table["timeout"]))
        roles = table.get("roles", {})
        if not isinstance(roles, dict) or not all(isinstance(v, str) and v for v in roles.values()):
            raise ValueError('roles: write one profile name per role, e.g. planner = "claude"')
        out = replace(out, roles=dict(roles))
    except (TypeError, ValueError) as exc:
        raise PlaitError(f"[workflow] {exc}", "see docs/workflow.md for the settings", where) from None
    return out


def _count(table: Mapping[str, Any], key: str) -> int:
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key}: {value!r} is not a whole number of at least 0")
    return value


def _strings(value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise TypeError("context: must be a list of paths (files or folders ending in /)")
    return value


def _workflow_table(repo_root: Path) -> tuple[Path, dict[str, Any]]:
    plait_toml, pyproject = repo_root / "plait.toml", repo_root / "pyproject.toml"
    if plait_toml.is_file():
        section: object = _parse(plait_toml).get("workflow", {})
        source = plait_toml
    elif pyproject.is_file():
        tool = _parse(pyproject).get("tool", {}).get("plait", {})
        section, source = (tool.get("workflow", {}) if isinstance(tool, dict) else {}), pyproject
    else:
        return plait_toml, {}
    if not isinstance(section, dict):
        raise PlaitError("[workflow] must be a table", "write a [workflow] table (see docs/workflow.md)",
                         Location(str(source)))
    return source, section


def _parse(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as exc:
        raise PlaitError(f"cannot read it: {exc}", "fix the file", Location(str(path))) from None


def choose_profile(repo_root: Path, role: str, given: str | None, conf: Settings) -> Profile:
    """`--agent`, else `[workflow.roles]`, else a profile named after the role, else claude."""
    from plait.profiles import load_profiles

    profiles = load_profiles(repo_root)
    name = given or conf.roles.get(role) or (role if role in profiles else DEFAULT_PROFILE)
    if name not in profiles:
        raise PlaitError(f"unknown agent profile {name!r} for the {role} role",
                         f"define [profiles.{name}] in plait.toml or use one of {', '.join(sorted(profiles))}")
    return profiles[name]


def documents(repo_root: Path, conf: Settings) -> list[tuple[str, str]]:
    """(path, text) of the constitution and architecture documents that exist, within `context_bytes`
    in all; a document that does not fit is cut, and those after it are left out with a note."""
    root = repo_root.resolve()
    found: list[Path] = []
    for entry in conf.context:
        path = (repo_root / entry).resolve()
        if not path.is_relative_to(root):
            continue  # a setting or symlink pointing outside the repository: not the repository's document
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in DOC_SUFFIXES
                            and p.resolve().is_relative_to(root))
        elif path.is_file():
            found.append(path)
    budget, out = conf.context_bytes, []
    for i, path in enumerate(dict.fromkeys(found)):
        rel = path.relative_to(root).as_posix()
        if budget <= 200:
            out.append(("…", f"{len(found) - i} more document(s) left out: over [workflow] context_bytes"))
            break
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        text = clip(text, budget, f"the rest is in {rel}")
        budget -= len(text)
        out.append((rel, text))
    return out


def repository_map(git: Git, base: str, limit: int) -> str:
    """The files of `base` (what the agent's workspace holds), one per line with its size in bytes."""
    out = git.run("ls-tree", "-r", "-l", "-z", base)
    rows = []
    for record in out.split("\0"):
        if "\t" in record:
            meta, path = record.split("\t", 1)
            rows.append(f"{path} {meta.split()[3]}")
    more = f"\n… and {len(rows) - limit} more files" if len(rows) > limit else ""
    return "\n".join(rows[:limit]) + more


def context_sections(repo_root: Path, git: Git, base: str, conf: Settings) -> str:
    """The prompt's sections about the repository: its documents, then its map."""
    parts = []
    docs = documents(repo_root, conf)
    if docs:
        parts.append("## The repository's constitution and architecture documents (follow them)\n")
        parts += [f"### {rel}\n\n{text.strip()}\n" for rel, text in docs]
    parts.append(f"## Repository map (tracked files at {base[:12]}, with sizes in bytes)\n\n"
                 f"{repository_map(git, base, conf.map_files)}\n")
    return "\n".join(parts)
