"""`plait mcp`: plait as an MCP server (the official `mcp` SDK, v2), so another agent drives the workflow.

The tools mirror the CLI and return typed results. `run` and `resume` start a detached runner process
(plait.runner) and return at once; the run lives on if the client, this server or its terminal goes away,
and `status` — the document of `plait status --json`, read from the run's state and lock — is the source
of truth. Errors are tool errors carrying the CLI's one line (what is wrong — how to fix it).

Over stdio nothing but the protocol reaches stdout: the SDK serves the wire from a private copy of the
descriptor and points fd 1 at stderr for everything else (libraries, warnings, subprocesses); plait's own
output here goes to logging, on stderr. Over HTTP the server binds loopback unless told otherwise, and a
bearer token is required for any other address (and checked on every request when set).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from plait import api, report
from plait.errors import PlaitError
from plait.run.engine import RunOptions
from plait.workflow.agent import MakeAgent

log = logging.getLogger("plait.mcp")

TOKEN_ENV = "PLAIT_MCP_TOKEN"
DEFAULT_PORT = 8765
INSTRUCTIONS = """plait runs a team of coding agents on a dependency-ordered plan, in parallel, each in its own
workspace; every task is verified by its test command, and the work is merged and tested as a whole.
Workflow: `spec` (a request -> spec.md), `plan` (spec -> plan.yaml, validated), `check` (a plan's analysis),
`run` (starts a run in the background and returns its run_id at once), then poll `status` until its status
is no longer "running"; `report` gives the result. `cancel` stops a run, `resume` continues one."""


# -- results ----------------------------------------------------------------------------------------------
class RunStarted(BaseModel):
    run_id: str
    status: str = Field(description='"started": a runner process is working on it; poll `status`.')
    pid: int = Field(description="The runner process.")
    message: str


class SpecWritten(BaseModel):
    path: str = Field(description="The spec, relative to the repository.")
    rounds: int = Field(description="Agent runs it took.")
    evidence: str = Field(description="Where the agent's prompt and logs are.")


class PlanWritten(BaseModel):
    path: str = Field(description="plan.yaml, relative to the repository.")
    check_path: str = Field(description="Its `plait check --json` document, relative to the repository.")
    rounds: int = Field(description="Planner runs it took (repairs included).")
    check: dict[str, Any] = Field(description="The `plait check --json` document.")


class RunSummary(BaseModel):
    run_id: str
    plan: str
    status: str
    created_at: float | None
    finished_at: float | None
    tasks: int
    done: int
    speedup: float | None = Field(description="Sum of task time / wall clock, once something finished.")


class RunList(BaseModel):
    runs: list[RunSummary]


class Cancelled(BaseModel):
    run_id: str
    message: str


class Landed(BaseModel):
    run_id: str
    message: str = Field(description="What was done, in one line (as `plait land` says it).")
    branch: str | None = Field(description="Your branch it landed on (None with how=stack).")
    kind: str | None = Field(description="fast-forward, merge commit, squashed commit (None with how=stack).")
    old: str | None
    new: str | None
    stacked: dict[str, str] = Field(description="how=stack: the stacked branches, {branch: commit}.")


class RunReport(BaseModel):
    run_id: str
    status: str
    report: str = Field(description="REPORT.md: the measured figures, reviews, deviations.")
    report_path: str
    integration_report_path: str | None = Field(description="INTEGRATION-REPORT.md, once the run integrated.")
    merged_context_path: str | None = Field(description="merged-context.json, once the run ended.")
    html_path: str | None = Field(description="The HTML report, when one was written.")


@contextmanager
def tool_errors() -> Iterator[None]:
    """A PlaitError becomes a tool error carrying the CLI's one line (what is wrong — how to fix it)."""
    try:
        yield
    except PlaitError as exc:
        raise ToolError(str(exc)) from None


def server(root: Path | None = None, make_agent: MakeAgent | None = None) -> MCPServer:
    """The MCP server for the repository at (or above) `root` (the current directory when None).
    `make_agent` replaces the spec writer's and planner's agents (tests)."""
    where = root or Path.cwd()
    mcp = MCPServer("plait", instructions=INSTRUCTIONS)

    def repo() -> api.Repo:
        return api.open_repo(where)

    def in_repo(path: str) -> Path:
        given = Path(path)
        return given if given.is_absolute() else repo().root / given

    @mcp.tool()
    def check(plan: str, jobs: int | None = None, relax_phases: bool = False) -> dict[str, Any]:
        """Validate and analyse a plan (plait's YAML, or spectacular, Spec Kit, Task Master, CCPM files): the
        `plait check --json` document (levels, critical path, estimates, findings), or its errors with their
        locations when `valid` is false."""
        from plait.commands.check import check_doc

        with tool_errors():
            return check_doc(in_repo(plan), jobs, relax_phases, root=repo().root)

    @mcp.tool()
    async def spec(request: str, ctx: Context, agent: str | None = None) -> SpecWritten:
        """Write specs/<id>-<slug>/spec.md from a feature request, by the spec-writer agent (takes minutes;
        progress is reported as it goes)."""
        notify = _progress(ctx)
        with tool_errors():
            root = repo().root
            done = await anyio.to_thread.run_sync(
                lambda: api.write_spec(request, agent=agent, cwd=root, notify=notify, make_agent=make_agent))
        return SpecWritten(path=done.rel, rounds=done.rounds, evidence=str(done.evidence))

    @mcp.tool()
    async def plan(spec: str, ctx: Context, agent: str | None = None, rounds: int = 3) -> PlanWritten:
        """Write plan.yaml beside a spec, by the planner agent, repaired until it validates (at most `rounds`
        planner runs); returns its `plait check` analysis too."""
        notify = _progress(ctx)
        with tool_errors():
            root = repo().root
            done = await anyio.to_thread.run_sync(
                lambda: api.write_plan(in_repo(spec), agent=agent, rounds=rounds, cwd=root, notify=notify,
                                       make_agent=make_agent))
        return PlanWritten(path=str(done.path.relative_to(root)), check_path=str(done.check_json.relative_to(root)),
                           rounds=done.rounds, check=json.loads(done.check_json.read_text()))

    @mcp.tool()
    def run(plan: str, jobs: int = 4, deliver: str = "branch", max_cost: float | None = None,
            agent: str | None = None, rehearse: bool = False, relax_phases: bool = False,
            fresh: bool = False) -> RunStarted:
        """Start running a plan in the background: validates it, records the run, starts a runner process and
        returns {run_id, status: "started"} at once. Poll `status` with the run_id until it is not "running".
        `rehearse`: the real agent CLIs talk to plait's scripted model server (no tokens spent). A task verified
        in an earlier run with the same inputs is reused (`fresh`: run every task again)."""
        from plait.runner import start_detached

        if deliver not in ("branch", "stack"):
            raise ToolError(f"deliver: {deliver!r} is not a delivery — use branch or stack")
        with tool_errors():
            r, run_id = api.start(in_repo(plan), RunOptions(jobs=jobs, deliver=deliver, max_cost=max_cost,
                                                            rehearse=rehearse, relax_phases=relax_phases,
                                                            agent=agent, fresh=fresh), cwd=repo().root)
            pid = start_detached(r, run_id)
        return RunStarted(run_id=run_id, status="started", pid=pid,
                          message=f"run {run_id} started; poll status with run_id={run_id!r}")

    @mcp.tool()
    def status(run_id: str | None = None) -> dict[str, Any]:
        """A run's state (the latest run when run_id is omitted): status (running, completed, failed,
        cancelled, interrupted), phase, per-task state, verify results, reviews, conflicts, metrics."""
        with tool_errors():
            return api.status(run_id, cwd=repo().root)

    @mcp.tool()
    def list_runs() -> RunList:
        """Every run of this repository, oldest first."""
        return RunList(runs=[RunSummary(**{k: r[k] for k in RunSummary.model_fields}) for r in api.runs(repo().root)])

    @mcp.tool()
    def resume(run_id: str) -> RunStarted:
        """Continue a failed, cancelled or interrupted run in the background; verified tasks never run again."""
        from plait.runner import resume_detached

        with tool_errors():
            r = repo()
            pid = resume_detached(r, run_id)
        return RunStarted(run_id=run_id, status="started", pid=pid,
                          message=f"run {run_id} resumed; poll status with run_id={run_id!r}")

    @mcp.tool()
    def cancel(run_id: str) -> Cancelled:
        """Stop a running run: its agents are stopped and nothing is delivered."""
        with tool_errors():
            return Cancelled(run_id=run_id, message=api.cancel(run_id, cwd=repo().root))

    @mcp.tool()
    def land(run_id: str | None = None, how: str = "merge") -> Landed:
        """Bring a completed run's result onto the checked-out branch (the latest run by default): how="merge"
        (a fast-forward when possible, else a merge commit), "squash" (one commit), or "stack" (create the
        run's stacked branches for review; your branch is not touched). Refused, with nothing changed, when
        your checkout has uncommitted changes in the files the result touches."""
        if how not in ("merge", "squash", "stack"):
            raise ToolError(f"how: {how!r} is not a way to land — use merge, squash or stack")
        with tool_errors():
            done = api.land(run_id, how, cwd=repo().root)
        if done.landed is None:
            return Landed(run_id=done.run_id, message=f"stacked branches: {', '.join(done.stacked) or 'none'}",
                          branch=None, kind=None, old=None, new=None, stacked=done.stacked)
        x = done.landed
        return Landed(run_id=done.run_id, message=x.describe(done.run_id), branch=x.branch, kind=x.kind, old=x.old,
                      new=x.new, stacked={})

    @mcp.tool(name="report")
    def report_tool(run_id: str | None = None) -> RunReport:
        """A run's report (the latest run when run_id is omitted): REPORT.md's text and where the run's
        other reports are."""
        with tool_errors():
            return _report(repo(), run_id)

    @mcp.resource("plait://schema/plan", name="plan-schema", mime_type="application/json",
                  description="The JSON Schema of plait's plan format (plait schema).")
    def plan_schema() -> str:
        from plait.plan.model import json_schema

        return json.dumps(json_schema(), indent=2)

    @mcp.resource("plait://runs/{run_id}/report", name="run-report", mime_type="text/markdown",
                  description="A run's REPORT.md.")
    def run_report(run_id: str) -> str:
        return _report(repo(), run_id).report

    @mcp.resource("plait://runs/{run_id}/tasks/{task_id}/evidence", name="task-evidence", mime_type="text/markdown",
                  description="A task's EVIDENCE.md: what its agent did, its verify result, review, deviations.")
    def task_evidence(run_id: str, task_id: str) -> str:
        r = repo()
        api.status(run_id, cwd=r.root)  # an unknown run is the one-line error
        path = api.run_paths(r, run_id).task_dir(task_id) / "EVIDENCE.md"
        if not path.is_file():
            raise PlaitError(f"run {run_id} has no evidence for task {task_id!r} (yet)",
                             "read `status` for its tasks and their states")
        return path.read_text()

    return mcp


def _report(repo: api.Repo, run_id: str | None) -> RunReport:
    doc = api.status(run_id, cwd=repo.root)
    rid = doc["run_id"]
    folder = api.run_paths(repo, rid).run_dir
    m = api.final_metrics(repo, rid) if doc["status"] != "running" else None
    text = (folder / "REPORT.md").read_text() if m is not None else report.markdown(api.live_metrics(repo, rid))

    def maybe(name: str) -> str | None:
        return str(folder / name) if (folder / name).is_file() else None

    return RunReport(run_id=rid, status=doc["status"], report=text, report_path=str(folder / "REPORT.md"),
                     integration_report_path=maybe("INTEGRATION-REPORT.md"),
                     merged_context_path=maybe("merged-context.json"), html_path=maybe("report.html"))


def _progress(ctx: Context) -> Callable[[str], None]:
    """A plait.workflow `notify` that sends each line as an MCP progress notification (a no-op for a client
    that sent no progress token). Called from the worker thread the blocking work runs on."""
    count = [0]

    def notify(line: str) -> None:
        count[0] += 1
        log.info("%s", line)
        try:
            anyio.from_thread.run(ctx.report_progress, count[0], None, line)
        except Exception as exc:  # a client gone or refusing progress must not fail the work
            log.debug("progress not sent: %s", exc)

    return notify


# -- transports -------------------------------------------------------------------------------------------
def serve_stdio(root: Path | None) -> None:
    logging.basicConfig(level=logging.INFO, format="plait mcp: %(message)s", force=True)  # stderr
    server(root).run()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_binding(host: str, token: str | None) -> None:
    if not is_loopback(host) and not token:
        raise PlaitError(f"serving MCP on {host} (not loopback) needs a token",
                         f"pass --token TOKEN or set {TOKEN_ENV}; clients then send `Authorization: Bearer TOKEN`")


ASGIApp = Callable[[MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
                   Awaitable[None]]


class BearerToken:
    """Refuses every HTTP request that does not carry `Authorization: Bearer <token>` (401)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app, self.expected = app, f"Bearer {token}".encode()

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        if scope["type"] == "http":
            given = next((v for k, v in scope.get("headers", []) if k.lower() == b"authorization"), b"")
            if not hmac.compare_digest(given, self.expected):
                body = b'{"error": "missing or wrong bearer token"}'
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"www-authenticate", b"Bearer")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def http_app(root: Path | None, host: str, token: str | None) -> ASGIApp:
    from mcp.server.transport_security import TransportSecuritySettings

    check_binding(host, token)
    # DNS rebinding protection guards a loopback server from web pages; a token does that everywhere else.
    security = None if is_loopback(host) else TransportSecuritySettings(enable_dns_rebinding_protection=False)
    app: ASGIApp = server(root).streamable_http_app(host=host, transport_security=security)
    return BearerToken(app, token) if token else app


def serve_http(root: Path | None, host: str, port: int, token: str | None) -> None:
    import uvicorn

    token = token or os.environ.get(TOKEN_ENV) or None
    app = http_app(root, host, token)
    logging.basicConfig(level=logging.INFO, format="plait mcp: %(message)s", force=True)
    log.info("serving MCP on http://%s:%s/mcp%s", host, port, " (bearer token required)" if token else "")
    uvicorn.run(app, host=host, port=port, log_level="warning")
