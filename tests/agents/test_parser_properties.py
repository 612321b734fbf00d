"""Parsers never raise: every known event shape of every CLI, with values of the wrong JSON type put in
each of its fields (strings where objects are expected, lists, numbers, null, nested garbage)."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from agentkit import STREAMS
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from plait.agents import aider, claude, codex, cursor, gemini, opencode
from plait.agents.base import AgentResult, ErrorKind

Parser = Callable[[list[dict[str, Any]], int | None, str, Path | None], AgentResult]
PARSERS: dict[str, Parser] = {
    "claude": claude.parse, "codex": codex.parse, "cursor": cursor.parse, "opencode": opencode.parse,
    "gemini": lambda events, rc, err, wt: gemini.parse(events, rc, err, wt, "gemini-2.5-pro"),
}
WORKTREE = Path("/w")

# Shapes the recorded streams do not hold (refusals, tool results, errors), as the CLIs document them.
DOCUMENTED: dict[str, list[dict[str, Any]]] = {
    "claude": [
        {"type": "system", "subtype": "permission_denied", "tool_name": "Bash", "tool_use_id": "t2",
         "decision_reason": "dontAsk mode", "message": "Permission to use Bash has been denied.", "session_id": "s"},
        {"type": "assistant", "session_id": "s", "message": {"content": [
            {"type": "tool_use", "id": "t1", "name": "Write", "input": {"file_path": "/w/a.txt", "content": "x"}},
            {"type": "tool_use", "id": "t3", "name": "NotebookEdit", "input": {"notebook_path": "/etc/n.ipynb"}},
            {"type": "tool_use", "id": "t2", "name": "Bash", "input": {"command": "rm -rf /"}}]}},
        {"type": "user", "message": {"content": [
            {"type": "tool_result", "tool_use_id": "t1", "is_error": True,
             "content": [{"type": "text", "text": "EACCES: permission denied, open '/w/a.txt'"}]},
            {"type": "tool_result", "tool_use_id": "t3", "content": "ok"},
            {"type": "tool_result", "tool_use_id": "t2", "content": "rm: Permission denied"}]}},
        {"type": "system", "subtype": "api_retry", "attempt": 1, "error_status": 429, "retry_delay_ms": 500},
        {"type": "rate_limit_event", "rate_limit_info": {"status": "rejected", "resetsAt": 1}},
        {"type": "result", "subtype": "error_during_execution", "is_error": True, "result": "boom",
         "errors": ["Boom"], "api_error_status": 529, "terminal_reason": "api_error", "num_turns": 2,
         "total_cost_usd": 0.5, "session_id": "s", "usage": {"input_tokens": 1, "output_tokens": 2},
         "permission_denials": [{"tool_name": "Bash", "tool_use_id": "t9", "tool_input": {"command": "ls"}}]},
    ],
    "codex": [
        {"type": "item.completed", "item": {"type": "file_change", "status": "completed",
                                            "changes": [{"path": "/w/a.py", "kind": "update"}]}},
        {"type": "item.completed", "item": {"type": "command_execution", "aggregated_output": "Permission denied",
                                            "exit_code": 1}},
        {"type": "item.completed", "item": {"type": "error", "message": "boom"}},
        {"type": "error", "message": "Reconnecting... 1/5"},
        {"type": "turn.failed", "error": {"message": "stream disconnected before completion"}},
        {"type": "turn.completed", "usage": {"input_tokens": 1, "cached_input_tokens": 0, "output_tokens": 2}},
    ],
    "gemini": [
        {"type": "tool_use", "tool_name": "write_file", "tool_id": "w1", "parameters": {"file_path": "/w/a.txt"}},
        {"type": "tool_result", "tool_id": "w1", "status": "success"},
        {"type": "error", "severity": "error", "message": "boom"},
        {"type": "result", "status": "error", "error": {"type": "unknown", "message": "[API Error: terminated]"},
         "stats": {"input_tokens": 1, "output_tokens": 1, "cached": 0}},
    ],
    "opencode": [
        {"type": "tool_use", "sessionID": "ses_1", "part": {"tool": "write", "state": {
            "status": "completed", "input": {"filePath": "/w/a.txt"}}}},
        {"type": "step_finish", "sessionID": "ses_1", "part": {"reason": "stop", "cost": 0.1, "tokens": {
            "input": 1, "output": 2, "cache": {"read": 1, "write": 0}}}},
        {"type": "error", "sessionID": "ses_1", "error": {"name": "APIError", "data": {
            "message": "Rate limit reached", "statusCode": 429, "responseHeaders": {"retry-after": "7"}}}},
    ],
    "cursor": [
        {"type": "system", "subtype": "init", "session_id": "c1", "model": "m"},
        {"type": "tool_call", "subtype": "completed", "call_id": "t1", "session_id": "c1",
         "tool_call": {"writeToolCall": {"args": {"path": "/w/a.txt"}, "result": {"success": {}}}}},
        {"type": "result", "subtype": "success", "is_error": False, "result": "Done", "session_id": "c1",
         "usage": {"inputTokens": 1, "outputTokens": 2, "cacheReadTokens": 0}},
    ],
}
WRONG: list[Any] = [None, True, 0, -1, 2**70, 1.5, math.nan, math.inf, "", "text", "\x00/etc/passwd", [],
                    ["a", 1, None, {}], {}, {"message": {"content": 5}, "text": [1]}, [[{"x": None}]]]


def _recorded(cli: str) -> list[dict[str, Any]]:
    """The distinct event shapes (type, subtype) of the CLI's recorded streams."""
    shapes: dict[tuple[str, str], dict[str, Any]] = {}
    for stream in sorted((STREAMS / cli).glob("*.jsonl")):
        for line in stream.read_text().splitlines():
            event = json.loads(line) if line.startswith("{") else None
            if isinstance(event, dict):
                shapes.setdefault((str(event.get("type")), str(event.get("subtype"))), event)
    return list(shapes.values())


