"""OpenCode: `opencode run --format json`, the prompt on stdin.

OpenCode has no final result event in every version: success is "no `error` event and exit 0",
and the last `step_finish` says why the model stopped. Cost and tokens come from `step_finish`.
With OPENAI_BASE_URL in the agent's env, a provider `plait` (OpenAI-compatible) pointing at it is
declared through OPENCODE_CONFIG_CONTENT, so nothing is written into the worktree.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from plait.agents import cli_common as cli
from plait.agents import failure
from plait.agents.base import AgentRequest, AgentResult, ErrorKind, Permission, Tokens

PROVIDER = "plait"
_PERMISSIONS = {
    Permission.READ_ONLY: {"edit": "deny", "bash": "deny", "webfetch": "deny"},
    Permission.EDIT: {"edit": "allow", "bash": "allow", "webfetch": "deny"},
    Permission.FULL: {"edit": "allow", "bash": "allow", "webfetch": "allow"},
}
_FILE_TOOLS = {"write", "edit", "patch", "multiedit", "apply_patch"}


def config(request: AgentRequest) -> dict[str, Any]:
    data: dict[str, Any] = {"autoupdate": False, "share": "disabled",
                            "permission": _PERMISSIONS[request.profile.permission]}
    base_url = request.env.get("OPENAI_BASE_URL")
    if base_url:
        model = _model_id(request.profile.model)
        data["provider"] = {PROVIDER: {
            "npm": "@ai-sdk/openai-compatible", "name": "plait (OpenAI-compatible)",
            "options": {"baseURL": base_url, "apiKey": "{env:OPENAI_API_KEY}"},
            "models": {model: {"name": model}},
        }}
    return data


def _model_id(model: str | None) -> str:
    if not model:
        return "scripted"
    return model.split("/", 1)[1] if model.startswith(f"{PROVIDER}/") else model


class OpenCodeAgent:
    name = "opencode"

    def argv(self, request: AgentRequest, binary: str) -> list[str]:
        profile = request.profile
        argv = [binary, "run", "--format", "json"]
        if request.env.get("OPENAI_BASE_URL"):
            argv += ["-m", f"{PROVIDER}/{_model_id(profile.model)}"]
        elif profile.model:
            argv += ["-m", profile.model]
        if profile.permission is Permission.FULL:
            argv.append("--auto")
        if request.resume_session:
            argv += ["-s", request.resume_session]
        return argv + list(profile.extra_args)

    def env(self, request: AgentRequest) -> dict[str, str]:
        env = cli.quiet_env(request)
        home = cli.private_home(request, "opencode")
        # OpenCode keeps sessions, config, caches and logs under the XDG dirs: keep them private.
        for var, sub in (("XDG_DATA_HOME", "data"), ("XDG_CONFIG_HOME", "config"), ("XDG_STATE_HOME", "state"),
                         ("XDG_CACHE_HOME", "cache")):
            env.setdefault(var, str(home / sub))
        env["OPENCODE_CONFIG_CONTENT"] = json.dumps(config(request))
        env["OPENCODE_DISABLE_AUTOUPDATE"] = "1"
        env["OPENCODE_DISABLE_SHARE"] = "1"
        env.setdefault("OPENCODE_DISABLE_LSP_DOWNLOAD", "1")
        return env

    def run(self, request: AgentRequest) -> AgentResult:
        return cli.run_streaming(request, "opencode", self.argv, self.env, parse)


def parse(events: Iterable[dict[str, Any]], exit_code: int | None, stderr: str = "",
          worktree: Path | None = None) -> AgentResult:
    """One AgentResult from `opencode run --format json` events (unknown events and fields of the wrong type
    are skipped: this never raises)."""
    session: str | None = None
    texts: list[str] = []
    files: list[str] = []
    tally = cli.Tally()
    cost = 0.0
    steps = 0
    last_reason = ""
    errors: list[str] = []
    retry_after: float | None = None
    for event in events:
        kind = event.get("type")
        session = cli.text(event.get("sessionID")) or session
        part = cli.obj(event.get("part"))
        if kind == "text":
            texts.append(cli.text(part.get("text")))
        elif kind == "tool_use":
            state = cli.obj(part.get("state"))
            path = cli.obj(state.get("input")).get("filePath")
            done = state.get("status") == "completed"
            if cli.text(part.get("tool")) in _FILE_TOOLS and done and isinstance(path, str):
                files.append(cli.relative_to(worktree, path) if worktree else path)
        elif kind == "step_finish":
            steps += 1
            last_reason = cli.text(part.get("reason"))
            tokens = cli.obj(part.get("tokens"))
            tally.add(tokens, ("input", "input"), ("output", "output"))
            tally.add(cli.obj(tokens.get("cache")), ("input", "read"), ("input", "write"), ("cached", "read"))
            cost += cli.number(part.get("cost")) or 0.0
        elif kind == "error":
            errors.append(_error_text(event.get("error")))
            retry_after = _retry_after(event.get("error")) or retry_after
    common: dict[str, Any] = {
        "summary": (texts[-1] if texts else "").strip(), "session_id": session, "cost_usd": round(cost, 6),
        "tokens": Tokens(tally.input, tally.output, tally.cached), "turns": steps or None,
        "files_changed": cli.unique(files),
    }
    if not errors and steps and exit_code in (0, None) and last_reason != "length":
        return AgentResult(True, exit_code, **common)
    message = "; ".join(e for e in errors if e) or stderr.strip()[-500:]
    if not message and last_reason == "length":
        message = "the model stopped at its output limit"
    message = message or f"exited {exit_code} without a finished step"
    kind = failure.classify(message) or (ErrorKind.CRASH if (exit_code or 0) < 0 else ErrorKind.UNKNOWN)
    return AgentResult(False, exit_code, error_kind=kind, error_message=message, retry_after=retry_after, **common)


def _error_text(error: object) -> str:
    """OpenCode errors are {name, data: {message, statusCode, ...}}; keep name, status and message."""
    if not isinstance(error, dict):
        return cli.text(error) or "error"
    data = cli.obj(error.get("data"))
    status = cli.text(data.get("statusCode"))
    parts = [cli.text(error.get("name")), f"status {status}" if status else "", cli.text(data.get("message"))]
    return ": ".join(p for p in parts if p)


def _retry_after(error: object) -> float | None:
    """The provider's `retry-after` (or `retry-after-ms`) header, which OpenCode passes on with the error."""
    headers = cli.obj(cli.obj(cli.obj(error).get("data")).get("responseHeaders"))
    given = {name: cli.text(headers.get(name)) for name in ("retry-after", "retry-after-ms")}
    return failure.retry_hint(" ".join(f"{name}: {value}" for name, value in given.items() if value))
