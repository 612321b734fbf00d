"""`plait mcp`: every tool through the official SDK's in-process client, the resources, errors as tool
errors, and HTTP mode's loopback default and bearer token. Runs are real (detached runner processes, the
`script` agent, real git and SQLite)."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from mcp import Client

from gitfixtures import make_repo
from plait.errors import PlaitError
from plait.mcp_server import check_binding, http_app, server
from runfixtures import git
from test_workflow import GOOD_PLAN, SPEC, WritingAgent, factory

pytestmark = pytest.mark.anyio

PLAN = ("plait: 1\nname: mcp\ndefaults: {agent: script, verify: 'test -f a.txt'}\n"
        "integration: {verify: 'test -f a.txt && test -f b.txt'}\ntasks:\n"
        "  - id: a\n    title: A\n    prompt: write a\n    files: [a.txt]\n    script: {write: {a.txt: a}}\n"
        "  - id: b\n    title: B\n    prompt: write b\n    files: [b.txt]\n    needs: [a]\n"
        "    verify: test -f b.txt\n    script: {write: {b.txt: b}}\n")
DEADLINE = 180.0  # seconds an event may take on a loaded machine before the test gives up


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"README.md": "x\n", "plan.yaml": PLAN, "bad.yaml": "plait: 1\ntasks: 3\n"})


@pytest.fixture
async def client(repo: Path) -> AsyncIterator[Client]:
    async with Client(server(repo), raise_exceptions=True) as c:
        yield c


async def call(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def error_of(client: Client, tool: str, **args: Any) -> str:
    result = await client.call_tool(tool, args)
    assert result.is_error
    (content,) = result.content
    text: str = getattr(content, "text", "")
    return text


async def until_finished(client: Client, run_id: str) -> dict[str, Any]:
    """Poll `status` until the run is no longer running (the event), within a generous deadline."""
    deadline = time.monotonic() + DEADLINE
    while True:
        doc = await call(client, "status", run_id=run_id)
        if doc["status"] not in ("running", "cancelling"):
            return doc
        assert time.monotonic() < deadline, f"run {run_id} still {doc['status']} after {DEADLINE}s"
        time.sleep(0.1)


async def test_every_tool_is_listed_with_a_typed_result(client: Client) -> None:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert sorted(tools) == ["cancel", "check", "land", "list_runs", "plan", "report", "resume", "run", "spec",
                             "status"]
    assert all(t.output_schema for t in tools.values())
    assert "run_id" in tools["run"].output_schema["properties"]  # type: ignore[index]


async def test_check_gives_the_check_json_document_or_its_errors(client: Client, repo: Path) -> None:
    doc = await call(client, "check", plan="plan.yaml")
    assert doc["valid"] is True and doc["critical_path"] == ["a", "b"]
    bad = await call(client, "check", plan="bad.yaml")
    assert bad["valid"] is False and bad["errors"][0]["location"] == f"{repo / 'bad.yaml'}:1:1"


async def test_run_returns_at_once_and_status_report_and_list_runs_follow_it(client: Client, repo: Path) -> None:
    started = await call(client, "run", plan="plan.yaml", jobs=2)
    assert started["status"] == "started" and started["pid"] > 0
    run_id = started["run_id"]
    doc = await until_finished(client, run_id)
    assert doc["status"] == "completed" and doc["counts"]["done"] == 2
    assert git(repo, "show", f"plait/{run_id}/integration:b.txt") == "b"
    reported = await call(client, "report", run_id=run_id)
    assert reported["status"] == "completed" and "tasks 2/2 done" in reported["report"]
    assert reported["integration_report_path"].endswith("INTEGRATION-REPORT.md")
    landed = await call(client, "land", run_id=run_id)
    assert landed["kind"] == "fast-forward" and git(repo, "show", "HEAD:b.txt") == "b"
    runs = (await call(client, "list_runs"))["runs"]
    assert [(r["run_id"], r["status"], r["tasks"], r["done"]) for r in runs] == [(run_id, "completed", 2, 2)]
    text = (await client.read_resource(f"plait://runs/{run_id}/report")).contents[0]
    assert "tasks 2/2 done" in getattr(text, "text", "")
    evidence = (await client.read_resource(f"plait://runs/{run_id}/tasks/a/evidence")).contents[0]
    assert "a" in getattr(evidence, "text", "")


async def test_cancel_and_resume_go_through_the_runner(client: Client, repo: Path, tmp_path: Path) -> None:
    gate = tmp_path / "go"
    (repo / "plan.yaml").write_text(PLAN.replace("script: {write: {a.txt: a}}",
                                                 f"script: {{write: {{a.txt: a}}, run: ['while [ ! -f {gate} ]; "
                                                 "do sleep 0.05; done']}"))
    run_id = (await call(client, "run", plan="plan.yaml"))["run_id"]
    assert (await call(client, "status", run_id=run_id))["status"] == "running"
    assert "cancelling" in (await call(client, "cancel", run_id=run_id))["message"]
    assert (await until_finished(client, run_id))["status"] == "cancelled"
    gate.write_text("")
    assert (await call(client, "resume", run_id=run_id))["status"] == "started"
    assert (await until_finished(client, run_id))["status"] == "completed"


async def test_errors_are_tool_errors_with_the_clis_one_line(client: Client) -> None:
    assert "no run 'nosuch' in this repository — recent runs: none (`plait status`)" in await error_of(
        client, "status", run_id="nosuch")
    text = await error_of(client, "run", plan="nosuch.yaml")
    assert "nosuch.yaml" in text and "\n" not in text
    assert "deliver" in await error_of(client, "run", plan="plan.yaml", deliver="carrier-pigeon")
    assert "no run 'nosuch'" in await error_of(client, "cancel", run_id="nosuch")


async def test_spec_and_plan_write_their_files(repo: Path) -> None:
    agent = WritingAgent({"spec-writer": [SPEC], "planner": [GOOD_PLAN]})
    seen: list[tuple[float, str | None]] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        seen.append((done, message))

    async with Client(server(repo, make_agent=factory(agent)), raise_exceptions=True) as c:
        result = await c.call_tool("spec", {"request": "Add a hello file"}, progress_callback=progress)
        written = result.structured_content or {}
        assert (repo / written["path"]).read_text() == SPEC and written["rounds"] == 1
        assert seen and [n for n, _ in seen] == sorted(n for n, _ in seen), "progress, increasing"
        assert any("spec-writer" in (m or "") for _, m in seen), seen
        planned = await call(c, "plan", spec=written["path"])
        assert (repo / planned["path"]).read_text() == GOOD_PLAN and planned["check"]["valid"] is True
        assert (repo / planned["check_path"]).is_file()


async def test_the_plan_schema_is_a_resource(client: Client) -> None:
    (content,) = (await client.read_resource("plait://schema/plan")).contents
    schema = json.loads(getattr(content, "text", ""))
    assert schema["title"] == "plait plan (format 1)"


# -- HTTP ----------------------------------------------------------------------------------------------


def test_http_refuses_a_non_loopback_address_without_a_token() -> None:
    with pytest.raises(PlaitError, match="needs a token"):
        check_binding("0.0.0.0", None)
    check_binding("0.0.0.0", "secret")
    check_binding("127.0.0.1", None)
    check_binding("::1", None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def post(url: str, token: str | None) -> int:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}).encode()
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, body, headers), timeout=30) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_http_with_a_token_rejects_requests_without_it(repo: Path) -> None:
    port = free_port()
    config = uvicorn.Config(http_app(repo, "127.0.0.1", "s3cret"), host="127.0.0.1", port=port, log_level="error")
    served = uvicorn.Server(config)
    thread = threading.Thread(target=served.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + DEADLINE
        while not served.started:
            assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
            time.sleep(0.02)
        url = f"http://127.0.0.1:{port}/mcp"
        assert post(url, None) == 401
        assert post(url, "wrong") == 401
        assert post(url, "s3cret") == 200
    finally:
        served.should_exit = True
        thread.join(timeout=DEADLINE)


def test_plait_mcp_http_on_another_address_without_a_token_is_one_line(repo: Path) -> None:
    from runfixtures import plait

    done = plait(repo, "mcp", "--http", "--host", "0.0.0.0", "--port", str(free_port()))
    assert done.returncode == 1 and done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("plait: error: serving MCP on 0.0.0.0 (not loopback) needs a token — pass --token")
