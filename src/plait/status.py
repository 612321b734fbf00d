"""A run's status as plain data: what `plait status --json`, the MCP server's `status` tool and the dashboard
show. Read from the state database in one snapshot with nothing imported but JSON and SQLite, so a script
polling a live run of 1,000 tasks gets its answer in a few tens of milliseconds (docs/benchmarks.md): the
task graph was recorded with the run, the summary of its events is kept current as they are written, and
whether a process runs it is asked of its lock, never of git."""

from __future__ import annotations

import json
import os
import sqlite3

from plait import measure, where
from plait.journal import ALIGNED, NOT_ALIGNED, UNKNOWN, TaskState, summarize
from plait.run import liveness

TYPE_CHECKING = False  # typing and pathlib cost a status read more than this whole module; mypy treats this as True
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

MERGED_FILE = "merged-context.json"  # written in the run's evidence folder when it ends (plait.run.merged)
ACTIVE = (TaskState.RUNNING, TaskState.RETRYING)
# What the document and the metrics read of each task
TASK_FIELDS = ", ".join(["task_id", "title", "state", "attempt", "branch", "worktree", "commit_sha", "started_at",
                         "finished_at", "verify_exit", "verify_seconds", "error", "conflicts_json", "deviations_json",
                         "incidents_json", "review_json", "cost_usd", "tokens_in", "tokens_out", "reused_from"])


def document(run_id: str | None = None, cwd: str | Path | None = None) -> dict[str, Any]:
    """The run's state (the latest run's without `run_id`): the seed-001 fields plus per-task detail and metrics."""
    root, common = repository(cwd)
    path = os.path.join(common, "plait", "state.db")
    if not os.path.exists(path):
        raise _error("no runs yet in this repository", "start one with `plait run PLAN`")
    try:
        db = sqlite3.connect(path, timeout=30, isolation_level=None)
        try:
            db.execute("BEGIN")  # one snapshot: a writer's transaction lands before or after all of it
            run, tasks, attempts, summary = _read(db, run_id)
            db.execute("COMMIT")
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        from plait.state import unreadable

        raise unreadable(path, exc) from exc
    rid = run["id"]
    _, gates, level, _ = measure.run_graph(run)
    active = [t for t in tasks if t["state"] in ACTIVE]
    phase = (f"level {min(level[t['task_id']] for t in active)}" if active else
             "integration" if run["status"] == "running" else run["status"])
    metrics = measure.metrics(run, tasks, attempts, summary)
    live = liveness.held(liveness.lock_path(common, rid))
    if not live:  # nothing runs them any more: a killed or interrupted run's tasks wait for `plait resume`
        tasks = [{**t, "state": "interrupted"} if t["state"] in ACTIVE else t for t in tasks]
    status = run["status"] if live or run["status"] not in ("running", "cancelling") else "interrupted"
    evidence = os.path.join(root, ".plait", "runs", rid)
    return {
        "run_id": rid,
        "status": status,
        "phase": phase,
        "plan": run["plan_path"],
        "base": run["base_sha"],
        "jobs": run["jobs"],
        "rehearsal": metrics["rehearsal"],
        "completed_tasks": [{"id": t["task_id"], "name": t["title"], "branch": t["branch"]}
                            for t in tasks if t["state"] == TaskState.DONE],
        "failed_tasks": [{"id": t["task_id"], "name": t["title"], "error": t["error"]}
                         for t in tasks if t["state"] == TaskState.FAILED],
        "counts": _counts(tasks),
        "output": summary.get("last", ""),
        "tasks": [{
            "id": t["task_id"], "title": t["title"], "state": t["state"], "level": level.get(t["task_id"]),
            "branch": t["branch"], "attempt": t["attempt"], "started_at": t["started_at"],
            "finished_at": t["finished_at"], "commit": t["commit_sha"],
            "verify": None if t["verify_exit"] is None and t["state"] != TaskState.DONE else
            {"exit_code": t["verify_exit"], "seconds": t["verify_seconds"]},
            "conflicts": measure.json_list(t["conflicts_json"]),
            "deviations": measure.json_list(t["deviations_json"]),
            "incidents": measure.json_list(t["incidents_json"]),
            "workspace": t["worktree"],
            "error": t["error"], "cost_usd": t["cost_usd"], "gate": t["task_id"] in gates,
            "review": json.loads(t["review_json"]) if t.get("review_json") else None,
            "reused_from": t.get("reused_from"),
        } for t in tasks],
        "metrics": metrics,
        "evidence": evidence,
        "merged_context": merged_context(evidence),
    }


