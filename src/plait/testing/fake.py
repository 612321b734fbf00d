"""`FakeAgent`: an Agent with scripted outcomes, and `VirtualClock`, for fast tests of everything the
engine decides — retries, back-off, rate-limit concurrency (AIMD), session resume, budgets, cancel —
without a model, a CLI or real waiting. Git, SQLite and the sandbox stay real.

    fake = FakeAgent({"t1": [rate_limited(retry_after=30), edits({"a.txt": "x\\n"})]})
    api.execute(repo, run_id, make_agent=lambda profile: fake, clock=VirtualClock())

Each task's outcomes are played one per attempt; the last one repeats. `fake.requests` keeps every
AgentRequest it was given (to assert e.g. that a retry resumed the session).

Reviewers and fixers (plait.run.review) are scripted per role, per task, one outcome per run of that role:

    fake = FakeAgent({"t1": [edits({"a.txt": "x\\n"})]},
                     roles={"reviewer": {"t1": [request_changes("a.txt: say hello"), approve()]},
                            "fixer": {"t1": [edits({"a.txt": "hello\\n"})]}})

A role without a script approves (reviewer) or does nothing (fixer); `fake.requests_for("reviewer")`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from plait.agents.base import AgentRequest, AgentResult, ErrorKind, Tokens


@dataclass(frozen=True)
class Outcome:
    """What one attempt of the fake agent does."""

    result: AgentResult
    edits: Mapping[str, str] = field(default_factory=dict)  # path -> content, written before returning
    hang: bool = False  # wait until cancelled or timed out


def edits(files: Mapping[str, str], cost: float | None = None, blocked: Sequence[str] = ()) -> Outcome:
    """Write `files` in the work tree and succeed (optionally reporting a cost and refused tools)."""
    return Outcome(AgentResult(True, 0, f"wrote {', '.join(files)}", cost_usd=cost, tokens=Tokens(100, 10),
                               turns=1, files_changed=tuple(files), blocked=tuple(blocked)), files)


def nothing() -> Outcome:
    return Outcome(AgentResult(True, 0, "nothing to do", turns=1))


def refused(tool: str, files: Mapping[str, str] | None = None) -> Outcome:
    """A tool the agent's CLI refused (the run goes on), as Claude Code's permission_denied events."""
    return edits(files or {}, blocked=(f"refused by the CLI: {tool}",))


def failure(kind: ErrorKind, message: str = "", retry_after: float | None = None, session: str | None = None,
            cost: float | None = None) -> Outcome:
    result = AgentResult(False, 1, error_kind=kind, error_message=message or kind.value, session_id=session,
                         cost_usd=cost)
    return Outcome(replace(result, retry_after=retry_after) if retry_after is not None else result)


def rate_limited(retry_after: float | None = None, session: str | None = "fake-session") -> Outcome:
    return failure(ErrorKind.RATE_LIMIT, "429 rate limit", retry_after, session)


def overloaded(session: str | None = "fake-session") -> Outcome:
    return failure(ErrorKind.OVERLOADED, "529 overloaded", session=session)


def crash() -> Outcome:
    return failure(ErrorKind.CRASH, "killed by signal 9")


def hang() -> Outcome:
    """Work until stopped: a cancel, or the attempt's timeout (in real seconds)."""
    return Outcome(AgentResult(False, None), hang=True)


def answer(text: str, cost: float | None = None) -> Outcome:
    """A reviewer's (or any agent's) final message, as it is: prose, a verdict, garbage."""
    return Outcome(AgentResult(True, 0, text, cost_usd=cost, tokens=Tokens(50, 20), turns=1))


def verdict(approved: bool, comments: Sequence[str] = (), cost: float | None = None, prose: str = "") -> Outcome:
    word = "approved" if approved else "changes_requested"
    return answer(f"{prose}\n{json.dumps({'verdict': word, 'comments': list(comments)})}".strip(), cost)


def approve(*comments: str, cost: float | None = None) -> Outcome:
    return verdict(True, comments, cost, "Looks right.")


def request_changes(*comments: str, cost: float | None = None) -> Outcome:
    return verdict(False, comments, cost, "Some things to fix.")


ROLE_DEFAULTS = {"reviewer": approve(), "fixer": nothing()}


class FakeAgent:
    name = "fake"

    def __init__(self, script: Mapping[str, Sequence[Outcome]], default: Outcome | None = None,
                 roles: Mapping[str, Mapping[str, Sequence[Outcome]]] | None = None) -> None:
        self.script = {task: list(outcomes) for task, outcomes in script.items()}
        self.default = default or nothing()
        self.roles = {role: {task: list(o) for task, o in by_task.items()} for role, by_task in (roles or {}).items()}
        self.requests: list[AgentRequest] = []
        self._lock = threading.Lock()

    def _lane(self, request: AgentRequest) -> str | None:
        """The role a request is scripted under; None: the task's own script."""
        return request.role if request.role in self.roles or request.role in ROLE_DEFAULTS else None

    def requests_for(self, role: str, task_id: str | None = None) -> list[AgentRequest]:
        return [r for r in self.requests if r.role == role and task_id in (None, r.task_id)]

    def run(self, request: AgentRequest) -> AgentResult:
        lane = self._lane(request)
        with self._lock:
            attempt = sum(1 for r in self.requests if r.task_id == request.task_id and self._lane(r) == lane)
            self.requests.append(request)
        if lane is None:
            outcomes = self.script.get(request.task_id) or [self.default]
        else:
            outcomes = self.roles.get(lane, {}).get(request.task_id) or [ROLE_DEFAULTS.get(lane, self.default)]
        outcome = outcomes[min(attempt, len(outcomes) - 1)]
        started = time.monotonic()
        if outcome.hang:
            if request.cancel.wait(request.timeout):
                return AgentResult(False, None, error_kind=ErrorKind.CANCELLED, error_message="cancelled")
            return AgentResult(False, None, error_kind=ErrorKind.TIMEOUT,
                               error_message=f"no result after {request.timeout:.0f}s")
        for rel, content in outcome.edits.items():
            path = Path(request.worktree) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        return replace(outcome.result, duration=time.monotonic() - started)


class VirtualClock:
    """A clock that never waits: `sleep` moves it on. `slept` adds up how long the engine waited."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start
        self.slept = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self.t

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.t += max(0.0, seconds)
            self.slept += max(0.0, seconds)
