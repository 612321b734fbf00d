"""What a run measured, as plain data: its metrics (`plait.report.Metrics`), task graph and time spans, from the
state database's rows and the run's summary. Nothing here imports more than JSON: `plait status --json` reads it
(docs/benchmarks.md)."""

from __future__ import annotations

import json
from functools import lru_cache

from plait import graph
from plait.journal import EventKind, TaskState, summarize

TYPE_CHECKING = False  # typing takes longer to import than this whole module; mypy treats this as True
if TYPE_CHECKING:
    from typing import Any


def metrics(run: dict[str, Any], tasks: list[dict[str, Any]], attempts: list[dict[str, Any]],
            summary: dict[str, Any]) -> dict[str, Any]:
    """What a run measured (`plait.report.Metrics`'s fields, in its order, as plain data) from its rows and its
    summary (`Store.summary`). `run` needs `id`, `status`, `jobs`, `options_json` and `plan_json` or
    `graph_json`; `attempts` need `task_id`, `started_at`, `finished_at`."""
    s = summary
    spans = [(start, end) for start, end in s.get("spans", [])]
    needs, _, _, order = run_graph(run)
    options = json.loads(run.get("options_json") or "{}")
    spent: dict[str, float] = dict.fromkeys(needs, 0.0)
    ran = intervals(attempts, spans)
    for tid, (start, end) in ran:
        spent[tid] = spent.get(tid, 0.0) + end - start
    wall = union_seconds([span for _, span in ran] + waits(s, spans))
    work = sum(spent.values())
    cp = sum(spent[t] for t in graph.critical_path(needs, spent, order))
    jobs = int(run["jobs"] or 1)
    lb = max(cp, work / jobs)
    done = sum(1 for t in tasks if t["state"] == TaskState.DONE)
    reused = {t["task_id"]: t["reused_from"] for t in tasks if t.get("reused_from")}
    measured = done > len(reused) and wall > 0
    costs = [t["cost_usd"] for t in tasks if t["cost_usd"] is not None]
    at_integration = integration_lines(s.get("integration", []))
    costs += [c for c, _ in at_integration if c is not None]
    return {
        "run_id": run["id"], "status": run["status"], "jobs": jobs, "rehearsal": bool(options.get("rehearse")),
        "wall_seconds": round(wall, 3), "task_seconds": round(work, 3),
        "speedup": round(work / wall, 3) if measured else None,
        "critical_path_seconds": round(cp, 3), "lower_bound_seconds": round(lb, 3),
        "efficiency": round(lb / wall, 3) if measured else None, "tasks": len(tasks), "done": done,
        "failed": [t["task_id"] for t in tasks if t["state"] == TaskState.FAILED],
        "blocked": [t["task_id"] for t in tasks if t["state"] == TaskState.BLOCKED],
        "retries": s.get("retries", 0), "conflicts": s.get("conflicts", 0),
        "cost_usd": round(sum(costs), 6) if costs else None,
        "tokens_in": sum(t["tokens_in"] or 0 for t in tasks), "tokens_out": sum(t["tokens_out"] or 0 for t in tasks),
        "deviations": {t["task_id"]: found for t in tasks if (found := deviation_lines(t))},
        "reviews": {t["task_id"]: json.loads(t["review_json"]) for t in tasks if t.get("review_json")},
        "failed_gate": s.get("failed_gate"),
        "integration_agents": [line for _, line in at_integration],
        "why": s.get("why", ""),
        "reused": reused,
    }


def run_graph(run: dict[str, Any]) -> tuple[dict[str, list[str]], frozenset[str], dict[str, int], list[str]]:
    """(each task's needs, the gates, each task's level, a topological order) of a run: recorded with it
    (`graph_json`), or read from its plan for a run recorded before that."""
    g = json.loads(run.get("graph_json") or "null") or _graph(run["plan_json"])
    return g["needs"], frozenset(g["gates"]), g["levels"], g["order"]


def graph_json(plan_json: str) -> str:
    """What `run_graph` reads, recorded with a new run."""
    return json.dumps(_graph(plan_json))


def _graph(plan_json: str) -> dict[str, Any]:
    needs, gates = plan_graph(plan_json)
    order = graph.topological_order(needs)
    return {"needs": needs, "gates": sorted(gates), "levels": graph.levels(needs, order), "order": order}


