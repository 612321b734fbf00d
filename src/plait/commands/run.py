"""`plait run`, `plait resume`, `plait status`: drive the API and render the outcome."""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plait import api, report, runner
from plait.errors import PlaitError
from plait.redact import redact_file
from plait.state import EventKind
from plait.text import format_duration as fd
from plait.text import printable

if TYPE_CHECKING:  # `plait status --json` renders no table: rich, progress and the engine load where used
    from rich.console import Console, Group

    from plait.commands.progress import PlainProgress
    from plait.run.engine import RunOptions


@contextmanager
def graceful_termination() -> Iterator[None]:
    """SIGTERM and SIGHUP stop a run like Ctrl-C: agents are stopped, the run is left resumable.
    (Agents run in their own process groups, so without this they would outlive a terminated plait.)"""
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def progress_for(console: Console, total: int) -> PlainProgress:
    from plait.commands.progress import LiveProgress, PlainProgress

    return LiveProgress(console, total) if console.is_terminal else PlainProgress(console)


def run(plan: Path, options: RunOptions, console: Console, detach: bool = False) -> int:
    from rich.console import Console

    repo, run_id = api.start(plan, options)
    if detach:
        notes = Console(stderr=True, highlight=False)  # stdout says only where the run went
        warn_unconfined(repo, run_id, notes)
        warn_uncommitted(repo, run_id, notes)
        say_reused(repo, run_id, notes)
        return started(run_id, runner.start_detached(repo, run_id), console)
    total = api.task_count(repo, run_id)
    console.print(f"plait run [bold]{run_id}[/]: {total} tasks, --jobs {options.jobs}")
    say_reused(repo, run_id, console)
    warn_unconfined(repo, run_id, console)
    warn_uncommitted(repo, run_id, console)
    return finish(repo, run_id, execute_with_progress(repo, run_id, console), console)


def execute_with_progress(repo: api.Repo, run_id: str, console: Console, resume: bool = False,
                          on_start: Callable[[], None] | None = None) -> str:
    """Run (or continue) a recorded run to its end, showing progress; SIGTERM/SIGHUP stop it like Ctrl-C.
    `on_start()` is called once the run has started: this process holds the run's lock and the run is
    recorded running (a `plait cancel` from then on is never overwritten by the start)."""
    # Tasks already done (restored on resume, or reused from an earlier run) report no progress here.
    progress = progress_for(console, api.task_count(repo, run_id, to_run=True))

    def listener(kind: str, task: str | None, data: Mapping[str, Any]) -> None:
        if kind == EventKind.RUN_STARTED and on_start is not None:
            on_start()
        progress(kind, task, data)

    try:
        with graceful_termination():
            return api.execute(repo, run_id, listener, resume=resume)
    except KeyboardInterrupt:
        progress.close()
        console.print(f"run {run_id} interrupted: its agents were stopped; continue it with: plait resume {run_id}",
                      markup=False, soft_wrap=True)
        raise
    finally:
        progress.close()


def say_reused(repo: api.Repo, run_id: str, console: Console) -> None:
    """Which tasks an earlier run's verified work stands in for (`--fresh` runs them all)."""
    from plait.run import reuse

    line = reuse.describe(api.reused(repo, run_id), api.task_count(repo, run_id))
    if line:
        console.print(line, markup=False, soft_wrap=True)


def warn_unconfined(repo: api.Repo, run_id: str, console: Console) -> None:
    """One line when the kernel cannot confine the agents' writes here."""
    warning = api.run_sandbox_warning(repo, run_id)
    if warning:
        console.print(f"[yellow]warning[/] {warning}")


def warn_uncommitted(repo: api.Repo, run_id: str, console: Console) -> None:
    """Agents start from a commit: say so when the user's working tree holds work that is not in it."""
    changed, base = api.uncommitted(repo, run_id)
    if changed:
        console.print(f"[yellow]note[/] {changed} uncommitted change(s) in your working tree are not part of "
                      f"this run: agents start from commit {base[:12]}. Commit them first to include them.")


def resume(run_id: str | None, console: Console, detach: bool = False) -> int:
    run_id = api.run_id_or_latest(run_id)
    repo = api.resumable(run_id)
    if detach:
        return started(run_id, runner.start_detached(repo, run_id, resume=True), console)
    return finish(repo, run_id, execute_with_progress(repo, run_id, console, resume=True), console)


def started(run_id: str, pid: int, console: Console) -> int:
    """`--detach`: a runner process runs it (see plait.runner); one line says how to find it again."""
    console.print(f"run {run_id} started in the background (pid {pid}); follow it: plait status {run_id}; "
                  f"stop it: plait cancel {run_id}", markup=False, soft_wrap=True)
    return 0


def run_detached(run_id: str, resume: bool, ready_fd: int, console: Console) -> int:
    """`plait _runner`: the runner's side of `runner.start_detached`. Its console is the run's runner.log,
    errors included (written there, then the log is redacted, as the run's other logs are)."""
    pipe = runner.StartPipe(ready_fd)
    try:
        repo = api.resumable(run_id) if resume else api.open_repo()
        status = execute_with_progress(repo, run_id, console, resume, on_start=pipe.ready)
        return finish(repo, run_id, status, console)
    except PlaitError as exc:
        pipe.refuse(exc.lines())
        for line in exc.lines():
            console.print(f"plait: error: {line}", markup=False, soft_wrap=True)
        return 1
    finally:
        pipe.close()
        redact_file(runner.log_path(Path.cwd(), run_id))  # the runner runs in the repository's root


