"""The built-in deterministic agents: the `script` agent's delay and the `shell` agent's template."""

from __future__ import annotations

import threading
from pathlib import Path

from plait.agents.base import AgentRequest, ErrorKind, Profile
from plait.agents.script import ScriptAgent, ShellAgent, fill
from plait.plan.model import Script


def _request(tmp_path: Path, profile: Profile, timeout: float, script: Script | None = None) -> AgentRequest:
    log_dir = tmp_path / "logs"
    log_dir.mkdir(exist_ok=True)
    return AgentRequest("t1", "the prompt\n", tmp_path, log_dir, profile, timeout, {"PATH": "/usr/bin:/bin"},
                        script=script)


def test_a_delay_longer_than_the_timeout_ends_at_the_timeout(tmp_path: Path) -> None:
    # A cancel set from outside bounds the test: the timeout must end the wait long before it.
    request = _request(tmp_path, Profile(name="script", adapter="script"), 0.2,
                       Script(write={"a.txt": "x"}, delay="1h"))
    guard = threading.Timer(120, request.cancel.set)
    guard.start()
    try:
        result = ScriptAgent().run(request)
    finally:
        guard.cancel()
    assert result.error_kind is ErrorKind.TIMEOUT and not result.ok and not request.cancel.is_set()
    assert not (tmp_path / "a.txt").exists()


def test_a_delay_within_the_timeout_still_edits(tmp_path: Path) -> None:
    request = _request(tmp_path, Profile(name="script", adapter="script"), 60, Script(write={"a.txt": "x"},
                                                                                       delay="0.1s"))
    assert ScriptAgent().run(request).ok and (tmp_path / "a.txt").read_text() == "x"


def test_shell_template_leaves_the_commands_own_braces_alone(tmp_path: Path) -> None:
    command = "awk '{print \"got: \" $0}' {prompt_file} && echo ${HOME:-none} {task_id}"
    result = ShellAgent().run(_request(tmp_path, Profile(name="lint", adapter="shell", command=command), 60))
    assert result.ok, result.error_message
    assert result.summary.splitlines() == ["got: the prompt", "none t1"]


def test_fill_replaces_only_the_known_placeholders() -> None:
    assert fill("{a} {b} {{a}} {c} {", a="1", b="x y") == "1 x y {1} {c} {"
