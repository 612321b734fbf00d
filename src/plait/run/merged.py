"""The run's parent context and merged context (seed 004's parallel workflow).

`parent-context.json` is written when a run starts, before any task does: the feature (plan, spec), the
tasks, the shared constraints (frozen contracts), the integration requirements and each task's success
criteria. `merged-context.json` is written when the run ends — after the integration, whether it passed or
failed, and also when the run ended before integrating: what every task did, every file modified, the
decisions and pending actions gathered from each task's `context.json`, the integration concerns (where one
task's stated assumption meets what another provides) and the integration test's result.

Both sit in the run's evidence folder (`.plait/runs/<run>/`); their schema is in docs/run.md. Every string
goes through plait's redaction before it is written.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plait.journal import ALIGNED, NOT_ALIGNED, UNKNOWN
from plait.redact import redact, write_text
from plait.run.concerns import concerns, interface, subject
from plait.status import MERGED_FILE

# Annotations only, and the evidence module is imported where it is used: `status_entry` (`plait status`)
# needs none of them.
if TYPE_CHECKING:
    from plait.run.context import RunContext
    from plait.run.integrate import IntegrationResult

__all__ = ["concerns", "interface", "merged_context", "parent_context", "subject", "write_merged", "write_parent"]

PARENT_SCHEMA = "plait.parent-context/1"
MERGED_SCHEMA = "plait.merged-context/1"
PARENT_FILE = "parent-context.json"
OUTPUT_TAIL_CHARS = 2000  # of the integration test's output; the full log is in `integration/`


def _iso(seconds: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds)) if seconds else None


def _scrub(value: Any) -> Any:
    """Every string in `value`, secrets masked (before JSON escapes could hide one from the file pass)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {redact(str(k)): _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def _write(path: Path, doc: Mapping[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(_scrub(doc), indent=2) + "\n")
    return path



# -- parent context -----------------------------------------------------------------------


def parent_context(ctx: RunContext) -> dict[str, Any]:
    from plait.evidence import CONTEXT_VERSION

    plan = ctx.plan
    tasks = [{"id": t.id, "title": t.title, "role": t.role or "software-engineer",
              "agent": plan.agent_for(t, ctx.profiles), "needs": list(t.needs), "files": list(t.files),
              "gate": t.gate} for t in plan.tasks]
    roots = sum(1 for t in plan.tasks if not t.needs)
    return {
        "schema": PARENT_SCHEMA,
        "version": CONTEXT_VERSION,
        "workflow_id": ctx.paths.run_id,
        "timestamp": _iso(time.time()),
        "current_agent": "orchestrator",
        "phase": "parallel-execution",
        "feature": {"name": plan.name, "spec": plan.spec, "constitution": plan.constitution,
                    "base": ctx.base_sha},
        "tasks": tasks,
        "shared_constraints": [{"path": c.path, "owner": c.owner, "description": c.description}
                               for c in plan.contracts],
        "integration_requirements": {"verify": plan.integration.verify},
        "success_criteria": {t.id: list(t.acceptance) for t in plan.tasks},
        "context_summary": f"Run {ctx.paths.run_id} of {plan.name!r}: {len(tasks)} task(s), {roots} ready at "
                           f"start; {len(plan.contracts)} frozen contract(s); integration verify: "
                           + (f"`{plan.integration.verify}`" if plan.integration.verify else "none") + ".",
    }


def write_parent(ctx: RunContext) -> Path:
    return _write(ctx.paths.run_dir / PARENT_FILE, parent_context(ctx))


# -- merged context -----------------------------------------------------------------------


def _verification(result: IntegrationResult | None) -> dict[str, Any] | None:
    v = result.verify if result else None
    if v is None:
        return None
    return {"command": v.command, "exit_code": v.exit_code, "timed_out": v.timed_out, "seconds": round(v.seconds, 3),
            "ok": v.ok, "output_tail": v.output_tail[-OUTPUT_TAIL_CHARS:]}


def merged_context(ctx: RunContext, rows: Sequence[Mapping[str, Any]], status: str,
                   result: IntegrationResult | None) -> dict[str, Any]:
    """`rows`: the run's tasks as the state database holds them (state, attempt, times, commit, error)."""
    from plait.evidence import CONTEXT_VERSION, read_json

    plan, paths = ctx.plan, ctx.paths
    by_id = {r["task_id"]: r for r in rows}
    docs: dict[str, dict[str, Any]] = {}
    summaries, files, decisions = [], [], []
    pending: dict[str, list[str]] = {}
    for t in plan.tasks:
        row = by_id.get(t.id, {})
        doc = read_json(paths.task_dir(t.id) / "context.json")
        res = read_json(paths.task_dir(t.id) / "results.json")
        docs[t.id] = doc
        changed = list(doc.get("files_modified") or res.get("files_changed") or [])
        files += [f for f in changed if f not in files]
        review = doc.get("review") or {}
        started, finished = row.get("started_at"), row.get("finished_at")
        summaries.append({
            "task_id": t.id, "title": t.title, "agent": doc.get("current_agent"), "status": row.get("state"),
            "attempts": row.get("attempt") or 0,
            "duration_seconds": round(finished - started, 3) if started and finished else None,
            "files_changed": changed, "files_count": len(changed), "commit": row.get("commit_sha"),
            "review_rounds": review.get("rounds"), "review_approved": review.get("approved"),
            "error": row.get("error"), "context_summary": doc.get("context_summary", ""),
        })
        decisions += [{"task_id": t.id, "text": d} for d in doc.get("decisions") or []]
        for p in doc.get("pending_actions") or []:
            pending.setdefault(p, []).append(t.id)
    found = (result.concerns if result is not None and result.concerns is not None
             else concerns(docs, [(c.path, c.owner) for c in plan.contracts]))
    verification = _verification(result)
    times = [r[k] for r in rows for k in ("started_at", "finished_at") if r.get(k)]
    phase = ("integration-not-run" if result is None else
             "integration-verified" if result.ok else "integration-failed")
    counts = {s: sum(1 for c in found if c["status"] == s) for s in (ALIGNED, NOT_ALIGNED, UNKNOWN)}
    states = {s: sum(1 for x in summaries if x["status"] == s) for s in dict.fromkeys(x["status"] for x in summaries)}
    test = ("no integration test ran" if verification is None else
            "the plan has no integration.verify" if verification["command"] is None else
            f"integration verify `{verification['command']}` {'passed' if verification['ok'] else 'failed'}")
    return {
        "schema": MERGED_SCHEMA,
        "version": CONTEXT_VERSION,
        "workflow_id": paths.run_id,
        "timestamp": _iso(time.time()),
        "current_agent": "orchestrator",
        "next_agent": None,
        "phase": phase,
        "run_status": status,
        "feature": {"name": plan.name, "spec": plan.spec},
        "parent_context": PARENT_FILE,
        "parallel_execution_summary": {"started_at": _iso(min(times)) if times else None,
                                       "finished_at": _iso(max(times)) if times else None,
                                       "tasks": summaries},
        "files_modified": files,
        "decisions": decisions,
        "pending_actions": [{"text": p, "task_ids": ids} for p, ids in pending.items()],
        "integration_concerns": found,
        "integration": None if result is None else {
            "ok": result.ok, "branch": f"plait/{paths.run_id}/integration", "commit": result.commit,
            "merged": list(result.merged), "conflict": result.conflict, "delivered": dict(result.delivered),
            "error": result.error or None,
            # Agents' work on the merged result: each conflict's resolver, the integration engineer's repair.
            "changed_by_agents": [m.to_json() for m in result.mends],
            "end_review": result.review.summary() if result.review else None},
        "verification": verification,
        "context_summary": f"Run {paths.run_id} {status}: {len(summaries)} task(s) ("
                           + ", ".join(f"{n} {s}" for s, n in states.items()) + f"); {len(files)} file(s) "
                           f"modified; {test}; integration concerns: {counts[ALIGNED]} aligned, "
                           f"{counts[NOT_ALIGNED]} not aligned, {counts[UNKNOWN]} unknown.",
    }


def write_merged(ctx: RunContext, rows: Sequence[Mapping[str, Any]], status: str,
                 result: IntegrationResult | None) -> Path:
    return _write(ctx.paths.run_dir / MERGED_FILE, merged_context(ctx, rows, status, result))
