"""Gemini CLI: `gemini -p "" -o stream-json --skip-trust --approval-mode ...`, the prompt on stdin.

Success is the final `result` event's `status`, then the exit code (41 auth, 42 input, 52 config,
53 turn limit, 54 tool execution). Gemini CLI reports no cost: it is estimated from the tokens
with the price table in cli_common (None for other models).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from plait import proc
from plait.agents import cli_common as cli
from plait.agents import failure
from plait.agents.base import AgentRequest, AgentResult, ErrorKind, Permission, Tokens

_APPROVAL = {Permission.READ_ONLY: "plan", Permission.EDIT: "auto_edit", Permission.FULL: "yolo"}
_FILE_TOOLS = {"write_file", "replace", "edit"}
_EXIT_KINDS = {41: ErrorKind.AUTH, 53: ErrorKind.MAX_TURNS}
# auto_edit approves file edits only; plait's edit level also runs commands in the worktree.
_SHELL_POLICY = '[[rule]]\ntoolName = "run_shell_command"\ndecision = "allow"\npriority = 100\n'


def settings(request: AgentRequest) -> dict[str, Any]:
    """The private ~/.gemini/settings.json: API-key auth, and what the profile asks for."""
    data: dict[str, Any] = {"security": {"auth": {"selectedType": "gemini-api-key"}},
                            "privacy": {"usageStatisticsEnabled": False},
                            "general": {"disableAutoUpdate": True, "disableUpdateNag": True,
                                        # plait backs off itself (and lowers the concurrency)
                                        "maxAttempts": 2}}
    if request.profile.max_turns:
        data["model"] = {"maxSessionTurns": request.profile.max_turns}
    return data


class GeminiAgent:
    name = "gemini"

    def argv(self, request: AgentRequest, binary: str) -> list[str]:
        profile = request.profile
        argv = [binary, "-p", "", "-o", "stream-json", "--skip-trust",
                "--approval-mode", _APPROVAL[profile.permission]]
        if profile.model:
            argv += ["-m", profile.model]
        if request.resume_session:
            argv += ["--resume", request.resume_session]
        return argv + list(profile.extra_args)

    def env(self, request: AgentRequest) -> dict[str, str]:
        env = cli.quiet_env(request)
        if "GEMINI_CLI_HOME" not in env:
            home = cli.private_home(request, "gemini")
            (home / ".gemini").mkdir(exist_ok=True)
            (home / ".gemini" / "settings.json").write_text(json.dumps(settings(request), indent=2))
            policy = home / ".gemini" / "policies" / "plait.toml"
            if request.profile.permission is Permission.EDIT:
                policy.parent.mkdir(exist_ok=True)
                policy.write_text(_SHELL_POLICY)
            else:
                policy.unlink(missing_ok=True)
            env["GEMINI_CLI_HOME"] = str(home)
        return env

    def run(self, request: AgentRequest) -> AgentResult:
        model = request.profile.model
        parsed = cli.stream_reader(lambda events, rc, err, wt: parse(events, rc, err, wt, model))

        def read(request: AgentRequest, done: proc.Completed) -> AgentResult:
            result = parsed(request, done)
            if request.resume_session and result.session_id is None and not failure.unknown_session(result):
                # The session resumed was saved by an earlier attempt: it stays resumable after this one.
                return replace(result, session_id=request.resume_session)
            return result

        return cli.run_cli(request, "gemini", self.argv, self.env, read)


def parse(events: Iterable[dict[str, Any]], exit_code: int | None, stderr: str = "",
          worktree: Path | None = None, model: str | None = None) -> AgentResult:
    """One AgentResult from Gemini CLI's stream-json events (unknown events and fields of the wrong type are
    skipped: this never raises).

    The session id is given only once the session can be resumed: Gemini CLI announces it in `init`
    but drops a first exchange that failed, and `--resume` of it then finds "No previous sessions".
    A model turn that got as far as a tool call, or a successful result, is kept.
    """
    session: str | None = None
    saved = False
    used_model = model
    texts: list[str] = []
    pending: dict[str, str] = {}
    files: list[str] = []
    final: dict[str, Any] | None = None
    errors: list[str] = []
    tool_calls = 0
    for event in events:
        kind = event.get("type")
        if kind == "init":
            session = cli.text(event.get("session_id")) or session
            used_model = used_model or cli.text(event.get("model")) or None
        elif kind == "message" and event.get("role") == "assistant":
            texts.append(cli.text(event.get("content")))
        elif kind == "tool_use":
            tool_calls += 1
            saved = True
            params = cli.obj(event.get("parameters"))
            path = params.get("file_path") or params.get("absolute_path")
            if cli.text(event.get("tool_name")) in _FILE_TOOLS and isinstance(path, str):
                pending[cli.text(event.get("tool_id"))] = cli.relative_to(worktree, path) if worktree else path
        elif kind == "tool_result":
            tool_id = cli.text(event.get("tool_id"))
            if event.get("status") == "success" and tool_id in pending:
                files.append(pending.pop(tool_id))
        elif kind == "error" and event.get("severity") != "warning":
            errors.append(cli.text(event.get("message")))
        elif kind == "result":
            final = event
    succeeded = final is not None and final.get("status") == "success"
    tally = cli.Tally()
    tally.add(cli.obj((final or {}).get("stats")), ("input", "input_tokens"), ("output", "output_tokens"),
              ("cached", "cached"))
    tokens = Tokens(tally.input, tally.output, tally.cached)
    common: dict[str, Any] = {
        "summary": "".join(texts).strip(), "session_id": session if saved or succeeded else None, "tokens": tokens,
        "cost_usd": cli.estimate_cost(used_model, tokens),
        "turns": (tool_calls + 1) if final else None, "files_changed": cli.unique(files),
    }
    if succeeded and exit_code in (0, None):
        return AgentResult(True, exit_code, **common)
    error = cli.obj((final or {}).get("error"))
    message = cli.text(error.get("message")) or "; ".join(e for e in errors if e) or stderr.strip()[-500:]
    message = message or f"exited {exit_code} with no result"
    kind = _EXIT_KINDS.get(exit_code or 0) or failure.classify(f"{cli.text(error.get('type'))} {message}")
    kind = kind or (ErrorKind.CRASH if (exit_code or 0) < 0 else ErrorKind.UNKNOWN)
    return AgentResult(False, exit_code, error_kind=kind, error_message=message, **common)