def finish(repo: api.Repo, run_id: str, status: str, console: Console) -> int:
    metrics = api.final_metrics(repo, run_id)
    run_dir = repo.root / ".plait" / "runs" / run_id
    try:
        api.write_html_report(repo, run_id)
    except Exception as exc:  # report.html is a view of the run: failing to draw it must not fail the run
        console.print(f"warning: could not write report.html: {exc!r}", markup=False, soft_wrap=True)
    style = "green" if status == "completed" else "red"
    label = " (rehearsal: scripted model server, no tokens spent)" if metrics.rehearsal else ""
    console.print(f"\nrun [bold]{run_id}[/] [{style}]{status}[/]{label}")
    for line in report.lines(metrics):
        console.print(f"  {line}", markup=False)
    # Paths stay whole on one line, to be copied.
    console.print(f"  evidence: {run_dir / 'tasks'}", markup=False, soft_wrap=True)
    if (run_dir / "INTEGRATION-REPORT.md").exists():
        console.print(f"  integration report: {run_dir / 'INTEGRATION-REPORT.md'}", markup=False, soft_wrap=True)
    console.print(f"  report: {run_dir / 'REPORT.md'}", markup=False, soft_wrap=True)
    if (run_dir / "report.html").exists():
        console.print(f"  html report: {run_dir / 'report.html'}", markup=False, soft_wrap=True)
    if status != "completed":
        console.print(f"  continue with: plait resume {run_id}" if status != "cancelled" else "")
    return 0 if status == "completed" else 1


def status(run_id: str | None, as_json: bool, console: Callable[[], Console]) -> None:
    """`console()` makes the console, when one is needed: off a terminal, `--json` prints one line of plain
    JSON (what scripts read, and cheap to make: a live run is polled with it) and loads no rich at all."""
    doc = api.status(run_id)
    if as_json and not sys.stdout.isatty():
        sys.stdout.write(json.dumps(doc) + "\n")
    elif as_json:
        console().print_json(json.dumps(doc))
    else:
        render_status(doc, console())


def review_cell(review: dict[str, Any] | None) -> str:
    """`approved 2/3`, `changes 3/3` (out of rounds), `1/3` while under way; empty when not reviewed."""
    if not review:
        return ""
    rounds = f"{review['rounds']}/{review['max_rounds']}"
    if review.get("approved"):
        return f"approved {rounds}"
    return f"changes {rounds}" if review.get("verdict") == "changes_requested" else rounds


def render_status(doc: dict[str, Any], console: Console) -> None:
    console.print(status_view(doc))


def status_view(doc: dict[str, Any]) -> Group:
    """The status table. Errors, incidents and paths come from agents and commands: shown as plain text
    (no markup), with control characters made visible."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    c = doc["counts"]
    label = " (rehearsal)" if doc.get("rehearsal") or doc.get("metrics", {}).get("rehearsal") else ""
    phase = f" — {doc['phase']}" if doc["phase"] != doc["status"] else ""
    head = Text.from_markup(f"run [bold]{doc['run_id']}[/] {doc['status']}{label}{phase}; "
                            f"{c['done']} done, {c['running'] + c['retrying']} running, {c['pending']} pending, "
                            f"{c['failed']} failed, {c['blocked']} blocked")
    table = Table()
    for col in ("task", "state", "lvl", "try", "time", "verify", "review", "branch", "notes"):
        table.add_column(col)
    for t in doc["tasks"]:
        took = fd(t["finished_at"] - t["started_at"]) if t["finished_at"] and t["started_at"] else ""
        verify = t["verify"]
        vtext = "" if verify is None else "pass" if verify["exit_code"] == 0 else f"exit {verify['exit_code']}"
        notes = [f"conflict with {c['with']}: {', '.join(c['files'])}" for c in t["conflicts"]]
        notes += [f"out of scope: {', '.join(t['deviations'])}"] if t["deviations"] else []
        notes += t["incidents"]
        notes += [t["error"]] if t["error"] and t["state"] != "done" else []
        table.add_row(t["id"] + (" (gate)" if t.get("gate") else ""), t["state"], str(t["level"]), str(t["attempt"]),
                      took, vtext, review_cell(t.get("review")), t["branch"] or "",
                      Text(printable("; ".join(str(n) for n in notes))))
    return Group(head, table, Text(f"evidence: {doc['evidence']}"))


def watch(run_id: str | None, console: Console) -> int:
    """`plait status --watch`: the table, redrawn as the run changes, until it is no longer running. Not on a
    terminal, it prints the table once (nothing redraws in a log)."""
    from rich.live import Live

    run_id = api.run_id_or_latest(run_id)
    if not console.is_terminal:
        render_status(api.status(run_id), console)
        return 0

    def frame() -> Group:
        return status_view(api.status(run_id))

    with Live(frame(), console=console, refresh_per_second=2, transient=False) as live:
        while api.status(run_id)["status"] in ("running", "cancelling"):
            time.sleep(0.5)
            live.update(frame())
        live.update(frame())
    return 0


def list_runs(as_json: bool, console: Console) -> None:
    from rich.table import Table
    from rich.text import Text

    found = api.runs()
    if as_json:
        console.print_json(json.dumps(found))
        return
    if not found:
        console.print("no runs yet in this repository: start one with `plait run PLAN`", markup=False)
        return
    table = Table()
    for col in ("run", "plan", "status", "started", "tasks", "speed-up"):
        table.add_column(col)
    for r in found:
        started_at = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["created_at"])) if r["created_at"] else ""
        speedup = f"{r['speedup']:.2f}x" if r["speedup"] else ""
        table.add_row(r["run_id"], Text(printable(r["plan"])), r["status"] + (" (rehearsal)" if r["rehearsal"] else ""),
                      started_at, f"{r['done']}/{r['tasks']}", speedup)
    console.print(table)
