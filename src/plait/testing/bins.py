"""Where scripts/install-agent-clis put the real agent CLIs (the project cache, .cache/agents/)."""

from __future__ import annotations

import os
from pathlib import Path

# CLI name -> path of its executable inside the cache directory.
_CACHED = {
    "claude": "npm/node_modules/.bin/claude",
    "codex": "npm/node_modules/.bin/codex",
    "gemini": "npm/node_modules/.bin/gemini",
    "opencode": "npm/node_modules/.bin/opencode",
    "aider": "aider-venv/bin/aider",
}


def agent_cache_dir(start: Path | None = None) -> Path | None:
    """The `.cache/agents` folder of the checkout (or $PLAIT_AGENT_CACHE when set)."""
    override = os.environ.get("PLAIT_AGENT_CACHE")
    if override:
        return Path(override)
    here = (start or Path(__file__)).resolve()
    for folder in (here, *here.parents):
        candidate = folder / ".cache" / "agents"
        if candidate.is_dir():
            return candidate
    return None


def agent_bin(name: str, start: Path | None = None) -> Path | None:
    """The installed binary of an agent CLI (`claude`, `codex`, `gemini`, `opencode`, `aider`), or None."""
    cache = agent_cache_dir(start)
    relative = _CACHED.get(name)
    if cache is None or relative is None:
        return None
    path = cache / relative
    return path if path.is_file() and os.access(path, os.X_OK) else None
