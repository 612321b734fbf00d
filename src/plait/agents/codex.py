"""Codex: `codex exec --json -C WORKTREE -s SANDBOX -` with the prompt on stdin.

Success is a `turn.completed` without a later `turn.failed`, and exit code 0. Codex reports no
cost: it is estimated from the tokens with the price table in cli_common (None for other models).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from plait.agents import cli_common as cli
from plait.agents import failure
from plait.agents.base import AgentRequest, AgentResult, ErrorKind, Permission, Tokens

_SANDBOX = {Permission.READ_ONLY: ["-s", "read-only"], Permission.EDIT: ["-s", "workspace-write"],
            Permission.FULL: ["--dangerously-bypass-approvals-and-sandbox"]}
_TOOL_ITEMS = {"command_execution", "file_change", "mcp_tool_call", "web_search", "collab_tool_call"}
# A provider for an OpenAI-compatible base URL (a gateway, or plait's scripted server): the built-in
# provider would also try the ChatGPT login flow and its own retries.
_PROVIDER = "plait"


def provider_args(base_url: str) -> list[str]:
    settings = {"name": "plait", "base_url": base_url, "wire_api": "responses", "env_key": "OPENAI_API_KEY",
                "request_max_retries": 2, "stream_max_retries": 2}
    args = ["-c", f"model_provider={_PROVIDER}"]
    for key, value in settings.items():
        shown = f'"{value}"' if isinstance(value, str) else str(value)
        args += ["-c", f"model_providers.{_PROVIDER}.{key}={shown}"]
    return args


class CodexAgent:
    name = "codex"

    def argv(self, request: AgentRequest, binary: str) -> list[str]:
        profile = request.profile
        argv = [binary, "exec", "--json", "--skip-git-repo-check", "--color", "never", "-C", str(request.worktree)]
        if request.confine is not None and request.confine.landlock:
            # plait's own sandbox holds every process of the attempt (a read-only profile's work tree
            # is read-only there too); Codex's nested one cannot build its mounts inside it.
            argv += ["-s", "danger-full-access"]
        else:
            argv += _SANDBOX[profile.permission]
        if profile.model:
            argv += ["-m", profile.model]
        base_url = request.env.get("OPENAI_BASE_URL")
        if base_url:
            argv += provider_args(base_url)
        argv += list(profile.extra_args)
        if request.resume_session:
            argv += ["resume", request.resume_session]
        return [*argv, "-"]  # "-": the prompt comes on stdin

    def env(self, request: AgentRequest) -> dict[str, str]:
        env = cli.quiet_env(request)
        env.setdefault("CODEX_HOME", str(cli.private_home(request, "codex")))
        return env

    def run(self, request: AgentRequest) -> AgentResult:
        model = request.profile.model
        return cli.run_streaming(request, "codex", self.argv, self.env,
                                 lambda events, rc, err, wt: parse(events, rc, err, wt, model))


def parse(events: Iterable[dict[str, Any]], exit_code: int | None, stderr: str = "",
          worktree: Path | None = None, model: str | None = None) -> AgentResult:
    """One AgentResult from `codex exec --json` events (unknown events and fields of the wrong type are
    skipped: this never raises)."""
    session: str | None = None
    summary = ""
    files: list[str] = []
    blocked: list[str] = []
    tally = cli.Tally()
    turns = 0
    completed = False
    turn_failed: str | None = None
    last_error = ""
    for event in events:
        kind = event.get("type")
        item = cli.obj(event.get("item"))
        if kind == "thread.started":
            session = cli.text(event.get("thread_id")) or session
        elif kind == "turn.completed":
            completed, turn_failed = True, None
            tally.add(cli.obj(event.get("usage")), ("input", "input_tokens"), ("output", "output_tokens"),
                      ("cached", "cached_input_tokens"))
        elif kind == "turn.failed":
            turn_failed = _message(event.get("error")) or "turn failed"
        elif kind == "error":
            last_error = _message(event.get("message")) or last_error
        elif kind == "item.completed" and item:
            item_type = cli.text(item.get("type"))
            if item_type == "agent_message":
                summary = cli.text(item.get("text"))
                turns += 1
            elif item_type in _TOOL_ITEMS:
                turns += 1
            if item_type == "file_change":
                for change in cli.objs(item.get("changes")):
                    path = cli.text(change.get("path"))
                    path = cli.relative_to(worktree, path) if worktree else path
                    if cli.outside(worktree, path):
                        blocked.append(f"tried to write {path}, outside its work tree")
                    if item.get("status") != "failed":
                        files.append(path)
            elif item_type == "command_execution":
                blocked += cli.denials(cli.text(item.get("aggregated_output")))
            elif item_type == "error":
                last_error = _message(item.get("message")) or last_error
    tokens = Tokens(tally.input, tally.output, tally.cached)
    common: dict[str, Any] = {"summary": summary, "session_id": session, "tokens": tokens,
                              "cost_usd": cli.estimate_cost(model, tokens), "turns": turns or None,
                              "files_changed": cli.unique(files), "blocked": cli.unique(blocked)}
    if completed and turn_failed is None and exit_code in (0, None):
        return AgentResult(True, exit_code, **common)
    message = turn_failed or last_error or stderr.strip()[-500:] or f"exited {exit_code} with no result"
    kind = failure.classify(message) or (ErrorKind.CRASH if (exit_code or 0) < 0 else ErrorKind.UNKNOWN)
    return AgentResult(False, exit_code, error_kind=kind, error_message=message, **common)


def _message(value: object) -> str:
    """An error as Codex gives it: a message, or an object holding one."""
    return cli.text(value) or cli.text(cli.obj(value).get("message"))