SHAPES = {cli: _recorded(cli) + DOCUMENTED[cli] for cli in PARSERS}


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in a JSON value: the keys and indexes that lead to it (in a list, the first two
    items stand for the rest)."""
    items = value.items() if isinstance(value, dict) else enumerate(value[:2]) if isinstance(value, list) else ()
    for key, child in items:
        yield (*prefix, key)
        yield from _paths(child, (*prefix, key))


def _put(event: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """A copy of `event` with `value` at `path` (unchanged when an earlier change removed the path)."""
    changed = copy.deepcopy(event)
    holder: Any = changed
    for key in path[:-1]:
        try:
            holder = holder[key]
        except (KeyError, IndexError, TypeError):
            return changed
    if isinstance(holder, dict) or (isinstance(holder, list) and isinstance(path[-1], int) and
                                    path[-1] < len(holder)):
        holder[path[-1]] = value
    return changed


def _check(result: AgentResult) -> None:
    """The result is well typed, whatever the stream held."""
    assert isinstance(result.ok, bool)
    assert result.error_kind is None or isinstance(result.error_kind, ErrorKind)
    assert isinstance(result.summary, str) and isinstance(result.error_message, str)
    assert result.session_id is None or (isinstance(result.session_id, str) and result.session_id)
    assert result.turns is None or type(result.turns) is int
    assert result.cost_usd is None or (type(result.cost_usd) is float and math.isfinite(result.cost_usd))
    assert result.retry_after is None or (type(result.retry_after) is float and math.isfinite(result.retry_after))
    assert all(type(n) is int for n in (result.tokens.input, result.tokens.output, result.tokens.cached))
    assert all(isinstance(p, str) for p in (*result.files_changed, *result.blocked))
    assert result.ok or result.error_kind is not None


@pytest.mark.parametrize("cli", sorted(PARSERS))
def test_each_field_of_each_known_event_may_hold_any_json_type(cli: str) -> None:
    parse = PARSERS[cli]
    for shape in SHAPES[cli]:
        for path in _paths(shape):
            for value in WRONG:
                events = [*SHAPES[cli], _put(shape, path, value)]
                for exit_code in (0, 1):
                    _check(parse(events, exit_code, "", WORKTREE))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["type", "message", "content", "text", "error", "data", "id", "name", "input", "path"]) |
        st.text(max_size=4), inner, max_size=3),
    max_leaves=10)


@st.composite
def streams(draw: st.DrawFn, cli: str) -> list[dict[str, Any]]:
    events = []
    for shape in draw(st.lists(st.sampled_from(SHAPES[cli]), min_size=1, max_size=6)):
        paths = list(_paths(shape))
        event = shape
        for path in draw(st.lists(st.sampled_from(paths), max_size=3)) if paths else []:
            event = _put(event, path, draw(JSON))
        events.append(event)
    return events


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("cli", sorted(PARSERS))
@SETTINGS
@given(data=st.data())
def test_streams_of_mangled_events_never_raise(cli: str, data: st.DataObject) -> None:
    events = data.draw(streams(cli))
    exit_code = data.draw(st.none() | st.integers(-15, 255))
    _check(PARSERS[cli](events, exit_code, data.draw(st.text(max_size=40)), WORKTREE))


AIDER_LINES = ["Applied edit to src/a.py", "Tokens: 12k sent, 1.5k cache write, 3.2k cache hit, 456 received. "
               "Cost: $0.04 message, $0.09 session.", "litellm.RateLimitError: RateLimitError: Please try again in 7s",
               "Retrying in 0.2 seconds...", "The API provider's servers are down or overloaded."]


@SETTINGS
@given(lines=st.lists(st.sampled_from(AIDER_LINES) | st.text(max_size=30) |
                      st.from_regex(r"Tokens: [\d.]{1,5}[kKmM]? sent, [\d.]{1,5} received\. "
                                    r"Cost: \$[\d.]{1,4} message, \$[\d.]{1,4} session\.", fullmatch=True),
                      max_size=8),
       exit_code=st.none() | st.integers(-15, 255))
@example(lines=["Tokens: 1.2.3k sent, 5 received. Cost: $. message, $.. session."], exit_code=0)
def test_aider_text_never_raises(lines: list[str], exit_code: int | None) -> None:
    _check(aider.parse(lines, exit_code, ""))


def test_a_tool_claude_code_refused_is_reported_as_blocked() -> None:
    # Claude Code 2.1 in a read-only profile (or on `rm -rf`, or an edit to .git): `message` is a string.
    init = {"type": "system", "subtype": "init", "session_id": "s1"}
    refusal = {"type": "system", "subtype": "permission_denied", "tool_name": "Bash", "tool_use_id": "t1",
               "message": "Permission to use Bash has been denied because Claude Code is running in don't ask mode. "
                          "IMPORTANT: You *may* attempt to accomplish this action using other tools.",
               "session_id": "s1"}
    final = {"type": "result", "subtype": "success", "is_error": False, "result": "could not", "session_id": "s1",
             "permission_denials": [{"tool_name": "Bash", "tool_use_id": "t1", "tool_input": {"command": "rm -rf /"}},
                                    {"tool_name": "Write", "tool_use_id": "t2",
                                     "tool_input": {"file_path": "/w/.git/config"}}]}
    result = claude.parse([init, refusal, final], 0, "", WORKTREE)
    assert result.ok and result.blocked == (
        "refused by Claude Code: Permission to use Bash has been denied because Claude Code is running in don't "
        "ask mode", "refused by Claude Code: Write /w/.git/config")
    no_result = claude.parse([init, refusal], 1, "", WORKTREE)
    assert not no_result.ok and no_result.blocked and no_result.session_id == "s1"
