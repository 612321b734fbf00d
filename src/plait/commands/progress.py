"""Live progress for `plait run`: a row per running task on a terminal, plain lines otherwise."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from plait.text import printable

QUIET = {"task.workspace", "task.attempt_done", "run.created"}


class PlainProgress:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.start = time.monotonic()
        self._lock = threading.Lock()
        # Off a terminal (a log file, CI, a detached runner) a line is written as it is: rich would highlight
        # every one, to throw the colours away (a tenth of the engine's time per event, measured).
        self._plain = not console.is_terminal

    def __call__(self, kind: str, task: str | None, data: Mapping[str, Any]) -> None:
        if kind in QUIET:
            return
        line = f"[{time.monotonic() - self.start:7.1f}s] {describe(kind, task, data)}"
        with self._lock:
            if self._plain:
                self.console.file.write(line + "\n")
                self.console.file.flush()
            else:
                self.console.print(line, markup=False, soft_wrap=True)

    def close(self) -> None:
        pass


class LiveProgress(PlainProgress):
    """Important events print above a live table of the tasks in flight."""

    def __init__(self, console: Console, total: int) -> None:
        super().__init__(console)
        self.total = total
        self.running: dict[str, tuple[float, str]] = {}
        self.done = self.failed = 0
        # Rebuilt at every refresh, so elapsed times tick and no stale frame survives an event.
        self.live = Live(console=console, refresh_per_second=4, transient=True, get_renderable=self._table)
        self.live.start()

    def __call__(self, kind: str, task: str | None, data: Mapping[str, Any]) -> None:
        with self._lock:
            if task and kind == "task.started":
                self.running[task] = (time.monotonic(), "agent")
            elif task and kind in STEPS:
                step = STEPS[kind](data)
                self.running[task] = (self.running.get(task, (time.monotonic(), ""))[0], step)
            elif task and kind in ("task.done", "task.failed", "task.retry"):
                self.running.pop(task, None)
                self.done += kind == "task.done"
                self.failed += kind == "task.failed"
            if kind not in QUIET and kind not in ("task.started", "task.captured", "task.verified", "task.reviewing"):
                self.live.console.print(f"[{time.monotonic() - self.start:7.1f}s] {describe(kind, task, data)}",
                                        markup=False)
            self.live.refresh()

    def _table(self) -> Group:
        table = Table()
        for col in ("task", "step", "time"):
            table.add_column(col)
        for tid, (since, step) in sorted(self.running.items()):
            table.add_row(Text(printable(tid)), step, f"{time.monotonic() - since:.0f}s")
        summary = (f"{self.done}/{self.total} done, {self.failed} failed, {len(self.running)} running, "
                   f"{time.monotonic() - self.start:.0f}s elapsed")
        return Group(Text(summary, style="bold"), table)

    def close(self) -> None:
        self.live.stop()


# The step a running task is at after an event (the live table's "step" column).
STEPS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "task.captured": lambda data: "verify",
    "task.reviewing": lambda data: f"review {data.get('round')}",
    "task.reviewed": lambda data: "done" if data.get("verdict") == "approved" else f"fix {data.get('round')}",
}

# What stopped an attempt, in words, by the error kind a `limits.backoff` or `task.retry` event carries.
CAUSES = {
    "rate_limit": "rate limited", "overloaded": "provider overloaded", "timeout": "timed out",
    "stalled": "stalled (no output)", "crash": "agent crashed", "network": "network error", "quota": "quota spent",
}


def cause(data: Mapping[str, Any]) -> str | None:
    kind = data.get("reason") or data.get("error_kind") or data.get("kind")
    return CAUSES.get(str(kind), str(kind).replace("_", " ")) if kind else None


def describe(kind: str, task: str | None, data: Mapping[str, Any]) -> str:
    """One line for an event. Everything in it that agents or commands produced (errors, file names,
    commands, output) is made printable: nothing they print can drive the user's terminal."""
    return printable(_describe(kind, task, data))


