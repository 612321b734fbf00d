"""`plait mcp` as a real subprocess over stdio: a whole run driven through the SDK's stdio client; the server
killed with SIGKILL mid-run while the run finishes and a new session sees it complete, with nothing on the
server's stdout but protocol messages; and the real Claude Code binary as the MCP client, driven by plait's
scripted model server, calling plait's `run` and `status` tools."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from gitfixtures import make_repo
from plait.testing import ModelServer, Scenario, call, hang, text
from runfixtures import git, require_cli
from test_mcp import DEADLINE, PLAN, until_finished
from test_mcp import call as structured

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def gated_plan(gate: Path) -> str:
    """PLAN, with task a waiting until the test creates `gate` (an event, not a delay)."""
    return PLAN.replace("script: {write: {a.txt: a}}",
                        f"script: {{write: {{a.txt: a}}, run: ['while [ ! -f {gate} ]; do sleep 0.05; done']}}")


def stdio(repo: Path) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "plait", "mcp"], cwd=str(repo),
                                 env={**os.environ, "PYTHONUNBUFFERED": "1"})


async def test_a_whole_run_over_a_real_stdio_subprocess(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n", "plan.yaml": PLAN})
    async with Client(stdio(repo)) as client:
        run_id = (await structured(client, "run", plan="plan.yaml"))["run_id"]
        assert (await until_finished(client, run_id))["status"] == "completed"
        reported = await structured(client, "report", run_id=run_id)
        assert "tasks 2/2 done" in reported["report"]
    assert git(repo, "show", f"plait/{run_id}/integration:a.txt") == "a"


class RawSession:
    """A stdio MCP session spoken by hand, so every byte the server writes to stdout is seen."""

    def __init__(self, repo: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "plait", "mcp"], cwd=repo, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.lines: list[bytes] = []
        self.buffer = b""

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        self.proc.stdin.flush()

    def request(self, rid: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        deadline = time.monotonic() + DEADLINE
        while True:
            for line in self.read_lines(deadline):
                message = json.loads(line)
                if message.get("id") == rid:
                    return dict(message)

    def read_lines(self, deadline: float) -> list[bytes]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            assert left > 0, "no answer from the MCP server"
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                assert chunk, "the MCP server closed its stdout"
                self.buffer += chunk
        *complete, self.buffer = self.buffer.split(b"\n")
        self.lines += complete
        return complete

    def rest(self) -> bytes:
        """What was still unread on stdout once the process ended."""
        assert self.proc.stdout is not None
        return self.buffer + self.proc.stdout.read()


async def test_a_run_outlives_a_killed_server_and_stdout_carries_only_protocol(tmp_path: Path) -> None:
    gate = tmp_path / "go"
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n", "plan.yaml": gated_plan(gate)})
    raw = RawSession(repo)
    init = raw.request(1, "initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                         "clientInfo": {"name": "raw", "version": "0"}})
    assert init["result"]["serverInfo"]["name"] == "plait"
    raw.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    started = raw.request(2, "tools/call", {"name": "run", "arguments": {"plan": "plan.yaml"}})
    run_id = started["result"]["structuredContent"]["run_id"]
    checked = raw.request(3, "tools/call", {"name": "status", "arguments": {"run_id": run_id}})
    assert checked["result"]["structuredContent"]["status"] == "running"
    raw.proc.send_signal(signal.SIGKILL)  # mid-run: task a waits for the gate
    raw.proc.wait(timeout=DEADLINE)
    tail = raw.rest()
    for line in [*raw.lines, *tail.split(b"\n")]:
        if line.strip():
            assert json.loads(line)["jsonrpc"] == "2.0", line  # nothing but protocol messages
    gate.write_text("")
    async with Client(stdio(repo)) as client:  # a new session, a new server process
        doc = await until_finished(client, run_id)
    assert doc["status"] == "completed" and doc["counts"]["done"] == 2


def test_claude_code_as_the_mcp_client_runs_a_plan_through_plait(tmp_path: Path) -> None:
    binary = require_cli("claude")
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n", "plan.yaml": PLAN})
    home = tmp_path / "home"
    home.mkdir()
    # The README's way: `claude mcp add --scope project plait -- plait mcp` writes .mcp.json.
    subprocess.run([str(binary), "mcp", "add", "--scope", "project", "plait", "--", sys.executable, "-m", "plait",
                    "mcp"], cwd=repo, env={"PATH": os.environ["PATH"], "HOME": str(home)}, check=True,
                   capture_output=True, timeout=DEADLINE)
    config = repo / ".mcp.json"
    assert json.loads(config.read_text())["mcpServers"]["plait"]["args"] == ["-m", "plait", "mcp"]
    scenario = Scenario([call("mcp__plait__run", plan="plan.yaml"), hang(1.0), call("mcp__plait__status"),
                         text("Started the run and checked its status.")], final="Done.")
    with ModelServer() as server:
        server.add("plait-mcp-client", scenario)
        env = {"PATH": os.environ["PATH"], "HOME": str(home), "ANTHROPIC_BASE_URL": server.url,
               "ANTHROPIC_API_KEY": "plait-mcp-client", "MCP_TIMEOUT": "60000", "CLAUDE_CODE_DISABLE_TELEMETRY": "1"}
        done = subprocess.run([str(binary), "-p", "Run plan.yaml with plait and tell me its status.",
                               "--output-format", "stream-json", "--verbose", "--mcp-config", str(config),
                               "--strict-mcp-config", "--allowedTools", "mcp__plait__run,mcp__plait__status",
                               "--permission-mode", "acceptEdits"],
                              cwd=repo, env=env, capture_output=True, text=True, timeout=DEADLINE)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        results = [b for r in server.requests_for("plait-mcp-client") for m in r.body["messages"]
                   if isinstance(m["content"], list) for b in m["content"] if b.get("type") == "tool_result"]
    assert results and not any(b.get("is_error") for b in results), results
    answers = [json.dumps(b["content"]) for b in results]
    assert any("run_id" in a and "started" in a for a in answers), answers
    assert any('\\"status\\"' in a or '"status"' in a for a in answers[1:]), answers
    run_id = json.loads(subprocess.run([sys.executable, "-m", "plait", "status", "--json"], cwd=repo,
                                       capture_output=True, text=True, check=True).stdout)["run_id"]
    deadline = time.monotonic() + DEADLINE
    while True:
        doc = json.loads(subprocess.run([sys.executable, "-m", "plait", "status", run_id, "--json"], cwd=repo,
                                        capture_output=True, text=True, check=True).stdout)
        if doc["status"] != "running":
            break
        assert time.monotonic() < deadline, "the run did not finish"
        time.sleep(0.2)
    assert doc["status"] == "completed"


def test_codex_reads_the_readme_configuration(tmp_path: Path) -> None:
    """The README's `~/.codex/config.toml` table is what Codex reads as the plait MCP server."""
    binary = require_cli("codex")
    home = tmp_path / "home"
    (home / ".codex").mkdir(parents=True)
    (home / ".codex" / "config.toml").write_text('[mcp_servers.plait]\ncommand = "plait"\nargs = ["mcp"]\n')
    done = subprocess.run([str(binary), "mcp", "get", "plait", "--json"], env={
        "PATH": os.environ["PATH"], "HOME": str(home), "CODEX_HOME": str(home / ".codex")},
        capture_output=True, text=True, timeout=DEADLINE, check=True)
    found = json.loads(done.stdout)
    assert found["enabled"] and found["transport"] == {**found["transport"], "type": "stdio", "command": "plait",
                                                       "args": ["mcp"]}
