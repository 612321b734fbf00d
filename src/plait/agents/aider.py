"""Aider: `aider --message-file PROMPT --yes-always ...` (one message, apply the edits, exit).

Aider has no JSON output, no session id and exits 0 even when the model call failed, so the
result comes from its plain-text lines: `Applied edit to PATH`, `Tokens: 2.3k sent, 123 received.
Cost: $0.01 message, $0.02 session.`, and its error lines. It never commits (plait captures the
work) and keeps its history files in the log dir, not in the worktree.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from plait import proc
from plait.agents import cli_common as cli
from plait.agents import failure
from plait.agents.base import AgentRequest, AgentResult, ErrorKind, Permission, Tokens

STDOUT_FILE = "agent.stdout"  # plain text, not JSON lines
_APPLIED = re.compile(r"^Applied edit to (.+?)\s*$")
_TOKENS = re.compile(r"Tokens: ([\d.]+)([kKmM]?) sent(?:, ([\d.]+)([kKmM]?) cache write)?"
                     r"(?:, ([\d.]+)([kKmM]?) cache hit)?, ([\d.]+)([kKmM]?) received")
_COST = re.compile(r"Cost: \$([\d.]+) message, \$([\d.]+) session")
# Lines aider prints when a model call failed (it still exits 0). Anchored at the line start: the
# model's own answer, printed too, may well mention errors.
_ERROR_LINE = re.compile(r"^(litellm\.\w+Error|The API provider|Model .* has hit a token limit|Traceback|"
                         r"Unable to (send|reach|connect))|litellm\.\w+Error: \w+Error: ")
_RETRYING = re.compile(r"^Retrying in [\d.]+ seconds")
# Aider's start-up banner and notices: not part of what the model answered.
_BANNER = re.compile(r"^(Aider v|Model: |Weak model: |Git repo: |Repo-map: |Update git |https://aider\.chat/|"
                     r"Added .* to the chat|Warning: )")


def _number(value: str, suffix: str) -> int:
    scale = {"k": 1_000, "m": 1_000_000}.get(suffix.lower(), 1)
    return int(_float(value) * scale)


def _float(value: str) -> float:
    """A number aider printed; 0 for what only looks like one ("1.2.3")."""
    try:
        return float(value)
    except ValueError:
        return 0.0


class AiderAgent:
    name = "aider"

    def argv(self, request: AgentRequest, binary: str) -> list[str]:
        profile, logs = request.profile, request.log_dir
        message = logs / "aider-message.md"
        message.write_text(request.prompt)
        argv = [binary, "--message-file", str(message), "--yes-always", "--no-auto-commits", "--no-dirty-commits",
                "--no-gitignore", "--no-analytics", "--no-check-update", "--no-show-model-warnings",
                "--no-pretty", "--no-fancy-input", "--no-detect-urls", "--no-suggest-shell-commands",
                "--no-show-release-notes",
                "--map-tokens", "0",  # no repo map: it would leave a tags cache in the worktree
                "--input-history-file", str(logs / "aider.input.history"),
                "--chat-history-file", str(logs / "aider.chat.history.md"),
                "--llm-history-file", str(logs / "aider.llm.history")]
        base_url = request.env.get("OPENAI_BASE_URL")
        model = profile.model or ("openai/scripted" if base_url else None)
        if model:
            argv += ["--model", model]
        if base_url:
            argv += ["--openai-api-base", base_url]
        if profile.permission is Permission.READ_ONLY:
            argv += ["--dry-run"]  # aider's only way not to write: show the edits, apply none
        return argv + list(profile.extra_args)

    def env(self, request: AgentRequest) -> dict[str, str]:
        env = cli.quiet_env(request)
        home = cli.private_home(request, "aider")
        env["HOME"] = str(home)  # no ~/.aider.conf.yml, no analytics id
        # Aider downloads a model price map at start unless a fresh, non-empty cache of it exists; this
        # one makes it use the prices bundled with litellm, with no network traffic.
        prices = home / ".aider" / "caches" / "model_prices_and_context_window.json"
        if not prices.exists() or time.time() - prices.stat().st_mtime > 12 * 3600:
            prices.parent.mkdir(parents=True, exist_ok=True)
            prices.write_text('{"plait-placeholder": {"litellm_provider": "openai", "mode": "chat"}}')
        env.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        env.setdefault("PYTHONIOENCODING", "utf-8")
        env["COLUMNS"] = "1000"  # one message a line: aider wraps its output at the terminal width
        # Without a git identity Aider writes one into the repository's shared .git/config (and parallel
        # Aiders race on its lock). It never commits here, so an identity given through git's env does.
        count = int(env.get("GIT_CONFIG_COUNT") or 0)
        for key, value in (("user.name", "plait agent"), ("user.email", "agent@plait.invalid")):
            env[f"GIT_CONFIG_KEY_{count}"], env[f"GIT_CONFIG_VALUE_{count}"] = key, value
            count += 1
        env["GIT_CONFIG_COUNT"] = str(count)
        return env

    def run(self, request: AgentRequest) -> AgentResult:
        return cli.run_cli(request, "aider", self.argv, self.env, _read, prompt_on_stdin=False, stdout_name=STDOUT_FILE)


def _read(request: AgentRequest, done: proc.Completed) -> AgentResult:
    output = request.log_dir / STDOUT_FILE
    lines = output.read_text(errors="replace").splitlines() if output.exists() else []
    stopped = cli.stopped(request, done, STDOUT_FILE)
    if stopped is None:
        return replace(parse(lines, done.returncode, done.stderr), duration=done.duration)
    # Aider retries a rate limit for about a minute: stopped while retrying one, that is the cause.
    cause = parse(lines, None)
    retrying = cause.error_kind in (ErrorKind.RATE_LIMIT, ErrorKind.OVERLOADED, ErrorKind.NETWORK)
    if retrying and stopped.error_kind is ErrorKind.TIMEOUT:
        return replace(stopped, error_kind=cause.error_kind, error_message=f"{cause.error_message} (still "
                       f"retrying when stopped after {request.timeout:.0f}s)")
    return stopped


def parse(lines: Iterable[str], exit_code: int | None, stderr: str = "") -> AgentResult:
    """One AgentResult from aider's plain-text output."""
    files: list[str] = []
    tokens_in = tokens_out = cached = 0
    cost: float | None = None
    errors: list[str] = []
    errors_after_reply = 0  # errors since the last model reply (earlier ones were retried past)
    answer: list[str] = []
    for line in lines:
        applied = _APPLIED.match(line)
        if applied:
            files.append(applied.group(1))
            continue
        tokens = _TOKENS.search(line)
        if tokens:
            g = tokens.groups()
            tokens_in += _number(g[0], g[1])
            cached += _number(g[4], g[5]) if g[4] else 0
            tokens_out += _number(g[6], g[7])
            spent = _COST.search(line)
            cost = _float(spent.group(2)) if spent else cost
            errors_after_reply = 0
            continue
        error = _ERROR_LINE.search(line)
        if error:
            errors.append(line[error.start():].strip())
            errors_after_reply += 1
        elif line.strip() and not _RETRYING.match(line) and not _BANNER.match(line):
            answer.append(line.strip())
    common: dict[str, Any] = {"summary": "\n".join(answer[-20:]), "cost_usd": cost,
                              "tokens": Tokens(tokens_in, tokens_out, cached), "turns": 1 if tokens_in else None,
                              "files_changed": cli.unique(files)}
    # A model reply (its token line) with no error after it is a success; aider's exit code is 0 either way.
    if exit_code in (0, None) and tokens_in and not errors_after_reply:
        return AgentResult(True, exit_code, **common)
    recent = errors[-errors_after_reply:] if errors_after_reply else errors
    message = " ".join(recent[-3:]) or stderr.strip()[-500:] or "aider got no answer from the model"
    kind = failure.classify(message) or (ErrorKind.CRASH if (exit_code or 0) < 0 else ErrorKind.UNKNOWN)
    return AgentResult(False, exit_code, error_kind=kind, error_message=message, **common)