@lru_cache(maxsize=4)
def plan_graph(plan_json: str) -> tuple[dict[str, list[str]], frozenset[str]]:
    """(each task's needs, the gates) of a recorded plan: read once per plan (a status read needs them twice,
    and 1,000 tasks' plan is half a megabyte of JSON). Not to be changed by the caller."""
    tasks = json.loads(plan_json)["tasks"]
    return {t["id"]: list(t.get("needs", [])) for t in tasks}, frozenset(t["id"] for t in tasks if t.get("gate"))


def json_list(text: str | None) -> list[Any]:
    """A task's list column (`conflicts_json`, `deviations_json`...): most are empty, read without a parse."""
    return [] if not text or text == "[]" else list(json.loads(text))


def integration_lines(events: list[dict[str, Any]]) -> list[tuple[float | None, str]]:
    """(cost, line) for each agent's work on the merged result, from the integration events."""
    out: list[tuple[float | None, str]] = []
    for e in events:
        d = e["data"]
        if e["kind"] == EventKind.INTEGRATION_RESOLVED:
            what = (f"resolved by an agent in {d.get('rounds')} round(s)" if d.get("ok")
                    else f"NOT resolved ({d.get('error')})")
            partners = ", ".join(d.get("with") or []) or "earlier work"
            out.append((d.get("cost_usd"), f"conflict of {d.get('task')} with {partners}: {what}"))
        elif e["kind"] == EventKind.INTEGRATION_REPAIRED:
            what = (f"repaired by the integration engineer in {d.get('rounds')} round(s), changing "
                    f"{', '.join(d.get('files') or [])}" if d.get("ok") else f"NOT repaired ({d.get('error')})")
            tests = f"; it changed test files {', '.join(d['test_files'])}" if d.get("test_files") else ""
            out.append((d.get("cost_usd"), f"integration test {what}{tests}"))
        elif e["kind"] == EventKind.INTEGRATION_CONCERNS:
            out.append((d.get("cost_usd"), f"the integration verifier marked {d.get('marked')} of "
                                           f"{d.get('concerns')} integration concern(s)"))
        elif e["kind"] in (EventKind.INTEGRATION_REVIEWED, EventKind.INTEGRATION_FIXED):
            out.append((d.get("cost_usd"), f"end review round {d.get('round')}: " + (
                str(d.get("verdict", "")).replace("_", " ") if e["kind"] == EventKind.INTEGRATION_REVIEWED
                else "fixer " + ("done" if d.get("ok") else "FAILED"))))
    return out


def deviation_lines(task: dict[str, Any]) -> list[str]:
    paths = json_list(task.get("deviations_json"))
    incidents = json_list(task.get("incidents_json"))
    return [f"out of scope: {p}" for p in paths] + [str(i) for i in incidents]


def process_spans(events: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """Each process that ran the run: from its `run.started` to the last event it wrote (`run.finished`,
    `run.interrupted`, or whatever it wrote last before it was killed)."""
    return [(start, end) for start, end in summarize(events).get("spans", [])]


def end_of_process(spans: list[tuple[float, float]], at: float) -> float:
    """When the process that was running at `at` stopped (`at` itself if none was)."""
    ends = [end for start, end in spans if start <= at]
    return max(at, ends[-1]) if ends else at


def attempt_intervals(attempts: list[dict[str, Any]],
                      events: list[dict[str, Any]]) -> list[tuple[str, tuple[float, float]]]:
    """(task, (start, end)) of every attempt (see `intervals`)."""
    return intervals(attempts, process_spans(events))


def intervals(attempts: list[dict[str, Any]],
              spans: list[tuple[float, float]]) -> list[tuple[str, tuple[float, float]]]:
    """(task, (start, end)) of every attempt. One its process never finished (killed, interrupted, or
    still running) ends with the last event that process wrote, never with the next process's start."""
    out = []
    for a in attempts:
        start = a["started_at"]
        if start is None:
            continue
        end = a["finished_at"] if a["finished_at"] is not None else end_of_process(spans, start)
        out.append((a["task_id"], (start, max(start, end))))
    return out


def waits(summary: dict[str, Any], spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Back-off waits before a retry, and integration to the run's end, each within its process."""
    out = [(ts, min(end_of_process(spans, ts), ts + float(delay or 0.0))) for ts, delay in summary.get("waits", [])]
    return out + [(ts, end_of_process(spans, ts)) for ts in summary.get("integration_started", [])]


def union_seconds(intervals: list[tuple[float, float]]) -> float:
    """Total length of the union of the intervals: overlapping work counts once."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total
