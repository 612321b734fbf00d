"""`plait serve`: a local web dashboard of the repository's runs. The run page updates live: a stream of
Server-Sent Events says when the state database or a running agent's log changed, and the page's few lines
of script fetch the fresh part of the page (the same graph, timeline and tables as report.html).

Loopback by default; any other address needs a token, which every request then carries (an
`Authorization: Bearer` header, or `?token=` once in the browser, which becomes a cookie). Cancel and
Resume are POSTs refused from other origins, so no other web page can press them."""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from html import escape
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from plait import api, html_report, runner
from plait.errors import PlaitError
from plait.mcp_server import ASGIApp, BearerToken, is_loopback
from plait.text import printable

log = logging.getLogger(__name__)
POLL_SECONDS = 0.3
PING_SECONDS = 10.0
LOG_TAIL_BYTES = 3000
COOKIE = "plait_token"

SCRIPT = """<script>
let queued = false;
function refresh() {
  if (queued) return; queued = true;
  setTimeout(async () => {
    queued = false;
    const r = await fetch("live", {cache: "no-store"});
    if (r.ok) document.getElementById("live").innerHTML = await r.text();
  }, 150);
}
async function act(what) {
  const r = await fetch(what, {method: "POST"});
  document.getElementById("said").textContent = await r.text();
  refresh();
}
addEventListener("DOMContentLoaded", () => {
  new EventSource("events?after=" + document.body.dataset.seq).addEventListener("change", refresh);
});
</script>"""
BUTTONS = ('<p><button id="cancel" onclick="act(\'cancel\')">Cancel</button> '
           '<button id="resume" onclick="act(\'resume\')">Resume</button> <span id="said"></span> '
           '<a href="../../">all runs</a></p>')


def app(root: Path | None, host: str, token: str | None) -> ASGIApp:
    """The dashboard for the repository at `root` (default: the current directory's)."""
    if not is_loopback(host) and not token:
        raise PlaitError(f"serving the dashboard on {host} (not loopback) needs a token",
                         "pass --token TOKEN; then open http://HOST:PORT/?token=TOKEN")
    repo = api.open_repo(root)

    async def runs_page(request: Request) -> HTMLResponse:
        return HTMLResponse(runs_html(repo))

    async def run_page(request: Request) -> HTMLResponse:
        rec = record(repo, request)
        seq = rec.events[-1]["seq"] if rec.events else 0
        html = html_report.page(rec, head=SCRIPT, top=BUTTONS, live=live_html(repo, rec))
        return HTMLResponse(html.replace("<body>", f'<body data-seq="{seq}">', 1))

    async def live(request: Request) -> HTMLResponse:
        return HTMLResponse(live_html(repo, record(repo, request)))

    async def events(request: Request) -> StreamingResponse:
        run_id = record(repo, request).run["id"]
        given = request.query_params.get("after") or request.headers.get("last-event-id") or ""
        after = int(given) if given.isdigit() else 0
        return StreamingResponse(changes(repo, run_id, after), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store"})

    async def cancel(request: Request) -> Response:
        return await act(request, lambda run_id: api.cancel(run_id, repo.root))

    async def resume(request: Request) -> Response:
        return await act(request, lambda run_id: f"resumed (pid {runner.resume_detached(repo, run_id)})")

    async def evidence(request: Request) -> PlainTextResponse:
        run_id, task_id = record(repo, request).run["id"], request.path_params["task_id"]
        tasks = {t["task_id"] for t in api.tasks(repo, run_id)}
        path = api.run_paths(repo, run_id).task_dir(task_id) / "EVIDENCE.md"
        if task_id not in tasks or not path.is_file():
            return PlainTextResponse("no evidence yet", status_code=404)
        return PlainTextResponse(printable(path.read_text(errors="replace")))

    routes = [Route("/", runs_page), Route("/runs/{run_id}/", run_page), Route("/runs/{run_id}/live", live),
              Route("/runs/{run_id}/events", events), Route("/runs/{run_id}/cancel", cancel, methods=["POST"]),
              Route("/runs/{run_id}/resume", resume, methods=["POST"]),
              Route("/runs/{run_id}/tasks/{task_id}/EVIDENCE.md", evidence)]
    star = Starlette(routes=routes, exception_handlers={PlaitError: user_error})
    if token:
        return BrowserToken(BearerToken(star, token), token)
    # On loopback without a token, only names of this machine: a web page that rebinds its own name to
    # 127.0.0.1 cannot read the dashboard.
    return TrustedHostMiddleware(star, allowed_hosts=["127.0.0.1", "localhost", host])


async def user_error(request: Request, exc: Exception) -> Response:
    """A PlaitError: an unknown run (404), or an action the run's state refuses (409), in one line."""
    return PlainTextResponse(str(exc), status_code=404 if request.method == "GET" else 409)


def record(repo: api.Repo, request: Request) -> html_report.RunRecord:
    return api.run_record(repo, request.path_params["run_id"])


async def act(request: Request, do: Callable[[str], str]) -> Response:
    """Cancel or resume, refused when the request comes from another origin (a page elsewhere posting here)."""
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{request.headers.get('host')}":
        return PlainTextResponse("refused: cross-origin request", status_code=403)
    run_id = request.path_params["run_id"]
    said = await anyio.to_thread.run_sync(do, run_id)  # resume waits for its runner to start
    return PlainTextResponse(said)


def runs_html(repo: api.Repo) -> str:
    rows = []
    for row in reversed(api.runs(repo.root)):  # what `plait runs` and the MCP server's list_runs show
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["created_at"] or 0))
        speedup = "—" if row["speedup"] is None else f"{row['speedup']:.2f}×"
        rid = escape(row["run_id"])
        rows.append(f'<tr><td><a href="runs/{rid}/">{rid}</a></td><td>{escape(str(row["plan"]))}</td>'
                    f"<td>{escape(row['status'])}</td><td>{started}</td>"
                    f"<td>{row['done']}/{row['tasks']}</td><td>{speedup}</td></tr>")
    body = ("<table><tr><th>run</th><th>plan</th><th>status</th><th>started</th><th>done</th><th>speed-up</th></tr>"
            + "".join(rows) + "</table>") if rows else "<p>No runs yet: start one with <code>plait run PLAN</code>.</p>"
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">{html_report.NO_ICON}<title>plait runs</title>'
            f"<style>{html_report.STYLE}</style></head><body><h1>plait runs</h1>{body}</body></html>\n")


