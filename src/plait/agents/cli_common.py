"""What every CLI adapter shares: finding the binary, a private config dir, running the CLI through
`plait.proc`, reading its JSON-lines stream, and naming an error from its text."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from plait import proc
from plait.agents.base import AgentRequest, AgentResult, ErrorKind, Tokens

STREAM_FILE = "agent.jsonl"
STDERR_FILE = "agent.stderr"

# Telemetry, update checks and other traffic no run needs, off for every CLI (unknown names are harmless).
QUIET_ENV = {
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_AUTOUPDATER": "1",
    "NO_UPDATE_NOTIFIER": "1",
    "DO_NOT_TRACK": "1",
}


def quiet_env(request: AgentRequest, drop: tuple[str, ...] = ()) -> dict[str, str]:
    """The agent's allow-listed environment (less `drop`) with every CLI's telemetry switched off."""
    env = {k: v for k, v in request.env.items() if k not in drop}
    env.update(QUIET_ENV)
    return env


def find_binary(request: AgentRequest, default: str) -> str | None:
    """The profile's `binary`, else `default` on the agent's PATH, else the project's CLI cache."""
    if request.profile.binary:
        given = request.profile.binary
        if "/" in given:
            return given if os.path.isfile(given) and os.access(given, os.X_OK) else None
        return shutil.which(given, path=request.env.get("PATH"))
    found = shutil.which(default, path=request.env.get("PATH"))
    if found:
        return found
    from plait.testing.bins import agent_bin

    cached = agent_bin(default)
    return str(cached) if cached else None


def missing_binary(request: AgentRequest, default: str) -> AgentResult:
    name = request.profile.binary or default
    return AgentResult(False, None, error_kind=ErrorKind.UNKNOWN,
                       error_message=f"{name} not found on PATH: install it (scripts/install-agent-clis installs "
                       f"the pinned versions into .cache/agents) or set `binary` in profile {request.profile.name}")


def private_home(request: AgentRequest, cli: str) -> Path:
    """A config/state dir of the CLI's own for this task, shared by the task's attempts (next to
    their log dirs) so a retry can resume the session, and never the user's real home."""
    folder = request.home / cli if request.home else request.log_dir.parent / f"{cli}-home"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def launch(request: AgentRequest, argv: Sequence[str], env: Mapping[str, str], stdin: str | None,
           stdout_name: str = STREAM_FILE) -> proc.Completed:
    """Run the CLI in the worktree: its stream to log_dir/agent.jsonl, stderr to log_dir/agent.stderr.

    The argv is kept next to them (agent.argv.json) to show what ran; secrets are only in env.
    """
    request.log_dir.mkdir(parents=True, exist_ok=True)
    (request.log_dir / "agent.argv.json").write_text(json.dumps(list(argv)))
    return proc.run(argv, cwd=request.worktree, env=env, input=stdin, timeout=request.timeout,
                    cancel=request.cancel, stdout_path=request.log_dir / stdout_name,
                    stderr_path=request.log_dir / STDERR_FILE, confine=request.confine)