def _describe(kind: str, task: str | None, data: Mapping[str, Any]) -> str:
    who = f"{task}: " if task else ""
    if kind == "task.started":
        return f"{who}started (attempt {data.get('attempt')}, agent {data.get('profile')})"
    if kind == "task.done":
        return f"{who}done — verified, {len(data.get('files', []))} file(s) changed"
    if kind == "task.failed":
        blocks = data.get("blocks") or []
        return f"{who}FAILED: {data.get('error')}" + (f" (blocks {', '.join(blocks)})" if blocks else "")
    if kind == "task.retry":
        why = cause(data)
        return f"{who}{why + '; ' if why else ''}retrying in {data.get('delay') or 0:.1f}s: {data.get('error')}"
    if kind == "task.conflict":
        return f"{who}CONFLICT with {data.get('with')} in {', '.join(data.get('files', []))}"
    if kind == "task.agent_done":
        if data.get("ok"):
            return f"{who}agent finished in {data.get('seconds', 0):.1f}s"
        return f"{who}agent FAILED ({data.get('error_kind')}): {data.get('error_message')}"
    if kind == "task.captured":
        text = f"{who}committed {str(data.get('commit'))[:10]} ({len(data.get('files', []))} file(s))"
        if data.get("deviations"):
            text += f"; outside its scope: {', '.join(data['deviations'])}"
        if data.get("contract_violations"):
            text += f"; CHANGED FROZEN CONTRACTS: {', '.join(data['contract_violations'])}"
        return text
    if kind == "integration.started":
        return f"integrating {len(data.get('order', []))} branch(es) into {data.get('branch')}"
    if kind == "task.verified":
        return f"{who}verify {'passed' if data.get('ok') else 'FAILED'} ({data.get('seconds', 0):.1f}s)"
    if kind == "limits.backoff":
        return f"{who}{cause(data) or 'backing off'}: {data.get('profile')} concurrency now {data.get('concurrency')}"
    if kind == "integration.verified":
        if not data.get("command"):
            return "no integration test"
        return f"integration test {'passed' if data.get('ok') else 'FAILED'}: {data.get('command')}"
    if kind == "integration.conflict":
        return f"integration CONFLICT: {data.get('conflict')}"
    if kind == "integration.resolving":
        return (f"resolver {data.get('profile')} on {data.get('task')}'s conflict "
                f"({', '.join(data.get('files', []))}), round {data.get('round')}")
    if kind == "integration.resolved":
        if data.get("ok"):
            return (f"conflict of {data.get('task')} RESOLVED by an agent in {data.get('rounds')} round(s): "
                    "see INTEGRATION-REPORT.md")
        return f"conflict of {data.get('task')} NOT resolved: {data.get('error')}"
    if kind == "integration.repairing":
        return f"integration engineer {data.get('profile')}: round {data.get('round')} on `{data.get('command')}`"
    if kind == "integration.repaired":
        if not data.get("ok"):
            return f"integration engineer could not repair the integration test: {data.get('error')}"
        tests = f"; it CHANGED TEST FILES {', '.join(data['test_files'])}" if data.get("test_files") else ""
        return (f"integration test REPAIRED by an agent in {data.get('rounds')} round(s), changing "
                f"{', '.join(data.get('files', []))}{tests}: see INTEGRATION-REPORT.md")
    if kind == "integration.concerns":
        return (f"integration verifier {data.get('profile')} marked {data.get('marked')} of "
                f"{data.get('concerns')} integration concern(s): see merged-context.json")
    if kind == "integration.reviewing":
        return f"end review round {data.get('round')} by {data.get('reviewer')}"
    if kind == "integration.reviewed":
        if data.get("verdict") == "approved":
            return f"end review round {data.get('round')}: approved"
        return f"end review round {data.get('round')}: changes requested ({len(data.get('comments', []))} comment(s))"
    if kind == "integration.fixed":
        return f"end review: fixer {data.get('fixer')} {'done' if data.get('ok') else 'FAILED'}"
    if kind == "run.budget_spent":
        return (f"--max-cost reached: ${data.get('spent', 0):.4f} spent of ${data.get('max_cost', 0):.4f}; "
                f"not starting {', '.join(data.get('not_started', [])) or 'anything more'}; running tasks finish")
    if kind == "run.cancelling":
        return f"cancelling ({data.get('why')}): running agents are being stopped"
    review = f"level {data['level']} review" if "level" in data else "review"  # a per-level review's
    if kind == "task.reviewing":
        return f"{who}{review} round {data.get('round')} by {data.get('reviewer')}"
    if kind == "task.reviewed":
        if data.get("verdict") == "approved":
            return f"{who}{review} round {data.get('round')}: approved"
        comments = data.get("comments") or []
        unread = " (no readable verdict)" if data.get("malformed") else ""
        return (f"{who}{review} round {data.get('round')}: changes requested{unread}, {len(comments)} comment(s)"
                + (f": {comments[0]}" if comments else ""))
    if kind == "task.fixed":
        return f"{who}fixer {'finished' if data.get('ok') else 'FAILED'} (round {data.get('round')})"
    if kind == "run.gate_failed":
        left = ", ".join(data.get("not_started", [])) or "nothing else"
        return f"gate {data.get('gate')} FAILED: {data.get('error')}; not starting {left}; running tasks finish"
    if kind == "run.finished":  # why it did not complete is in the summary that follows
        return f"run {data.get('status')}"
    if kind == "delivered":
        return "delivered " + ", ".join(data.get("branches", {}))
    return _describe_more(kind, who, data)


def _describe_more(kind: str, who: str, data: Mapping[str, Any]) -> str:
    """The events that need a line only now and then: never an event's raw name."""
    if kind == "task.blocked":
        return f"{who}blocked: it needs {data.get('by')}, which failed"
    if kind == "task.reset":
        return f"{who}starting over (it was {data.get('was')} when the run stopped)"
    if kind == "task.cancelled":
        why = {"budget": "--max-cost reached"}.get(str(data.get("why")), data.get("why"))
        return f"{who}cancelled" + (f" ({why})" if why else "")
    if kind == "task.reused":
        return f"{who}reused from run {data.get('from_run')} (unchanged; verified there)"
    if kind == "task.workspace":
        return f"{who}workspace ready" + (f" on node {data['host']}" if data.get("host") else "")
    if kind == "task.node_lost":
        return f"{who}its node was lost ({data.get('error')}): running it again on another node"
    if kind == "task.attempt_done":
        return f"{who}attempt {data.get('attempt')}: {data.get('outcome')}"
    if kind == "run.started":
        return f"run started (process {data.get('pid')}, --jobs {data.get('jobs')})"
    if kind == "run.cancel_requested":
        return "cancel requested"
    if kind == "run.cancelled":
        return "run cancelled" + (" (its process was already gone)" if data.get("why") == "no live process" else "")
    if kind == "run.interrupted":
        return "run interrupted: continue it with `plait resume`"
    if kind == "limits.increase":
        return f"{who}{data.get('profile')} concurrency raised to {data.get('concurrency')}"
    if kind == "run.estimates":
        return (f"estimates learned from {data.get('samples')} task durations of earlier runs "
                "(`plait run --no-history` uses the plan's own)")
    if kind == "rehearsal.server":
        return f"rehearsal: the agents talk to plait's scripted model server at {data.get('url')}"
    said = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in data.items() if not isinstance(v, list | dict))
    return f"{who}{kind.replace('.', ' ').replace('_', ' ')}" + (f": {said}" if said else "")
