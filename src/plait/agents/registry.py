"""Which adapter runs a profile: `profile.adapter` -> a factory that makes the Agent.

Every adapter is registered here by name, the real CLIs and the built-in deterministic ones
alike, so the engine has one place to ask. `register` adds or replaces one (tests use it for fakes).
"""

from __future__ import annotations

from collections.abc import Callable

from plait.agents.aider import AiderAgent
from plait.agents.base import Agent, Profile
from plait.agents.claude import ClaudeAgent
from plait.agents.codex import CodexAgent
from plait.agents.cursor import CursorAgent
from plait.agents.gemini import GeminiAgent
from plait.agents.opencode import OpenCodeAgent
from plait.agents.script import ScriptAgent, ShellAgent
from plait.errors import PlaitError

AgentFactory = Callable[[Profile], Agent]

_FACTORIES: dict[str, AgentFactory] = {
    # The deterministic agents: `script` applies a task's declared edits, `shell` runs a command template.
    "script": lambda _profile: ScriptAgent(),
    "shell": lambda _profile: ShellAgent(),
    # Real coding-agent CLIs (docs/agents.md).
    "claude": lambda _profile: ClaudeAgent(),
    "codex": lambda _profile: CodexAgent(),
    "gemini": lambda _profile: GeminiAgent(),
    "opencode": lambda _profile: OpenCodeAgent(),
    "aider": lambda _profile: AiderAgent(),
    "cursor": lambda _profile: CursorAgent(),
}


def register(name: str, factory: AgentFactory) -> None:
    """Make profiles with `adapter = "<name>"` run agents made by `factory`."""
    _FACTORIES[name] = factory


def adapters() -> list[str]:
    return sorted(_FACTORIES)


def make_agent(profile: Profile) -> Agent:
    factory = _FACTORIES.get(profile.adapter)
    if factory is None:
        raise PlaitError(f"profile {profile.name}: unknown adapter {profile.adapter!r}",
                         f"use one of {', '.join(adapters())}")
    return factory(profile)
