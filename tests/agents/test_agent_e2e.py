"""The real agent CLIs (installed by scripts/install-agent-clis) against the scripted model server."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from agentkit import REAL_CLIS, make_worktree, run_cli, server_env

from plait.agents.base import AgentRequest, ErrorKind, Permission, Profile
from plait.agents.registry import make_agent
from plait.testing import ModelServer, Scenario, agent_bin, edit, fail, hang, run, text, write

Need = Callable[[str], Path]


@pytest.mark.parametrize("cli", REAL_CLIS)
def test_cli_writes_the_scripted_file(cli: str, tmp_path: Path, require_cli: Need) -> None:
    require_cli(cli)
    with ModelServer() as server:
        outcome = run_cli(cli, tmp_path, server, Scenario([write("src/greeting.txt", "hello, plait\n"),
                                                           text("Wrote src/greeting.txt.")]))
        requests = server.requests_for("key")
    result = outcome.result
    assert result.ok, result.error_message
    assert (outcome.worktree / "src" / "greeting.txt").read_text() == "hello, plait\n"
    assert result.tokens.input > 0 and result.error_kind is None and result.exit_code == 0
    assert requests and all(r.status == 200 for r in requests)
    assert result.binary == str(require_cli(cli)) and result.version and any(c.isdigit() for c in result.version)
    if cli != "codex":  # Codex writes through its shell tool: no file event to read
        assert result.files_changed == ("src/greeting.txt",)
    if cli != "aider":  # Aider has no sessions
        assert result.session_id
        assert "Wrote src/greeting.txt." in result.summary
    assert (outcome.log_dir / ("agent.stdout" if cli == "aider" else "agent.jsonl")).stat().st_size > 0


@pytest.mark.parametrize("cli", REAL_CLIS)
def test_rate_limited_run_says_rate_limit(cli: str, tmp_path: Path, require_cli: Need) -> None:
    require_cli(cli)
    # Aider retries a rate limit for about a minute; its adapter reports the cause when the timeout stops
    # it. The timeout leaves room for Aider's slow start on a loaded machine (6 s was seen to be too short).
    timeout = 25 if cli == "aider" else 60
    with ModelServer() as server:
        outcome = run_cli(cli, tmp_path, server, Scenario([fail(429)]), timeout=timeout)
        statuses = [r.status for r in server.requests_for("key")]
    assert not outcome.result.ok
    assert outcome.result.error_kind is ErrorKind.RATE_LIMIT, outcome.result.error_message
    assert statuses and set(statuses) == {429}


def test_claude_edits_and_runs_commands(tmp_path: Path, require_cli: Need) -> None:
    require_cli("claude")
    scenario = Scenario([edit("README.md", "line two", "line 2"), run("echo ran > ran.txt"), text("ok")])
    with ModelServer() as server:
        outcome = run_cli("claude", tmp_path, server, scenario)
    assert outcome.result.ok, outcome.result.error_message
    assert (outcome.worktree / "README.md").read_text() == "# readme\nline 2\n"
    assert (outcome.worktree / "ran.txt").read_text() == "ran\n"
    assert outcome.result.turns and outcome.result.turns >= 3 and outcome.result.cost_usd


@pytest.mark.parametrize("cli", ["claude", "codex", "gemini", "opencode"])
def test_resume_continues_the_session(cli: str, tmp_path: Path, require_cli: Need) -> None:
    require_cli(cli)
    scenario = Scenario([write("a.txt", "A\n"), text("first part done"), write("b.txt", "B\n")])
    with ModelServer() as server:
        first = run_cli(cli, tmp_path, server, scenario)
        assert first.result.ok and first.result.session_id, first.result.error_message
        assert not (first.worktree / "b.txt").exists()
        second = run_cli(cli, tmp_path, server, scenario, resume=first.result.session_id, attempt=2)
        turns = [r.turn for r in server.requests_for("key")]
    assert second.result.ok, second.result.error_message
    assert second.result.session_id == first.result.session_id
    assert (second.worktree / "b.txt").read_text() == "B\n"
    assert max(turns) == 3  # the resumed conversation carried the first run's turns


def test_hard_timeout_stops_a_hanging_model(tmp_path: Path, require_cli: Need) -> None:
    require_cli("claude")
    with ModelServer() as server:
        outcome = run_cli("claude", tmp_path, server, Scenario([hang(120)]), timeout=3)
    assert outcome.result.error_kind is ErrorKind.TIMEOUT and not outcome.result.ok
    assert 3 <= outcome.result.duration < 15


def test_cancel_stops_the_cli(tmp_path: Path, require_cli: Need) -> None:
    require_cli("codex")
    with ModelServer(Scenario([hang(120)])) as server:
        profile = Profile(name="codex", adapter="codex", binary=str(agent_bin("codex")))
        request = AgentRequest("t1", "go", make_worktree(tmp_path), tmp_path / "logs" / "attempt-1", profile, 60,
                               server_env(server, "key", tmp_path))
        timer = threading.Timer(1.0, request.cancel.set)
        timer.start()
        result = make_agent(profile).run(request)
        timer.join()
    assert result.error_kind is ErrorKind.CANCELLED and result.duration < 15


@pytest.fixture
def dead_url() -> Iterator[str]:
    """A loopback address where nothing listens: a bound socket that never accepts refuses connections."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def _dead_request(cli: str, tmp_path: Path, url: str, stall: float | None = None) -> AgentRequest:
    profile = Profile(name=cli, adapter=cli, binary=str(agent_bin(cli)), stall=stall)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LANG": "C.UTF-8", "ANTHROPIC_BASE_URL": url,
           "ANTHROPIC_API_KEY": "key", "OPENAI_BASE_URL": f"{url}/v1", "OPENAI_API_KEY": "key"}
    return AgentRequest("t1", "go", make_worktree(tmp_path), tmp_path / "logs" / "attempt-1", profile, 300, env)


