"""Naming a failed run: its kind from the CLI's own wording or the provider's HTTP status, the provider's
retry-after hint, the line that says why a stuck CLI was stopped, and whether a resume found no session."""

from __future__ import annotations

import json
import re
from pathlib import Path

from plait import proc
from plait.agents.base import AgentResult, ErrorKind

_ERRORISH = re.compile(r"error|fail|refused|reconnect|retry|timed? ?out|unavailable|denied|exception|disconnect|"
                       r"overloaded|unable|cannot|could ?n[o']t|\b[45]\d\d\b", re.I)


def last_error_line(*paths: Path) -> str:
    """The last line that reads like an error in the tail of the first of `paths` that has one (the
    message of a JSON event), for saying why a stuck CLI was stopped."""
    for path in paths:
        for line in reversed(proc.tail(path, 16_000).splitlines()):
            said = _message_of(line.strip())
            if said and _ERRORISH.search(said):
                return said[:300]
    return ""


def _message_of(line: str) -> str:
    if not line.startswith("{"):
        return line
    try:
        event = json.loads(line)
    except ValueError:
        return line
    while isinstance(event, dict):
        found = next((event[k] for k in ("message", "error", "result") if event.get(k)), None)
        if isinstance(found, str):
            return found
        event = found
    return ""


# Ordered: the first pattern that matches names the error. Wording seen in the CLIs' own messages.
_PATTERNS: tuple[tuple[ErrorKind, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern, re.I)) for kind, pattern in (
        (ErrorKind.CONTEXT_LENGTH, r"prompt is too long|context[ _-]?(window|length)|too many tokens|"
                                   r"exceeds the (context|maximum number of tokens)|token limit|ran out of room"),
        (ErrorKind.QUOTA, r"exceeded your (current )?quota|quota exceeded|daily quota|usage limit|spend limit|"
                          r"billing|credit balance|insufficient_quota"),
        (ErrorKind.RATE_LIMIT, r"\b429\b|rate[ _-]?limit|too many requests|resource[ _]?(has been )?exhausted"),
        (ErrorKind.AUTH, r"\b401\b|authenticat|unauthori[sz]ed|(invalid|incorrect) (x-)?api[ _-]?key|"
                         r"api[ _-]?key (is )?(not valid|invalid|missing)|not logged in|log ?in required|run /login"),
        # Codex on an HTTP 500: "We're currently experiencing high demand, which may cause temporary errors."
        (ErrorKind.OVERLOADED, r"\b5(29|00|02|03|04)\b|overloaded|capacity|unavailable|internal (server )?error|"
                               r"high demand"),
        # The provider could not be reached, or the connection broke mid-stream: Claude Code "Connection
        # refused ... (ECONNREFUSED)", "Connection to the API was lost (ECONNRESET). This is usually temporary";
        # Codex "Reconnecting... waiting for network (Connection failed: error sending request)", "stream
        # disconnected before completion"; Gemini "fetch failed", "[API Error: terminated]"; OpenCode "Unable
        # to connect", "Connection reset by server"; Aider (litellm) "peer closed connection".
        (ErrorKind.NETWORK, r"connection (was )?(refused|reset|error|failed|dropped|closed|lost|timed out)|"
                            r"econn(refused|reset|aborted)|etimedout|eai_again|could ?n[o']t connect|"
                            r"(unable|cannot|can't|failed) to connect|fetch failed|network error|"
                            r"stream disconnected|disconnected before completion|error sending request|"
                            r"socket hang ?up|peer closed connection|incomplete chunked read|api error: terminated|"
                            r"name resolution|getaddrinfo|timed out"),
        (ErrorKind.OVERLOADED, r"usually temporary|temporary errors?|try again in a moment"),
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


# A provider's hint of how long to wait: "Please try again in 7s." (OpenAI, Anthropic), "Please retry in
# 6.2s." (Google), a `retry-after` header a CLI shows, or Google's RetryInfo `"retryDelay": "6s"`.
_HINT_IN = re.compile(r"\b(?:try again|retry)\s+(?:in|after)\s+(\d+(?:\.\d+)?)\s*"
                      r"(ms|milliseconds?|seconds?|secs?|s|minutes?|mins?|m|hours?|h)\b", re.I)
_HINT_HEADER = re.compile(r"\bretry[-_ ]after([-_]ms)?[\"']?\s*[:=]\s*[\"']?(\d+(?:\.\d+)?)", re.I)
_HINT_DELAY = re.compile(r"\"retryDelay\"\s*:\s*\"(\d+(?:\.\d+)?)s\"")


def retry_hint(*texts: str) -> float | None:
    """Seconds to wait before retrying, from the last hint in `texts` (None: no hint)."""
    found: float | None = None
    for value in texts:
        hints = [(m.start(), _seconds(float(m.group(1)), m.group(2))) for m in _HINT_IN.finditer(value)]
        hints += [(m.start(), float(m.group(2)) * (0.001 if m.group(1) else 1.0)) for m in _HINT_HEADER.finditer(value)]
        hints += [(m.start(), float(m.group(1))) for m in _HINT_DELAY.finditer(value)]
        if hints:
            found = max(hints)[1]
    return found


def _seconds(number: float, unit: str) -> float:
    unit = unit.lower()
    if unit == "ms" or unit.startswith("milli"):
        return number / 1000
    if unit.startswith("h"):
        return number * 3600
    return number * 60 if unit.startswith("m") else number


# What the CLIs say when asked to resume a session they do not have (never saved, or its home is gone):
# Claude Code, Codex, Gemini CLI (for an unknown id, and when it has no session at all), OpenCode.
_UNKNOWN_SESSION = re.compile(r"No conversation found with session ID|no rollout found for thread id|"
                              r"No previous sessions found|Invalid session identifier|Session not found", re.I)


def unknown_session(result: AgentResult) -> bool:
    """Whether the run failed because the CLI does not have the session it was asked to resume."""
    return not result.ok and _UNKNOWN_SESSION.search(result.error_message) is not None
