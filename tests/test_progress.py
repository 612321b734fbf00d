"""What `plait run` and `plait status` print: the truth about integration and back-off, and nothing an
agent or a command printed can drive the user's terminal."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from plait.commands.progress import PlainProgress, describe
from plait.commands.run import render_status
from runfixtures import make_repo, plait, task, write_plan

HOSTILE = "evil\x1b]0;pwned\x07\x1b[2J\x1b[31mred\x00\x9b6n\rhidden"


def printed(kind: str, task: str | None, data: dict[str, Any]) -> str:
    out = io.StringIO()
    PlainProgress(Console(file=out, width=200))(kind, task, data)
    return out.getvalue()


def test_a_plan_without_an_integration_test_does_not_say_passed_none() -> None:
    line = describe("integration.verified", None, {"command": None, "ok": True, "exit_code": 0, "seconds": 0})
    assert line == "no integration test"
    line = describe("integration.verified", None, {"command": "pytest -q", "ok": False, "exit_code": 1})
    assert line == "integration test FAILED: pytest -q"


def test_a_real_run_without_integration_verify_says_there_is_no_integration_test(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    done = plait(repo, "run", str(write_plan(repo, [task("a", {"a.txt": "a\n"})])))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no integration test" in done.stdout
    assert "None" not in done.stdout


@pytest.mark.parametrize(("reason", "said"), [
    ("rate_limit", "rate limited"),
    ("overloaded", "provider overloaded"),
    ("timeout", "timed out"),
    ("crash", "agent crashed"),
    ("network", "network error"),
    ("something_new", "something new"),
])
def test_back_off_says_what_happened(reason: str, said: str) -> None:
    line = describe("limits.backoff", "a", {"profile": "claude", "concurrency": 2, "reason": reason})
    assert line == f"a: {said}: claude concurrency now 2"
    if reason != "rate_limit":
        assert "rate limit" not in line


def test_a_retry_names_its_cause_when_the_event_carries_one() -> None:
    line = describe("task.retry", "a", {"attempt": 1, "delay": 4.0, "error": "agent claude: overloaded: 529",
                                        "error_kind": "overloaded"})
    assert line == "a: provider overloaded; retrying in 4.0s: agent claude: overloaded: 529"
    line = describe("task.retry", "a", {"attempt": 1, "delay": 4.0, "error": "verify timed out", "kind": "timeout"})
    assert line.startswith("a: timed out; retrying in 4.0s")
    # Events from before the cause was recorded still read well.
    assert describe("task.retry", "a", {"attempt": 1, "delay": 2.0, "error": "x"}) == "a: retrying in 2.0s: x"


@pytest.mark.parametrize(("kind", "data"), [
    ("task.failed", {"error": HOSTILE, "blocks": []}),
    ("task.agent_done", {"ok": False, "error_kind": "unknown", "error_message": HOSTILE}),
    ("task.retry", {"delay": 1.0, "error": HOSTILE}),
    ("task.captured", {"commit": "abc", "files": [HOSTILE], "deviations": [HOSTILE]}),
    ("integration.verified", {"command": HOSTILE, "ok": False}),
    ("integration.conflict", {"conflict": HOSTILE}),
    ("some.future_event", {"detail": HOSTILE}),
])
def test_progress_lines_never_carry_control_characters(kind: str, data: dict[str, Any]) -> None:
    out = printed(kind, "a", data)
    assert not set(out) & {"\x1b", "\x07", "\x00", "\x9b", "\r"}, repr(out)
    assert "␛]0;pwned" in out  # visible, not silently gone


def test_status_table_shows_agent_errors_without_their_control_characters() -> None:
    doc = {"run_id": "r1", "status": "failed", "phase": "failed",
           "counts": {"done": 0, "running": 0, "retrying": 0, "pending": 0, "failed": 1, "blocked": 0},
           "tasks": [{"id": "a", "state": "failed", "level": 0, "attempt": 1, "started_at": 1.0, "finished_at": 2.0,
                      "verify": None, "branch": "plait/r1/a", "conflicts": [], "deviations": [HOSTILE],
                      "incidents": [HOSTILE], "error": f"[bold]{HOSTILE}"}],
           "metrics": {"rehearsal": False}, "evidence": "/x"}
    out = io.StringIO()
    render_status(doc, Console(file=out, width=400, force_terminal=True))
    text = out.getvalue()
    assert "\x07" not in text and "pwned" in text and "\x9b" not in text
    assert "]0;pwned" not in text.replace("␛]0;pwned", "")  # every ESC made visible
    assert "[bold]" in text, "an agent's brackets are text, not markup"
    assert "(rehearsal)" not in text

    out = io.StringIO()
    render_status({**doc, "metrics": {"rehearsal": True}}, Console(file=out, width=400))
    assert out.getvalue().startswith("run r1 failed (rehearsal); ")  # the phase, when it only repeats the status, not


def test_a_failing_command_cannot_send_escapes_to_the_terminal(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    plan = write_plan(repo, [
        task("a", {"a.txt": "a\n"}, script={"write": {"a.txt": "a\n"},
                                            "run": ["printf 'evil\\033]0;pwned\\007\\033[2J\\r\\n' >&2; exit 3"]}),
        task("b", {"b.txt": "b\n"}, verify="printf 'bad\\033[31mred\\007'; exit 1"),
    ])
    done = plait(repo, "run", str(plan))
    assert done.returncode == 1
    shown = plait(repo, "status")
    for out in (done.stdout, done.stderr, shown.stdout):
        assert "\x1b" not in out and "\x07" not in out, repr(out)
    assert "␛]0;pwned" in done.stdout