def live_html(repo: api.Repo, rec: html_report.RunRecord) -> str:
    """The run's graph, timeline and tables, and the tail of each running task's agent log."""
    logs = []
    for tid, path in running_logs(repo, rec.run["id"], rec.tasks).items():
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - LOG_TAIL_BYTES))
            tail = printable(f.read().decode(errors="replace"))
        logs.append(f'<h3>{escape(tid)}: {escape(path.name)}</h3><pre class="log" data-task="{escape(tid)}">'
                    f"{escape(tail)}</pre>")
    section = "<h2>Running agents' logs</h2>" + "".join(logs) if logs else ""
    return html_report.fragment(rec, time.time()) + section


def running_logs(repo: api.Repo, run_id: str, tasks: list[dict[str, Any]]) -> dict[str, Path]:
    """The most recently written log file of each running task's current attempt."""
    out = {}
    for t in tasks:
        if t["state"] not in ("running", "retrying"):
            continue
        folder = api.run_paths(repo, run_id).task_dir(t["task_id"]) / "logs" / f"attempt-{t['attempt']}"
        files = [p for p in folder.rglob("*") if p.is_file() and p.stat().st_size] if folder.is_dir() else []
        if files:
            out[t["task_id"]] = max(files, key=lambda p: p.stat().st_mtime)
    return out


async def changes(repo: api.Repo, run_id: str, after: int) -> AsyncIterator[str]:
    """Server-Sent Events: one `change` per batch of new events in the state database (its id the last
    seq, so a reconnecting browser resumes there) and per change of a running agent's log."""
    logs: dict[str, tuple[int, float]] = {}
    idle = 0.0
    while True:
        new = api.events_since(repo, run_id, after)
        sizes = {tid: (p.stat().st_size, p.stat().st_mtime)
                 for tid, p in running_logs(repo, run_id, api.tasks(repo, run_id)).items()}
        if new:
            after = new[-1]["seq"]
            yield f"id: {after}\nevent: change\ndata: {json.dumps([e['kind'] for e in new])}\n\n"
        elif sizes != logs:
            yield 'event: change\ndata: ["log"]\n\n'
        elif idle >= PING_SECONDS:
            yield ": ping\n\n"  # a comment: finds a closed connection, keeps proxies from timing out
        else:
            idle += POLL_SECONDS
        if new or sizes != logs:
            idle = 0.0
        logs = sizes
        await anyio.sleep(POLL_SECONDS)


Scope = MutableMapping[str, Any]


class BrowserToken:
    """Lets a browser carry the token BearerToken checks: `?token=T` in a URL (then a cookie) stands for
    the `Authorization: Bearer T` header a browser cannot add to a link or an EventSource."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app, self.token = app, token

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        if scope["type"] != "http" or any(k.lower() == b"authorization" for k, _ in scope["headers"]):
            await self.app(scope, receive, send)
            return
        query = parse_qs(scope.get("query_string", b"").decode()).get("token", [""])[0]
        cookies = SimpleCookie()
        for k, v in scope["headers"]:
            if k.lower() == b"cookie":
                cookies.load(v.decode(errors="replace"))
        given = query or (cookies[COOKIE].value if COOKIE in cookies else "")
        if given:
            scope = {**scope, "headers": [*scope["headers"], (b"authorization", f"Bearer {given}".encode())]}
        remember = bool(query) and hmac.compare_digest(query.encode(), self.token.encode())

        async def send_with_cookie(message: Any) -> None:
            if remember and message["type"] == "http.response.start":
                cookie = f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict".encode()
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie)]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def serve(root: Path | None, host: str, port: int, token: str | None) -> None:
    import uvicorn

    dashboard = app(root, host, token)
    where = f"http://{host}:{port}/" + ("?token=…" if token else "")
    logging.basicConfig(level=logging.INFO, format="plait serve: %(message)s", force=True)
    log.info("dashboard on %s (Ctrl-C stops it)", where)
    uvicorn.run(dashboard, host=host, port=port, log_level="warning")
