"""Which CLI an adapter runs, and which version it is.

Only what is configured counts: the profile's `binary`, the agent's PATH, or the cache directory
named by $PLAIT_AGENT_CACHE (where scripts/install-agent-clis puts the pinned CLIs). No folder is
found by searching: a run must never pick up some development copy lying around.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Mapping
from pathlib import Path

from plait import proc
from plait.agents.base import AgentRequest, AgentResult, ErrorKind

log = logging.getLogger("plait.agents")

CACHE_ENV = "PLAIT_AGENT_CACHE"
# CLI name -> its executable inside the cache directory (the layout scripts/install-agent-clis makes).
CACHE_LAYOUT = {
    "claude": "npm/node_modules/.bin/claude",
    "codex": "npm/node_modules/.bin/codex",
    "gemini": "npm/node_modules/.bin/gemini",
    "opencode": "npm/node_modules/.bin/opencode",
    "aider": "aider-venv/bin/aider",
}


def cached(name: str, cache: Path) -> Path | None:
    """The executable of CLI `name` in the cache directory `cache`, or None."""
    relative = CACHE_LAYOUT.get(name)
    if relative is None:
        return None
    path = cache / relative
    return path if path.is_file() and os.access(path, os.X_OK) else None


def find_binary(request: AgentRequest, default: str) -> str | None:
    """The profile's `binary`, else `default` on the agent's PATH, else in $PLAIT_AGENT_CACHE."""
    if request.profile.binary:
        given = request.profile.binary
        if "/" in given:
            return given if os.path.isfile(given) and os.access(given, os.X_OK) else None
        return shutil.which(given, path=request.env.get("PATH"))
    found = shutil.which(default, path=request.env.get("PATH"))
    if found:
        return found
    cache = os.environ.get(CACHE_ENV)
    in_cache = cached(default, Path(cache)) if cache else None
    return str(in_cache) if in_cache else None


def missing_binary(request: AgentRequest, default: str) -> AgentResult:
    name = request.profile.binary or default
    return AgentResult(False, None, error_kind=ErrorKind.UNKNOWN,
                       error_message=f"{name} not found on PATH: install it, set `binary` in profile "
                       f"{request.profile.name}, or point ${CACHE_ENV} at the folder scripts/install-agent-clis "
                       "installs into")


_versions: dict[str, str | None] = {}
_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()


def version(binary: str, env: Mapping[str, str]) -> str | None:
    """What `<binary> --version` prints (its first line naming a version), asked once per process."""
    with _guard:
        lock = _locks.setdefault(binary, threading.Lock())
    with lock:
        if binary not in _versions:
            _versions[binary] = _ask_version(binary, env)
        return _versions[binary]


def _ask_version(binary: str, env: Mapping[str, str]) -> str | None:
    try:
        done = proc.run([binary, "--version"], env=env, timeout=30)
    except OSError as exc:
        log.info("%s --version: %s", binary, exc)
        return None
    if not done.ok:
        return None
    lines = [line.strip() for line in done.stdout.splitlines() if any(c.isdigit() for c in line)]
    return lines[0][:120] if lines else None