def read_events(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON objects of a JSON-lines stream; blank, non-JSON and non-object lines are skipped."""
    try:
        handle = path.open(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return
    with handle:
        for line in handle:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                yield event


def obj(value: object) -> dict[str, Any]:
    """`value` when it is a JSON object, else an empty one: streams are not trusted to be well formed."""
    return value if isinstance(value, dict) else {}


def stopped(request: AgentRequest, done: proc.Completed) -> AgentResult | None:
    """The result when the run was cut short by its timeout or a cancel, else None."""
    if request.cancel.is_set():
        return AgentResult(False, done.returncode, error_kind=ErrorKind.CANCELLED, error_message="cancelled",
                           duration=done.duration)
    if done.timed_out:
        return AgentResult(False, done.returncode, error_kind=ErrorKind.TIMEOUT,
                           error_message=f"no result after {request.timeout:.0f}s (hard timeout)",
                           duration=done.duration)
    return None


# Ordered: the first pattern that matches names the error. Wording seen in the CLIs' own messages.
_PATTERNS: tuple[tuple[ErrorKind, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern, re.I)) for kind, pattern in (
        (ErrorKind.CONTEXT_LENGTH, r"prompt is too long|context[ _-]?(window|length)|too many tokens|"
                                   r"exceeds the (context|maximum number of tokens)|token limit|ran out of room"),
        (ErrorKind.QUOTA, r"exceeded your (current )?quota|quota exceeded|daily quota|usage limit|spend limit|"
                          r"billing|credit balance|insufficient_quota"),
        (ErrorKind.RATE_LIMIT, r"\b429\b|rate[ _-]?limit|too many requests|resource[ _]?(has been )?exhausted"),
        (ErrorKind.AUTH, r"\b401\b|authenticat|unauthori[sz]ed|(invalid|incorrect) (x-)?api[ _-]?key|"
                         r"api[ _-]?key (is )?(not valid|invalid|missing)|not logged in|log ?in required"),
        (ErrorKind.OVERLOADED, r"\b5(29|00|02|03|04)\b|overloaded|capacity|unavailable|internal (server )?error"),
        (ErrorKind.MAX_TURNS, r"max(imum)?[ _-]?(session[ _-])?turns"),
        (ErrorKind.BUDGET, r"budget"),
    )
)


def classify(text: str) -> ErrorKind | None:
    for kind, pattern in _PATTERNS:
        if pattern.search(text):
            return kind
    return None


def status_kind(status: int | None) -> ErrorKind | None:
    """An HTTP status from a provider, as an error kind."""
    if status is not None and status >= 500:
        return ErrorKind.OVERLOADED  # server-side and temporary: worth a retry with back-off
    return {401: ErrorKind.AUTH, 403: ErrorKind.AUTH, 429: ErrorKind.RATE_LIMIT,
            413: ErrorKind.CONTEXT_LENGTH}.get(status or 0)


def exit_failure(exit_code: int | None, stderr: str, found: str = "") -> AgentResult:
    """A run without a usable result in its stream: what was found, else stderr, says what went wrong."""
    text = found or stderr.strip()[-500:] or f"exited {exit_code} with no result"
    kind = classify(text) or (ErrorKind.CRASH if (exit_code or 0) < 0 else ErrorKind.UNKNOWN)
    return AgentResult(False, exit_code, error_kind=kind, error_message=text)


@dataclass
class Tally:
    """Token counts summed over a stream."""

    input: int = 0
    output: int = 0
    cached: int = 0

    def add(self, usage: Mapping[str, Any], *names: tuple[str, str]) -> None:
        for field_name, key in names:
            value = usage.get(key)
            if isinstance(value, int | float):
                setattr(self, field_name, getattr(self, field_name) + int(value))


# How a refused write reads in a tool's output (the sandbox answers EACCES, EPERM or EROFS).
_DENIED = re.compile(r"permission denied|operation not permitted|read-only file system", re.I)


def denials(text: str, limit: int = 3) -> list[str]:
    """The lines of a tool's output saying a write was refused, for the evidence."""
    return [line.strip()[:300] for line in text.splitlines() if _DENIED.search(line)][:limit]


def outside(worktree: Path | None, path: str) -> bool:
    """Whether a path a tool was given lies outside the work tree (as `relative_to` left it)."""
    return worktree is not None and (Path(path).is_absolute() or path.split("/", 1)[0] == "..")


def unique(paths: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(p for p in paths if p))


def relative_to(worktree: Path, path: str) -> str:
    """A path the CLI reported, relative to the worktree when it lies inside it."""
    candidate = Path(path)
    if candidate.is_absolute():
        try:
            return str(candidate.resolve().relative_to(worktree.resolve()))
        except ValueError:
            return path
    return path


# USD per million tokens (input, cached input, output), from the providers' published list prices
# (late 2025), for the CLIs whose streams carry no cost (Codex, Gemini CLI). A model not listed
# here gets no estimate (None), never a guess. Longest matching prefix wins.
PRICES: dict[str, tuple[float, float, float]] = {
    "gpt-5-mini": (0.25, 0.025, 2.0),
    "gpt-5-nano": (0.05, 0.005, 0.4),
    "gpt-5": (1.25, 0.125, 10.0),  # also gpt-5-codex, gpt-5.1, gpt-5.1-codex
    "o4-mini": (1.10, 0.275, 4.40),
    "o3": (2.0, 0.5, 8.0),
    "gpt-4.1-mini": (0.40, 0.10, 1.60),
    "gpt-4.1": (2.0, 0.5, 8.0),
    "gemini-2.5-pro": (1.25, 0.31, 10.0),
    "gemini-2.5-flash-lite": (0.10, 0.025, 0.40),
    "gemini-2.5-flash": (0.30, 0.075, 2.50),
}


def estimate_cost(model: str | None, tokens: Tokens) -> float | None:
    """Dollars for `tokens` at the listed price of `model` (cached input at its own price)."""
    if not model:
        return None
    name = model.rsplit("/", 1)[-1].lower()
    matches = [prefix for prefix in PRICES if name.startswith(prefix)]
    if not matches:
        return None
    fresh, cached, output = PRICES[max(matches, key=len)]
    uncached = max(0, tokens.input - tokens.cached)
    return round((uncached * fresh + tokens.cached * cached + tokens.output * output) / 1_000_000, 6)


# (events, exit code, stderr, worktree) -> the result; adapters bind their extra arguments (e.g. the model).
StreamParser = Callable[[Iterable[dict[str, Any]], int | None, str, Path | None], AgentResult]


def run_streaming(request: AgentRequest, default_binary: str, argv: Callable[[AgentRequest, str], list[str]],
                  env: Callable[[AgentRequest], dict[str, str]], parse: StreamParser,
                  prompt_on_stdin: bool = True) -> AgentResult:
    """The run of every JSON-streaming CLI: find it, launch it, and parse its stream unless it was stopped."""
    binary = find_binary(request, default_binary)
    if binary is None:
        return missing_binary(request, default_binary)
    done = launch(request, argv(request, binary), env(request), request.prompt if prompt_on_stdin else None)
    cut_short = stopped(request, done)
    if cut_short is not None:
        return cut_short
    result = parse(read_events(request.log_dir / STREAM_FILE), done.returncode, done.stderr, request.worktree)
    return replace(result, duration=done.duration)
