"""What every CLI adapter shares: a private config dir, running the CLI through `plait.proc` (again as a fresh
session when the one to resume is gone), and reading its JSON-lines stream without trusting its shape."""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from plait import proc
from plait.agents import failure
from plait.agents.base import AgentRequest, AgentResult, ErrorKind, Tokens
from plait.agents.binaries import find_binary, missing_binary, version

log = logging.getLogger("plait.agents")

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


def private_home(request: AgentRequest, cli: str) -> Path:
    """A config/state dir of the CLI's own for this task, shared by the task's attempts (next to
    their log dirs) so a retry can resume the session, and never the user's real home."""
    folder = request.home / cli if request.home else request.log_dir.parent / f"{cli}-home"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# A CLI's notices that it is retrying: output that says only this is no progress (proc.run's `quiet`), so a
# CLI reconnecting for ever to a dead server stalls (Codex: "Reconnecting... waiting for network").
RETRY_NOTICE = re.compile(rb'Reconnecting\.\.\.|"subtype":\s*"api_retry"|^Retrying in [\d.]+ seconds')


def launch(request: AgentRequest, argv: Sequence[str], env: Mapping[str, str], stdin: str | None,
           stdout_name: str = STREAM_FILE) -> proc.Completed:
    """Run the CLI in the worktree: its stream to log_dir/agent.jsonl, stderr to log_dir/agent.stderr.

    The argv is kept next to them (agent.argv.json) to show what ran; secrets are only in env. A CLI
    whose output stops growing for the profile's `stall` seconds is stopped as stuck.
    """
    request.log_dir.mkdir(parents=True, exist_ok=True)
    (request.log_dir / "agent.argv.json").write_text(json.dumps(list(argv)))
    return proc.run(argv, cwd=request.worktree, env=env, input=stdin, timeout=request.timeout,
                    cancel=request.cancel, stdout_path=request.log_dir / stdout_name,
                    stderr_path=request.log_dir / STDERR_FILE, confine=request.confine,
                    stall=request.profile.stall or None, quiet=RETRY_NOTICE)


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


# Readers for values out of a stream that is not trusted to be well formed: a field of the wrong JSON
# type reads as missing, so no parser raises on what a CLI (or a future version of it) prints.
def obj(value: object) -> dict[str, Any]:
    """`value` when it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def objs(value: object) -> list[dict[str, Any]]:
    """The JSON objects in `value` when it is a list, else none."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def text(value: object) -> str:
    """`value` when it is a string, a number as its digits, anything else as ""."""
    if isinstance(value, str):
        return value
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else ""


