"""The status document built from a run's rows (plait.status reads them; a document kept ready needs none of
this): the seed-001 fields, each task's detail, the run's metrics and what its merged context concluded."""

from __future__ import annotations

import json
import os

from plait import measure
from plait.journal import ALIGNED, NOT_ALIGNED, UNKNOWN, TaskState, summarize
from plait.status import MERGED_FILE, rows

TYPE_CHECKING = False  # typing costs a status read more than this whole module; mypy treats this as True
if TYPE_CHECKING:
    import sqlite3
    from typing import Any

ACTIVE = (TaskState.RUNNING, TaskState.RETRYING)
# What the document and the metrics read of each task
TASK_FIELDS = ", ".join(["task_id", "title", "state", "attempt", "branch", "worktree", "commit_sha", "started_at",
                         "finished_at", "verify_exit", "verify_seconds", "error", "conflicts_json", "deviations_json",
                         "incidents_json", "review_json", "cost_usd", "tokens_in", "tokens_out", "reused_from"])


def read(db: sqlite3.Connection, run: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                                                dict[str, Any]]:
    """The run's tasks, its attempts' spans and its summary (and its plan, when its task graph was not kept)."""
    if not run.get("graph_json") and run.get("plan_json") is None:  # recorded before its task graph was kept
        found = db.execute("SELECT plan_json FROM plans WHERE run_id=?", (run["id"],)).fetchone()
        run["plan_json"] = found[0] if found else None
    try:
        tasks = rows(db.execute(f"SELECT {TASK_FIELDS} FROM tasks WHERE run_id=? ORDER BY position", (run["id"],)))
    except sqlite3.OperationalError:  # a database of an older plait that nothing has migrated yet
        tasks = rows(db.execute("SELECT * FROM tasks WHERE run_id=? ORDER BY position", (run["id"],)))
    attempts = rows(db.execute("SELECT task_id, started_at, finished_at FROM attempts WHERE run_id=? "
                                "ORDER BY started_at", (run["id"],)))
    if run.get("summary_json"):
        summary = json.loads(run["summary_json"])
    else:  # a run recorded before summaries were kept
        summary = summarize([{**e, "data": json.loads(e["data_json"])} for e in rows(db.execute(
            "SELECT * FROM events WHERE run_id=? ORDER BY seq", (run["id"],)))])
    return tasks, attempts, summary


def build(root: str, run: dict[str, Any], tasks: list[dict[str, Any]], attempts: list[dict[str, Any]],
          summary: dict[str, Any], live: bool) -> dict[str, Any]:
    """The document of `run` in the work tree `root`; `live`: a process holds the run."""
    rid = run["id"]
    _, gates, level, _ = measure.run_graph(run)
    active = [t for t in tasks if t["state"] in ACTIVE]
    phase = (f"level {min(level[t['task_id']] for t in active)}" if active else
             "integration" if run["status"] == "running" else run["status"])
    metrics = measure.metrics(run, tasks, attempts, summary)
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
        "counts": counts(tasks),
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


def counts(tasks: list[dict[str, Any]]) -> dict[str, int]:
    counts = dict.fromkeys([*map(str, TaskState), "interrupted"], 0)
    for t in tasks:
        if t["state"] in counts:
            counts[t["state"]] += 1
    return counts


def as_json(doc: dict[str, Any]) -> str:
    """The document as `plait status --json` prints it: one line."""
    return json.dumps(doc)
