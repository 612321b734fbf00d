"""Cursor: `cursor-agent -p PROMPT --output-format stream-json --force --trust`.

Written from Cursor's documented output format; the CLI is not published to npm or PyPI, so it
could not be run here (docs/agents.md). Success is the `result` event's `is_error`, then the exit
code; on failure Cursor prints no JSON, only a message on stderr.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from plait.agents import cli_common as cli
from plait.agents import failure
from plait.agents.base import AgentRequest, AgentResult, ErrorKind, Permission, Tokens

_PERMISSION = {Permission.READ_ONLY: ["--mode", "ask"], Permission.EDIT: ["--force"],
               Permission.FULL: ["--force", "--approve-mcps"]}
_FILE_CALLS = ("writeToolCall", "editToolCall", "deleteToolCall")


class CursorAgent:
    name = "cursor"

    def argv(self, request: AgentRequest, binary: str) -> list[str]:
        profile = request.profile
        argv = [binary, "-p", "--output-format", "stream-json", "--trust", "--workspace", str(request.worktree)]
        argv += _PERMISSION[profile.permission]
        if profile.model:
            argv += ["--model", profile.model]
        if request.resume_session:
            argv += ["--resume", request.resume_session]
        return [*argv, *profile.extra_args, request.prompt]  # Cursor takes the prompt as an argument

    def env(self, request: AgentRequest) -> dict[str, str]:
        env = cli.quiet_env(request)
        env["HOME"] = str(cli.private_home(request, "cursor"))  # ~/.cursor holds its config and chats
        return env

    def run(self, request: AgentRequest) -> AgentResult:
        return cli.run_streaming(request, "cursor-agent", self.argv, self.env, parse, prompt_on_stdin=False)


def parse(events: Iterable[dict[str, Any]], exit_code: int | None, stderr: str = "",
          worktree: Path | None = None) -> AgentResult:
    """One AgentResult from `cursor-agent --output-format stream-json` events (unknown events and fields of
    the wrong type are skipped: this never raises)."""
    session: str | None = None
    files: list[str] = []
    final: dict[str, Any] | None = None
    calls = 0
    for event in events:
        kind = event.get("type")
        session = cli.text(event.get("session_id")) or session
        if kind == "tool_call" and event.get("subtype") == "completed":
            calls += 1
            call = cli.obj(event.get("tool_call"))
            for name in _FILE_CALLS:
                detail = cli.obj(call.get(name))
                path = cli.obj(detail.get("args")).get("path")
                if isinstance(path, str) and "success" in cli.obj(detail.get("result")):
                    files.append(cli.relative_to(worktree, path) if worktree else path)
        elif kind == "result":
            final = event
    if final is None:
        failed = failure.exit_failure(exit_code, stderr)
        return replace(failed, session_id=session) if session else failed
    usage = cli.obj(final.get("usage"))
    tally = cli.Tally()
    tally.add(usage, ("input", "inputTokens"), ("input", "cacheReadTokens"), ("input", "cacheWriteTokens"),
              ("output", "outputTokens"), ("cached", "cacheReadTokens"))
    text = cli.text(final.get("result"))
    common: dict[str, Any] = {"summary": text, "session_id": cli.text(final.get("session_id")) or session,
                              "tokens": Tokens(tally.input, tally.output, tally.cached), "turns": calls + 1,
                              "files_changed": cli.unique(files)}
    if final.get("is_error") is False and exit_code in (0, None):
        return AgentResult(True, exit_code, **common)
    message = text or stderr.strip()[-500:] or f"exited {exit_code}"
    kind = failure.classify(message) or (ErrorKind.CRASH if (exit_code or 0) < 0 else ErrorKind.UNKNOWN)
    return AgentResult(False, exit_code, error_kind=kind, error_message=message, **common)