def test_codex_reconnecting_to_a_dead_server_stalls_with_the_cause(tmp_path: Path, require_cli: Need,
                                                                   dead_url: str) -> None:
    # Codex retries a refused connection for ever ("Reconnecting... waiting for network"), printing a
    # notice now and then: those notices are not progress, so the stall detector stops it.
    require_cli("codex")
    result = make_agent(Profile(name="codex", adapter="codex")).run(_dead_request("codex", tmp_path, dead_url, 5))
    assert not result.ok and result.error_kind is ErrorKind.NETWORK, result.error_message
    assert result.error_message.startswith("stalled: no progress for 5s; last: Reconnecting... ")


def test_claude_refused_connection_is_a_network_error(tmp_path: Path, require_cli: Need, dead_url: str) -> None:
    require_cli("claude")
    result = make_agent(Profile(name="claude", adapter="claude")).run(_dead_request("claude", tmp_path, dead_url))
    assert result.error_kind is ErrorKind.NETWORK and result.error_kind.transient, result.error_message
    assert "ECONNREFUSED" in result.error_message


def test_claude_passes_on_the_providers_retry_after(tmp_path: Path, require_cli: Need) -> None:
    require_cli("claude")
    with ModelServer() as server:
        outcome = run_cli("claude", tmp_path, server, Scenario([fail(429, "Rate limit reached. Please try again "
                                                                          "in 7s.")]))
    assert outcome.result.error_kind is ErrorKind.RATE_LIMIT and outcome.result.retry_after == 7.0


def test_claude_reports_a_tool_it_refused(tmp_path: Path, require_cli: Need) -> None:
    # A read-only profile: Claude Code refuses the write itself and says so with a permission_denied event.
    require_cli("claude")
    with ModelServer() as server:
        outcome = run_cli("claude", tmp_path, server, Scenario([write("a.txt", "A\n"), text("gave up")]),
                          permission=Permission.READ_ONLY)
    assert not (outcome.worktree / "a.txt").exists()
    assert any(line.startswith("refused by Claude Code: ") for line in outcome.result.blocked), outcome.result


def test_gemini_keeps_no_session_its_first_request_lost(tmp_path: Path, require_cli: Need) -> None:
    require_cli("gemini")
    with ModelServer() as server:
        outcome = run_cli("gemini", tmp_path, server, Scenario([fail(400, "bad request")]))
    assert not outcome.result.ok and outcome.result.session_id is None


@pytest.mark.parametrize("cli", ["claude", "codex", "gemini"])
def test_resuming_a_session_the_cli_does_not_have_starts_fresh(cli: str, tmp_path: Path, require_cli: Need) -> None:
    require_cli(cli)
    with ModelServer() as server:
        outcome = run_cli(cli, tmp_path, server, Scenario([write("a.txt", "A\n"), text("done")]),
                          resume="0198f0c4-2f2b-7352-8f3e-85e767f3290d")
    assert outcome.result.ok, outcome.result.error_message
    assert (outcome.worktree / "a.txt").read_text() == "A\n"
    assert outcome.result.session_id and outcome.result.session_id != "0198f0c4-2f2b-7352-8f3e-85e767f3290d"
    assert (outcome.log_dir / "agent.resume-failed.stderr").exists()
