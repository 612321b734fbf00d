"""The Agent Protocol every adapter implements, and the records it exchanges with the engine.

An adapter turns an AgentRequest (prompt + worktree + limits) into one AgentResult. It never
decides whether the task succeeded overall: the engine captures what changed with git and runs
the task's verify command; the agent's word is only part of the evidence.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from plait.plan.model import Script
from plait.sandbox import Confinement


class ErrorKind(StrEnum):
    AUTH = "auth"
    RATE_LIMIT = "rate_limit"
    OVERLOADED = "overloaded"
    QUOTA = "quota"
    MAX_TURNS = "max_turns"
    CONTEXT_LENGTH = "context_length"
    BUDGET = "budget"
    TIMEOUT = "timeout"
    CRASH = "crash"
    CANCELLED = "cancelled"
    NETWORK = "network"  # the CLI could not reach the provider, or the connection broke mid-stream
    UNKNOWN = "unknown"

    @property
    def transient(self) -> bool:
        """Worth retrying with back-off (rate limits lower the profile's concurrency too)."""
        return self in (ErrorKind.RATE_LIMIT, ErrorKind.OVERLOADED, ErrorKind.NETWORK, ErrorKind.TIMEOUT,
                        ErrorKind.CRASH)


class SandboxMode(StrEnum):
    AUTO = "auto"  # confined where the kernel supports it; a warning where it does not
    LANDLOCK = "landlock"  # confined, or the run refuses to start
    OFF = "off"  # writes not confined (processes still end with their attempt)


class Permission(StrEnum):
    READ_ONLY = "read-only"
    EDIT = "edit"
    FULL = "full"


@dataclass(frozen=True)
class Tokens:
    input: int = 0
    output: int = 0
    cached: int = 0


@dataclass(frozen=True)
class Profile:
    """A named agent configuration (from plait.toml, or a built-in)."""

    name: str
    adapter: str
    model: str | None = None
    extra_args: tuple[str, ...] = ()
    permission: Permission = Permission.EDIT
    env_allow: tuple[str, ...] = ()
    concurrency: int | None = None
    timeout: float | None = None
    # Seconds without new output after which a CLI counts as stuck and is stopped (None: never).
    stall: float | None = 300.0
    max_turns: int | None = None
    max_cost: float | None = None
    command: str | None = None  # the `shell` adapter's command template
    binary: str | None = None  # path or name of the CLI; the adapter's default when None
    sandbox: SandboxMode = SandboxMode.AUTO


@dataclass(frozen=True)
class AgentRequest:
    task_id: str
    prompt: str
    worktree: Path
    log_dir: Path  # the adapter writes its raw stream/stdout/stderr here
    profile: Profile
    timeout: float
    env: Mapping[str, str]  # already filtered by the profile's allow-list
    resume_session: str | None = None
    script: Script | None = None  # the task's deterministic edits (script agent, rehearsals)
    cancel: threading.Event = field(default_factory=threading.Event)
    home: Path | None = None  # the task's private home (CLI config, sessions); None: next to log_dir
    confine: Confinement | None = None  # the sandbox every process of the attempt runs in
    role: str = "software-engineer"  # the role the agent plays: its prompt opens with that role's text


@dataclass(frozen=True)
class AgentResult:
    ok: bool
    exit_code: int | None
    summary: str = ""
    session_id: str | None = None
    cost_usd: float | None = None
    tokens: Tokens = Tokens()
    turns: int | None = None
    files_changed: tuple[str, ...] = ()
    # What the agent tried and was refused, or tried outside its work tree, as its tool events tell.
    blocked: tuple[str, ...] = ()
    error_kind: ErrorKind | None = None
    error_message: str = ""
    duration: float = 0.0
    # Seconds the provider asked to wait before the next try (a retry-after hint the CLI printed).
    retry_after: float | None = None
    binary: str | None = None  # the CLI that ran (its path)
    version: str | None = None  # what `<binary> --version` said


class Agent(Protocol):
    """Runs one attempt of one task in its worktree."""

    name: str

    def run(self, request: AgentRequest) -> AgentResult: ...
