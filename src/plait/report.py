"""Run metrics from the state database (seeds 003/004): measured, never claimed."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

__all__ = ["Metrics", "asdict", "compute", "lines", "write"]
from pathlib import Path
from typing import Any

from plait import graph
from plait.plan.model import format_duration as fd


@dataclass(frozen=True)
class Metrics:
    run_id: str
    status: str
    jobs: int
    wall_seconds: float
    task_seconds: float  # sum over every attempt: the sequential cost of the same work
    speedup: float
    critical_path_seconds: float
    lower_bound_seconds: float
    efficiency: float  # lower bound / wall: 1.0 means no schedule could have been faster
    tasks: int
    done: int
    failed: list[str]
    blocked: list[str]
    retries: int
    conflicts: int
    cost_usd: float | None
    tokens_in: int
    tokens_out: int
    # task -> one line per change outside its declared scope and per incident (refused writes, what
    # the agent did to its own workspace repository)
    deviations: dict[str, list[str]]


def compute(run: dict[str, Any], tasks: list[dict[str, Any]], attempts: list[dict[str, Any]],
            events: list[dict[str, Any]]) -> Metrics:
    plan = json.loads(run["plan_json"])
    needs = {t["id"]: list(t.get("needs", [])) for t in plan["tasks"]}
    spent: dict[str, float] = dict.fromkeys(needs, 0.0)
    for a in attempts:
        if a["started_at"] and a["finished_at"]:
            spent[a["task_id"]] += a["finished_at"] - a["started_at"]
    wall = wall_seconds(events)
    work = sum(spent.values())
    cp_path = graph.critical_path(needs, spent)
    cp = sum(spent[t] for t in cp_path)
    jobs = int(run["jobs"] or 1)
    lb = max(cp, work / jobs)
    costs = [t["cost_usd"] for t in tasks if t["cost_usd"] is not None]
    return Metrics(
        run_id=run["id"], status=run["status"], jobs=jobs, wall_seconds=round(wall, 3),
        task_seconds=round(work, 3), speedup=round(work / wall, 3) if wall else 0.0,
        critical_path_seconds=round(cp, 3), lower_bound_seconds=round(lb, 3),
        efficiency=round(lb / wall, 3) if wall else 0.0, tasks=len(tasks),
        done=sum(1 for t in tasks if t["state"] == "done"),
        failed=[t["task_id"] for t in tasks if t["state"] == "failed"],
        blocked=[t["task_id"] for t in tasks if t["state"] == "blocked"],
        retries=sum(1 for e in events if e["kind"] == "task.retry"),
        conflicts=sum(1 for e in events if e["kind"] == "task.conflict"),
        cost_usd=round(sum(costs), 6) if costs else None,
        tokens_in=sum(t["tokens_in"] or 0 for t in tasks), tokens_out=sum(t["tokens_out"] or 0 for t in tasks),
        deviations={t["task_id"]: found for t in tasks if (found := deviation_lines(t))},
    )


def deviation_lines(task: dict[str, Any]) -> list[str]:
    paths = json.loads(task.get("deviations_json") or "[]")
    incidents = json.loads(task.get("incidents_json") or "[]")
    return [f"out of scope: {p}" for p in paths] + [str(i) for i in incidents]


def wall_seconds(events: list[dict[str, Any]]) -> float:
    """Time plait was actually running: a resumed (or killed) run counts segment by segment,
    each from its `run.started` to the last event before the next one."""
    total, start, last = 0.0, None, 0.0
    for e in events:
        if e["kind"] == "run.started":
            if start is not None:
                total += last - start
            start = e["ts"]
        last = e["ts"]
    if start is not None:
        total += last - start
    return total


def lines(m: Metrics) -> list[str]:
    out = [
        f"wall clock {fd(m.wall_seconds)}; sum of task times {fd(m.task_seconds)}; "
        f"speed-up {m.speedup:.2f}x with --jobs {m.jobs}",
        f"lower bound {fd(m.lower_bound_seconds)} = max(critical path {fd(m.critical_path_seconds)}, "
        f"work/jobs); efficiency {100 * m.efficiency:.0f}%",
        f"tasks {m.done}/{m.tasks} done; failed {len(m.failed)}; blocked {len(m.blocked)}; "
        f"retries {m.retries}; conflicts {m.conflicts}",
    ]
    if m.deviations:
        total = sum(len(v) for v in m.deviations.values())
        out.append(f"deviations {total} in {len(m.deviations)} task(s): see REPORT.md")
    if m.cost_usd is not None or m.tokens_in:
        cost = f"${m.cost_usd:.4f}" if m.cost_usd is not None else "unknown"
        out.append(f"cost {cost}; tokens in {m.tokens_in}, out {m.tokens_out}")
    return out


def write(folder: Path, m: Metrics) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(asdict(m), indent=2) + "\n")
    path = folder / "REPORT.md"
    body = [f"# Run {m.run_id}: {m.status}", "", *[f"- {line}" for line in lines(m)]]
    if m.failed:
        body.append(f"- failed: {', '.join(m.failed)}")
    if m.blocked:
        body.append(f"- blocked (a dependency failed or the run stopped): {', '.join(m.blocked)}")
    if m.deviations:
        body += ["", "## Deviations", ""]
        body += [f"- `{task}`: {line}" for task, found in m.deviations.items() for line in found]
    path.write_text("\n".join(body) + "\n")
    return path
