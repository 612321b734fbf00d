"""Which adapter class runs a profile: `profile.adapter` -> a factory making an Agent.

The real CLIs register here; the built-in `script` and `shell` agents are registered by name
too (see `register`), so the engine has one place to ask.
"""

from __future__ import annotations

from collections.abc import Callable

from plait.agents.base import Agent, Profile
from plait.errors import PlaitError

AgentFactory = Callable[[Profile], Agent]
_FACTORIES: dict[str, AgentFactory] = {}


def register(name: str, factory: AgentFactory) -> None:
    """Make `adapter = "<name>"` in a profile run agents made by `factory`."""
    _FACTORIES[name] = factory


def adapters() -> list[str]:
    return sorted(_FACTORIES)


def make_agent(profile: Profile) -> Agent:
    factory = _FACTORIES.get(profile.adapter)
    if factory is None:
        raise PlaitError(f"profile {profile.name}: unknown adapter {profile.adapter!r}",
                         f"use one of {', '.join(adapters())}")
    return factory(profile)


def _register_builtins() -> None:
    from plait.agents.claude import ClaudeAgent
    from plait.agents.codex import CodexAgent
    from plait.agents.gemini import GeminiAgent

    register("claude", lambda _profile: ClaudeAgent())
    register("codex", lambda _profile: CodexAgent())
    register("gemini", lambda _profile: GeminiAgent())
    # The deterministic agents: `script` (a task's declared edits) and `shell` (a command template).
    from plait.agents.script import ScriptAgent, ShellAgent

    register("script", lambda _profile: ScriptAgent())
    register("shell", lambda _profile: ShellAgent())


_register_builtins()
