"""How a failed run is named: transient network and overload wording, retry-after hints, stalls.

The messages are the CLIs' own, captured from the real binaries pointed at a closed port, a server
that cuts its stream after the first event, and one that answers HTTP 500 or 429 with retry-after.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from plait import proc
from plait.agents import aider, claude, codex, gemini, opencode
from plait.agents.base import AgentRequest, ErrorKind, Profile
from plait.agents.cli_common import stopped
from plait.agents.failure import classify, retry_hint


@pytest.mark.parametrize(("message", "kind"), [
    # Connection refused / could not connect.
    ("API Error: Connection refused — a firewall or proxy may be blocking it (ECONNREFUSED)", ErrorKind.NETWORK),
    ("Reconnecting... waiting for network (Connection failed: error sending request)", ErrorKind.NETWORK),
    ("[API Error: exception TypeError: fetch failed sending request]", ErrorKind.NETWORK),
    ("APIError: Cannot connect to API: Unable to connect. Is the computer able to access the url?",
     ErrorKind.NETWORK),
    # A stream cut mid-way.
    ("API Error: Connection to the API was lost (ECONNRESET). This is usually temporary — try again.",
     ErrorKind.NETWORK),
    ("stream disconnected before completion: Transport error: network error: error decoding response body",
     ErrorKind.NETWORK),
    ("[API Error: terminated]", ErrorKind.NETWORK),
    ("APIError: Connection reset by server", ErrorKind.NETWORK),
    ("litellm.APIConnectionError: APIConnectionError: OpenAIException - peer closed connection without sending "
     "complete message body (incomplete chunked read)", ErrorKind.NETWORK),
    # Codex on an HTTP 500, and overload: transient, and not announced as a rate limit.
    ("We’re currently experiencing high demand, which may cause temporary errors.", ErrorKind.OVERLOADED),
    ("API Error: Repeated 529 Overloaded errors. The API is at capacity — this is usually temporary. Try again "
     "in a moment.", ErrorKind.OVERLOADED),
    ("Selected model is at capacity. Please try a different model.", ErrorKind.OVERLOADED),
    # Real rate limits stay rate limits.
    ("exceeded retry limit, last status: 429 Too Many Requests", ErrorKind.RATE_LIMIT),
    ("API Error: Request rejected (429) · Rate limit reached. Please try again in 7s.", ErrorKind.RATE_LIMIT),
])
def test_transient_wording_is_classified(message: str, kind: ErrorKind) -> None:
    assert classify(message) is kind and kind.transient


def test_each_parser_names_a_broken_connection_transient() -> None:
    refused = claude.parse([{"type": "result", "subtype": "success", "is_error": True, "session_id": "s",
                             "result": "API Error: Connection refused — a firewall or proxy may be blocking it "
                                       "(ECONNREFUSED)"}], 1)
    assert refused.error_kind is ErrorKind.NETWORK
    cut = codex.parse([{"type": "thread.started", "thread_id": "t"},
                       {"type": "turn.failed", "error": {"message": "stream disconnected before completion: "
                                                                    "Transport error: network error"}}], 1)
    assert cut.error_kind is ErrorKind.NETWORK
    busy = codex.parse([{"type": "turn.failed", "error": {
        "message": "We’re currently experiencing high demand, which may cause temporary errors."}}], 1)
    assert busy.error_kind is ErrorKind.OVERLOADED
    terminated = gemini.parse([{"type": "result", "status": "error",
                                "error": {"type": "unknown", "message": "[API Error: terminated]"}}], 1)
    assert terminated.error_kind is ErrorKind.NETWORK
    reset = opencode.parse([{"type": "error", "error": {"name": "APIError",
                                                        "data": {"message": "Connection reset by server"}}}], 1)
    assert reset.error_kind is ErrorKind.NETWORK
    # Aider prints the error right after the part of the answer it got, on the same line.
    partial = aider.parse(["Hellitellm.APIConnectionError: APIConnectionError: OpenAIException - peer closed "
                           "connection without sending complete message body (incomplete chunked read)"], 0)
    assert partial.error_kind is ErrorKind.NETWORK and partial.error_message.startswith("litellm.")


@pytest.mark.parametrize(("text", "seconds"), [
    ("Rate limit reached. Please try again in 7s.", 7.0),
    ("Rate limit reached for gpt-5 in organization org-x on tokens per min. Please try again in 20ms.", 0.02),
    ("Resource has been exhausted. Please retry in 6.153445193s.", 6.153445193),
    ('{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "31s"}', 31.0),
    ("retry-after: 12", 12.0),
    ("retry-after-ms: 1500", 1.5),
    ("You exceeded your limit; try again in 2 minutes", 120.0),
    ("Retrying in 8.0 seconds...", None),  # Aider's own back-off, not the provider's hint
    ("API Error: 529 Overloaded", None),
])
def test_retry_after_hints(text: str, seconds: float | None) -> None:
    assert retry_hint(text) == seconds


def test_opencode_passes_on_the_retry_after_header() -> None:
    event = {"type": "error", "sessionID": "ses_1", "error": {"name": "APIError", "data": {
        "message": "Rate limit reached.", "statusCode": 429, "responseHeaders": {"retry-after": "7"}}}}
    result = opencode.parse([event], 1)
    assert result.error_kind is ErrorKind.RATE_LIMIT and result.retry_after == 7.0


def test_a_stalled_run_names_the_last_error_the_cli_printed(tmp_path: Path) -> None:
    (tmp_path / "agent.jsonl").write_text(
        '{"type":"thread.started","thread_id":"t"}\n'
        '{"type":"error","message":"Reconnecting... 3/5 (Connection failed: error sending request)"}\n'
        '{"type":"item.completed","item":{"type":"reasoning","text":"thinking"}}\n')
    (tmp_path / "agent.stderr").write_text("WARNING: proceeding\n")
    profile = Profile(name="codex", adapter="codex", stall=300.0)
    request = AgentRequest("t1", "go", tmp_path, tmp_path, profile, 1800.0, {})
    done = proc.Completed(("codex",), -2, "", "", 300.5, stalled=True)
    result = stopped(request, done)
    assert result is not None and not result.ok and result.error_kind is ErrorKind.NETWORK
    assert result.error_message == ("stalled: no progress for 300s; last: Reconnecting... 3/5 (Connection failed: "
                                    "error sending request)")
    (tmp_path / "agent.jsonl").write_text("")
    quiet = stopped(request, done)
    assert quiet is not None and quiet.error_kind is ErrorKind.TIMEOUT and quiet.error_kind.transient
