"""Where scripts/install-agent-clis put the real agent CLIs, for tests (the checkout's .cache/agents/).

Tests only: a run finds a CLI through its profile, PATH or $PLAIT_AGENT_CACHE (plait.agents.binaries),
never by searching folders as `agent_cache_dir` does here.
"""

from __future__ import annotations

import os
from pathlib import Path

from plait.agents.binaries import CACHE_ENV, cached


def agent_cache_dir(start: Path | None = None) -> Path | None:
    """$PLAIT_AGENT_CACHE when set, else the `.cache/agents` folder of the checkout."""
    override = os.environ.get(CACHE_ENV)
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
    return cached(name, cache) if cache is not None else None