def repository(cwd: str | Path | None = None) -> tuple[str, str]:
    """(work tree, git common dir) of the repository `cwd` (or the current folder) is in; git is asked only
    when the layout is not plain to see (`plait.git.repo.Git.find`)."""
    start = os.path.realpath(cwd if cwd is not None else os.getcwd())
    found = where.locate(start)
    if found is not None:
        return found[0], found[1]
    from pathlib import Path

    from plait.git.repo import Git

    git = Git.find(Path(start))
    return str(git.root), str(git.common_dir)


def merged_context(run_dir: str) -> dict[str, Any] | None:
    """What the status shows of the merged context: where it is and its concerns, counted (None until the run
    has ended and written it)."""
    path = os.path.join(run_dir, MERGED_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or not doc:
        return None
    found = doc.get("integration_concerns") or []
    return {"path": path, "phase": doc.get("phase"),
            "concerns": {s: sum(1 for c in found if c.get("status") == s) for s in (ALIGNED, NOT_ALIGNED, UNKNOWN)}}


def _read(db: sqlite3.Connection, run_id: str | None) -> tuple[dict[str, Any], list[dict[str, Any]],
                                                                list[dict[str, Any]], dict[str, Any]]:
    """The run's row, its tasks, its attempts' spans and its summary."""
    if run_id is None:
        runs = _rows(db.execute("SELECT * FROM runs ORDER BY created_at DESC LIMIT 1"))
        if not runs:
            raise _error("no runs yet in this repository", "start one with `plait run PLAN`")
    else:
        runs = _rows(db.execute("SELECT * FROM runs WHERE id=?", (run_id,)))
        if not runs:
            recent = [r[0] for r in db.execute("SELECT id FROM runs ORDER BY created_at DESC LIMIT 5")][::-1]
            raise _error(f"no run {run_id!r} in this repository", f"recent runs: {', '.join(recent) or 'none'} "
                         "(`plait status`)")
    run = runs[0]
    if not run.get("graph_json") and run.get("plan_json") is None:  # recorded before its task graph was kept
        found = db.execute("SELECT plan_json FROM plans WHERE run_id=?", (run["id"],)).fetchone()
        run["plan_json"] = found[0] if found else None
    try:
        tasks = _rows(db.execute(f"SELECT {TASK_FIELDS} FROM tasks WHERE run_id=? ORDER BY position", (run["id"],)))
    except sqlite3.OperationalError:  # a database of an older plait that nothing has migrated yet
        tasks = _rows(db.execute("SELECT * FROM tasks WHERE run_id=? ORDER BY position", (run["id"],)))
    attempts = _rows(db.execute("SELECT task_id, started_at, finished_at FROM attempts WHERE run_id=? "
                                "ORDER BY started_at", (run["id"],)))
    if run.get("summary_json"):
        summary = json.loads(run["summary_json"])
    else:  # a run recorded before summaries were kept
        summary = summarize([{**e, "data": json.loads(e["data_json"])} for e in _rows(db.execute(
            "SELECT * FROM events WHERE run_id=? ORDER BY seq", (run["id"],)))])
    return run, tasks, attempts, summary


def _rows(cursor: sqlite3.Cursor) -> list[dict[str, Any]]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor]


def _counts(tasks: list[dict[str, Any]]) -> dict[str, int]:
    counts = dict.fromkeys([*map(str, TaskState), "interrupted"], 0)
    for t in tasks:
        if t["state"] in counts:
            counts[t["state"]] += 1
    return counts


def _error(message: str, fix: str) -> Exception:
    from plait.errors import PlaitError  # only when there is one: it is not a cheap import

    return PlaitError(message, fix)
