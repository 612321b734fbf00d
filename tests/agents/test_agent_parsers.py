"""Adapter parsing on streams recorded from the real CLIs (tests/agents/record_streams.py), plus
garbage lines and the documented shapes of streams that cannot be recorded here."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from agentkit import STREAMS

from plait.agents import aider, claude, codex, cursor, gemini, opencode
from plait.agents.base import AgentResult, ErrorKind, Tokens
from plait.agents.cli_common import estimate_cost, read_events

Parser = Callable[..., AgentResult]
PARSERS: dict[str, Parser] = {"claude": claude.parse, "codex": codex.parse, "gemini": gemini.parse,
                              "opencode": opencode.parse}
EXPECTED_KIND = {"success": None, "success_function_tools": None, "rate_limit": ErrorKind.RATE_LIMIT,
                 "overloaded": ErrorKind.OVERLOADED, "auth": ErrorKind.AUTH, "max_turns": ErrorKind.MAX_TURNS,
                 "context_length": ErrorKind.CONTEXT_LENGTH, "budget": ErrorKind.BUDGET}
RECORDED = sorted(STREAMS.glob("*/*.meta.json"))
# Fields added to AgentResult after the streams were recorded, as a parser leaves them (the adapter's run
# fills in binary and version).
NEWER_FIELDS = {"blocked": [], "retry_after": None, "binary": None, "version": None}


def _expected(cli: str, case: str, meta: dict[str, Any]) -> dict[str, Any]:
    """What the recorded run reported, with what plait reads from the same stream since."""
    expected = {**NEWER_FIELDS, **meta["result"]}
    if cli == "gemini" and case not in ("success", "max_turns"):
        expected["session_id"] = None  # the first request failed: Gemini CLI kept no session to resume
    if cli == "opencode" and case in ("rate_limit", "overloaded"):
        expected["retry_after"] = 0.01  # the scripted server's retry-after-ms, passed on by OpenCode
    return expected
GARBAGE = ["not json at all", "{broken json", '{"type": "from_a_future_version", "x": 1}', "[1, 2, 3]", "",
           '"just a string"', '{"no_type": true}']


def _parse(cli: str, meta: dict[str, Any], stream: Path, lines: list[str] | None = None) -> AgentResult:
    exit_code, stderr, worktree = meta["exit_code"], meta["stderr"], Path(meta["worktree"])
    text = lines if lines is not None else stream.read_text().splitlines()
    if cli == "aider":
        return aider.parse(text, exit_code, stderr)
    events = [e for e in (json.loads(line) for line in text if line.startswith("{") and _is_json(line))
              if isinstance(e, dict)]
    if cli in ("codex", "gemini"):  # their cost is estimated from the profile's model
        return PARSERS[cli](events, exit_code, stderr, worktree, meta["options"].get("model"))
    return PARSERS[cli](events, exit_code, stderr, worktree)


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
        return True
    except ValueError:
        return False


def _summary(result: AgentResult) -> dict[str, Any]:
    data = asdict(result)
    data["error_kind"] = result.error_kind.value if result.error_kind else None
    data.pop("duration")
    return json.loads(json.dumps(data))


@pytest.mark.parametrize("meta_path", RECORDED, ids=lambda p: f"{p.parent.name}-{p.name.split('.')[0]}")
def test_recorded_stream_parses_to_what_the_run_reported(meta_path: Path) -> None:
    cli, case = meta_path.parent.name, meta_path.name.split(".")[0]
    meta = json.loads(meta_path.read_text())
    stream = meta_path.with_name(f"{case}.{'txt' if cli == 'aider' else 'jsonl'}")
    result = _parse(cli, meta, stream)
    expected = EXPECTED_KIND[case]
    assert result.ok is (expected is None)
    assert result.error_kind is expected, result.error_message
    recorded = _expected(cli, case, meta)
    if "still retrying when stopped" in recorded["error_message"]:
        # Aider stopped by the timeout while retrying: the adapter adds how it ended to the cause.
        assert recorded.pop("error_message").startswith(result.error_message)
        recorded["error_message"], recorded["exit_code"] = result.error_message, result.exit_code
    assert _summary(result) == recorded
    if expected is None:
        assert "notes/hello.txt" in result.files_changed or cli == "codex"
        assert result.tokens.input > 0 and result.tokens.output > 0
    else:
        assert result.error_message


@pytest.mark.parametrize("meta_path", [p for p in RECORDED if p.parent.name != "aider"],
                         ids=lambda p: f"{p.parent.name}-{p.name.split('.')[0]}")
def test_garbage_and_unknown_events_are_skipped(meta_path: Path) -> None:
    cli, case = meta_path.parent.name, meta_path.name.split(".")[0]
    meta = json.loads(meta_path.read_text())
    stream = meta_path.with_name(f"{case}.jsonl")
    lines = stream.read_text().splitlines()
    noisy: list[str] = []
    for index, line in enumerate(lines):
        noisy += [GARBAGE[index % len(GARBAGE)], line]
    path = meta_path.parent / "unused"
    assert _summary(_parse(cli, meta, path, noisy + GARBAGE)) == _expected(cli, case, meta)


def test_read_events_skips_what_is_not_a_json_object(tmp_path: Path) -> None:
    stream = tmp_path / "agent.jsonl"
    stream.write_text("\n".join([*GARBAGE, '{"type": "ok"}', "\x00\xff binary"]) + "\n")
    assert list(read_events(stream)) == [{"type": "from_a_future_version", "x": 1}, {"no_type": True},
                                         {"type": "ok"}]
    assert list(read_events(tmp_path / "missing.jsonl")) == []


def test_claude_api_error_reported_as_success_subtype_is_a_failure() -> None:
    # Claude Code reports API failures as subtype "success" with is_error: the flag decides.
    quota = {"type": "result", "subtype": "success", "is_error": True, "api_error_status": 429,
             "result": "You've hit your monthly spend limit.", "session_id": "s1", "total_cost_usd": 0.001}
    result = claude.parse([quota], 1)
    assert not result.ok and result.error_kind is ErrorKind.QUOTA and result.session_id == "s1"
    overloaded = {**quota, "api_error_status": 529, "result": "API Error: 529 Overloaded."}
    assert claude.parse([overloaded], 1).error_kind is ErrorKind.OVERLOADED
    failed_exec = {"type": "result", "subtype": "error_during_execution", "is_error": True, "result": "",
                   "errors": ["Boom"]}
    assert claude.parse([failed_exec], 1).error_message == "Boom"


def test_claude_without_a_result_line_uses_stderr_and_retries_seen() -> None:
    crash = claude.parse([], 1, "Error: When using --print, --output-format=stream-json requires --verbose")
    assert not crash.ok and crash.error_kind is ErrorKind.UNKNOWN and "--verbose" in crash.error_message
    retry = {"type": "system", "subtype": "api_retry", "attempt": 3, "error_status": 429, "session_id": "s"}
    assert claude.parse([retry], -9).error_kind is ErrorKind.RATE_LIMIT


def test_codex_file_changes_and_failed_turns() -> None:
    events = [{"type": "thread.started", "thread_id": "t1"},
              {"type": "item.completed", "item": {"type": "file_change", "status": "completed",
                                                  "changes": [{"path": "/w/src/a.py", "kind": "update"}]}},
              {"type": "error", "message": "Reconnecting... 1/5"},
              {"type": "turn.failed", "error": {"message": "stream disconnected: 503 Service Unavailable"}}]
    result = codex.parse(events, 1, "", Path("/w"))
    assert result.files_changed == ("src/a.py",) and result.error_kind is ErrorKind.OVERLOADED
    assert codex.parse([*events[:2], {"type": "turn.completed", "usage": {"input_tokens": 10}}], 0).ok


def test_opencode_error_event_with_status() -> None:
    events = [{"type": "error", "sessionID": "ses_1", "error": {"name": "APIError", "data": {
        "message": "Invalid API key", "statusCode": 401}}}]
    result = opencode.parse(events, 1)
    assert not result.ok and result.error_kind is ErrorKind.AUTH and result.session_id == "ses_1"
    assert "status 401" in result.error_message


def test_aider_token_and_cost_lines() -> None:
    lines = ["Applied edit to src/a.py",
             "Tokens: 12k sent, 1.5k cache write, 3.2k cache hit, 456 received. Cost: $0.04 message, $0.09 session."]
    result = aider.parse(lines, 0)
    assert result.ok and result.files_changed == ("src/a.py",) and result.cost_usd == 0.09
    assert result.tokens == Tokens(12_000, 456, 3_200)
    assert not aider.parse(["Aider v0.86.2"], 0).ok  # no answer from the model: not a success
    retried = ["litellm.RateLimitError: RateLimitError: OpenAIException - Rate limit reached",
               "Retrying in 0.2 seconds...", 'raise ValueError("Error: the model may say this")',
               "Tokens: 1k sent, 10 received."]
    assert aider.parse(retried, 0).ok  # a rate limit retried past, and an answer that mentions an error
    assert aider.parse([*retried, "litellm.APIConnectionError: gone"], 0).error_kind is ErrorKind.UNKNOWN


def test_cursor_documented_stream() -> None:
    # The Cursor CLI cannot be installed here: this is its documented stream-json shape.
    events = [
        {"type": "system", "subtype": "init", "session_id": "c6b6", "model": "Claude 4 Sonnet"},
        {"type": "tool_call", "subtype": "completed", "call_id": "t1", "session_id": "c6b6",
         "tool_call": {"writeToolCall": {"args": {"path": "/w/a.txt"}, "result": {"success": {}}}}},
        {"type": "result", "subtype": "success", "is_error": False, "result": "Done!", "session_id": "c6b6",
         "usage": {"inputTokens": 100, "outputTokens": 20, "cacheReadTokens": 50}},
    ]
    result = cursor.parse(events, 0, "", Path("/w"))
    assert result.ok and result.files_changed == ("a.txt",) and result.tokens == Tokens(150, 20, 50)
    failed = cursor.parse([], 1, "Authentication required. Please run 'cursor-agent login' first.")
    assert not failed.ok and failed.error_kind is ErrorKind.AUTH


def test_gemini_exit_codes_name_the_error() -> None:
    assert gemini.parse([], 41, "Please set an Auth method").error_kind is ErrorKind.AUTH
    assert gemini.parse([], 53, "").error_kind is ErrorKind.MAX_TURNS


def test_cost_estimate_uses_the_price_table() -> None:
    assert estimate_cost("gpt-5", Tokens(1_000_000, 1_000_000, 0)) == 11.25
    # One million fresh input tokens at $0.25 and one million cached at $0.025.
    assert estimate_cost("openai/gpt-5-mini", Tokens(2_000_000, 0, 1_000_000)) == 0.275
    assert estimate_cost("some-new-model", Tokens(10, 10, 0)) is None and estimate_cost(None, Tokens()) is None