def integer(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def number(value: object) -> float | None:
    """A finite number (JSON lines may hold NaN and Infinity, which Python reads)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def stopped(request: AgentRequest, done: proc.Completed, stdout_name: str = STREAM_FILE) -> AgentResult | None:
    """The result when the run was cut short by its timeout, a stall or a cancel, else None."""
    if request.cancel.is_set():
        return AgentResult(False, done.returncode, error_kind=ErrorKind.CANCELLED, error_message="cancelled",
                           duration=done.duration)
    if done.timed_out:
        return AgentResult(False, done.returncode, error_kind=ErrorKind.TIMEOUT,
                           error_message=f"no result after {request.timeout:.0f}s (hard timeout)",
                           duration=done.duration)
    if done.stalled:
        last = failure.last_error_line(request.log_dir / stdout_name, request.log_dir / STDERR_FILE)
        kind = failure.classify(last)
        message = f"stalled: no progress for {request.profile.stall or 0:.0f}s" + (f"; last: {last}" if last else "")
        return AgentResult(False, done.returncode, error_kind=kind if kind and kind.transient else ErrorKind.TIMEOUT,
                           error_message=message, duration=done.duration, retry_after=failure.retry_hint(last))
    return None


@dataclass
class Tally:
    """Token counts summed over a stream."""

    input: int = 0
    output: int = 0
    cached: int = 0

    def add(self, usage: Mapping[str, Any], *names: tuple[str, str]) -> None:
        for field_name, key in names:
            value = number(usage.get(key))
            if value is not None:
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
        except (ValueError, OSError):  # outside the worktree, or no path at all (a NUL in it)
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
    try:
        cost = (uncached * fresh + tokens.cached * cached + tokens.output * output) / 1_000_000
    except OverflowError:
        return None
    return round(cost, 6) if math.isfinite(cost) else None  # absurd token counts give no estimate


# (events, exit code, stderr, worktree) -> the result; adapters bind their extra arguments (e.g. the model).
StreamParser = Callable[[Iterable[dict[str, Any]], int | None, str, Path | None], AgentResult]
# (request, the finished process) -> the result of the run.
Reader = Callable[[AgentRequest, proc.Completed], AgentResult]

def run_cli(request: AgentRequest, default_binary: str, argv: Callable[[AgentRequest, str], list[str]],
            env: Callable[[AgentRequest], dict[str, str]], read: Reader, prompt_on_stdin: bool = True,
            stdout_name: str = STREAM_FILE) -> AgentResult:
    """Find the CLI, run it and read its result; say which binary and version ran, and what the provider
    asked to wait. A resume of a session the CLI does not have is run again as a fresh session."""
    binary = find_binary(request, default_binary)
    if binary is None:
        return missing_binary(request, default_binary)
    environment = env(request)
    result = _run_once(request, binary, argv, environment, read, prompt_on_stdin, stdout_name)
    if request.resume_session and failure.unknown_session(result):
        log.info("%s has no session %s: starting a fresh one", default_binary, request.resume_session)
        _keep(request.log_dir, stdout_name, ".resume-failed")
        fresh = replace(request, resume_session=None, timeout=max(1.0, request.timeout - result.duration))
        again = _run_once(fresh, binary, argv, environment, read, prompt_on_stdin, stdout_name)
        result = replace(again, duration=result.duration + again.duration)
    return replace(result, binary=binary, version=version(binary, environment))


def _run_once(request: AgentRequest, binary: str, argv: Callable[[AgentRequest, str], list[str]],
              env: Mapping[str, str], read: Reader, prompt_on_stdin: bool, stdout_name: str) -> AgentResult:
    request.log_dir.mkdir(parents=True, exist_ok=True)  # argv may write files there (Aider's message)
    done = launch(request, argv(request, binary), env, request.prompt if prompt_on_stdin else None, stdout_name)
    result = read(request, done)
    if result.ok or result.retry_after is not None or not (result.error_kind and result.error_kind.transient):
        return result
    return replace(result, retry_after=failure.retry_hint(result.error_message, done.stderr))


def _keep(log_dir: Path, stdout_name: str, suffix: str) -> None:
    """Keep a run's output files next to those of the run after it (agent.jsonl -> agent.resume-failed.jsonl)."""
    for name in (stdout_name, STDERR_FILE):
        path = log_dir / name
        if path.exists():
            path.replace(path.with_name(f"{path.stem}{suffix}{path.suffix}"))


def stream_reader(parse: StreamParser) -> Reader:
    """Reads a JSON-streaming CLI's result: its stream parsed, unless the run was stopped."""

    def read(request: AgentRequest, done: proc.Completed) -> AgentResult:
        cut_short = stopped(request, done)
        if cut_short is not None:
            return cut_short
        result = parse(read_events(request.log_dir / STREAM_FILE), done.returncode, done.stderr, request.worktree)
        return replace(result, duration=done.duration)

    return read


def run_streaming(request: AgentRequest, default_binary: str, argv: Callable[[AgentRequest, str], list[str]],
                  env: Callable[[AgentRequest], dict[str, str]], parse: StreamParser,
                  prompt_on_stdin: bool = True) -> AgentResult:
    """The run of every JSON-streaming CLI."""
    return run_cli(request, default_binary, argv, env, stream_reader(parse), prompt_on_stdin)
