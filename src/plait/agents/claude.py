"""Claude Code: `claude -p --output-format stream-json --verbose`, the prompt on stdin.

Success is the `result` line's `is_error` (an API failure can arrive as `subtype: success` with
`is_error: true` and `api_error_status` 429/529), then the exit code.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from plait.agents import cli_common as cli
from plait.agents import failure
from plait.agents.base import AgentRequest, AgentResult, ErrorKind, Permission, Tokens

# Tools a headless run may use without asking, by permission level (root cannot bypass permissions).
_READ_TOOLS = ("Read", "Glob", "Grep", "LS", "TodoWrite")
_EDIT_TOOLS = (*_READ_TOOLS, "Edit", "MultiEdit", "Write", "NotebookEdit", "Bash")
_FULL_TOOLS = (*_EDIT_TOOLS, "WebFetch", "WebSearch", "Task", "Agent")
_FILE_TOOLS = {"Write", "Edit", "MultiEdit", "NotebookEdit"}


def permission_args(permission: Permission, is_root: bool) -> list[str]:
    if permission is Permission.READ_ONLY:
        return ["--permission-mode", "dontAsk", "--allowedTools", ",".join(_READ_TOOLS)]
    if permission is Permission.FULL and not is_root:
        return ["--permission-mode", "bypassPermissions"]
    tools = _FULL_TOOLS if permission is Permission.FULL else _EDIT_TOOLS
    return ["--permission-mode", "acceptEdits", "--allowedTools", ",".join(tools)]


class ClaudeAgent:
    name = "claude"

    def argv(self, request: AgentRequest, binary: str) -> list[str]:
        profile = request.profile
        argv = [binary, "-p", "--output-format", "stream-json", "--verbose"]
        if profile.model:
            argv += ["--model", profile.model]
        argv += permission_args(profile.permission, os.geteuid() == 0)
        if profile.max_turns:
            argv += ["--max-turns", str(profile.max_turns)]
        if profile.max_cost:
            argv += ["--max-budget-usd", f"{profile.max_cost:g}"]
        if request.resume_session:
            argv += ["--resume", request.resume_session]
        return argv + list(profile.extra_args)

    def env(self, request: AgentRequest) -> dict[str, str]:
        env = cli.quiet_env(request, drop=("CLAUDECODE", "CLAUDE_CODE_ENTRYPOINT"))
        env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] = "1"
        env.setdefault("CLAUDE_CONFIG_DIR", str(cli.private_home(request, "claude")))
        # plait backs off itself (and lowers the profile's concurrency): the CLI should give up soon.
        env.setdefault("CLAUDE_CODE_MAX_RETRIES", "2")
        return env

    def run(self, request: AgentRequest) -> AgentResult:
        return cli.run_streaming(request, "claude", self.argv, self.env, parse)


def parse(events: Iterable[dict[str, Any]], exit_code: int | None, stderr: str = "",
          worktree: Path | None = None) -> AgentResult:
    """One AgentResult from Claude Code's stream-json events (unknown events and fields of the wrong type are
    skipped: this never raises)."""
    session: str | None = None
    files: list[str] = []
    final: dict[str, Any] | None = None
    retry_status: int | None = None
    rejected = False
    pending: dict[str, str] = {}  # tool_use id -> path, until its result says it worked
    commands: set[str] = set()  # Bash tool_use ids
    refused: set[str] = set()  # tool_use ids Claude Code itself refused
    blocked: list[str] = []
    for event in events:
        kind = event.get("type")
        session = cli.text(event.get("session_id")) or session
        blocks = cli.objs(cli.obj(event.get("message")).get("content"))
        if kind == "assistant":
            for block in blocks:
                tool, tool_id = cli.text(block.get("name")), cli.text(block.get("id"))
                if block.get("type") == "tool_use" and tool == "Bash":
                    commands.add(tool_id)
                if block.get("type") == "tool_use" and tool in _FILE_TOOLS:
                    given = cli.obj(block.get("input"))
                    path = given.get("file_path") or given.get("notebook_path")
                    if isinstance(path, str):
                        pending[tool_id] = cli.relative_to(worktree, path) if worktree else path
        elif kind == "user":
            for block in blocks:
                done_id = cli.text(block.get("tool_use_id"))
                if block.get("type") != "tool_result" or done_id in refused:
                    continue
                failed = block.get("is_error") is True
                if done_id in pending:
                    path = pending.pop(done_id)
                    denied = cli.denials(_text_of(block.get("content")))
                    if cli.outside(worktree, path):
                        blocked.append(f"tried to write {path}, outside its work tree")
                    elif failed and denied:
                        blocked.append(f"{path}: {denied[0]}")
                    if not failed:
                        files.append(path)
                elif done_id in commands:
                    blocked += cli.denials(_text_of(block.get("content")))
        elif kind == "system" and event.get("subtype") == "permission_denied":
            # Claude Code 2.1 refused a tool call itself (a read-only profile, a deny rule): `message` is
            # what it told the model.
            refused.add(cli.text(event.get("tool_use_id")))
            said = cli.text(event.get("message")).strip().split(". ", 1)[0]  # its advice to the model follows
            said = said or cli.text(event.get("tool_name")) or "a tool call"
            blocked.append(f"refused by Claude Code: {said[:300]}")
        elif kind == "system" and event.get("subtype") == "api_retry":
            retry_status = cli.integer(event.get("error_status")) or retry_status
        elif kind == "rate_limit_event":
            rejected = rejected or cli.obj(event.get("rate_limit_info")).get("status") == "rejected"
        elif kind == "result":
            final = event
    if final is None:
        found = ""
        if retry_status is not None:
            found = f"API error {retry_status} (retried, then no result)"
        elif rejected:
            found = "rate limit rejected"
        failed_run = replace(failure.exit_failure(exit_code, stderr, found), blocked=cli.unique(blocked))
        return failed_run if not session else replace(failed_run, session_id=session)
    # The result's own list of refusals is the complete one (the events are best-effort).
    for denial in cli.objs(final.get("permission_denials")):
        if cli.text(denial.get("tool_use_id")) not in refused:
            blocked.append(f"refused by Claude Code: {_call(denial)}")
    usage = cli.obj(final.get("usage"))
    tally = cli.Tally()
    tally.add(usage, ("input", "input_tokens"), ("input", "cache_creation_input_tokens"),
              ("input", "cache_read_input_tokens"), ("output", "output_tokens"), ("cached", "cache_read_input_tokens"))
    text = cli.text(final.get("result"))
    common: dict[str, Any] = {
        "summary": text, "session_id": cli.text(final.get("session_id")) or session,
        "cost_usd": cli.number(final.get("total_cost_usd")),
        "tokens": Tokens(tally.input, tally.output, tally.cached), "turns": cli.integer(final.get("num_turns")),
        "files_changed": cli.unique(files), "blocked": cli.unique(blocked),
    }
    if final.get("is_error") is False and exit_code in (0, None):
        return AgentResult(True, exit_code, **common)
    kind, message = _error(final, text, exit_code, stderr)
    return AgentResult(False, exit_code, error_kind=kind, error_message=message, **common)


def _call(denial: dict[str, Any]) -> str:
    """A refused call as `Tool target` (the command or file it was for, when the input names one)."""
    given = cli.obj(denial.get("tool_input"))
    target = next((cli.text(given.get(k)) for k in ("command", "file_path", "notebook_path", "path", "url")
                   if cli.text(given.get(k))), "")
    return " ".join(part for part in (cli.text(denial.get("tool_name")) or "a tool", target[:200]) if part)


def _text_of(content: object) -> str:
    """A tool result's text: a string, or a list of text blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(cli.text(block.get("text")) for block in cli.objs(content))
    return ""


def _error(final: dict[str, Any], text: str, exit_code: int | None, stderr: str) -> tuple[ErrorKind, str]:
    listed = final.get("errors")
    errors = " ".join(cli.text(e) for e in (listed if isinstance(listed, list) else [listed]))
    message = (text or errors or stderr.strip()[-500:] or f"exited {exit_code}").strip()
    subtype, reason = final.get("subtype"), final.get("terminal_reason")
    status = cli.integer(final.get("api_error_status"))
    if subtype == "error_max_turns" or reason == "max_turns":
        return ErrorKind.MAX_TURNS, message or "reached the turn limit"
    if subtype == "error_max_budget_usd":
        return ErrorKind.BUDGET, message or "reached the budget"
    if reason in ("prompt_too_long", "blocking_limit"):
        return ErrorKind.CONTEXT_LENGTH, message
    by_text = failure.classify(message)
    if status == 429 and by_text is ErrorKind.QUOTA:
        return ErrorKind.QUOTA, message
    by_status = failure.status_kind(status)
    if by_status is not None:
        return by_status, message
    if by_text is not None:
        return by_text, message
    return (ErrorKind.CRASH if (exit_code or 0) < 0 else ErrorKind.UNKNOWN), message
