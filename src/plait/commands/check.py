"""`plait check`: validate plans and show how well they parallelize."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.tree import Tree

from plait.plan.analyze import Analysis, analyze
from plait.plan.load import LoadedPlan, load_plan
from plait.plan.model import format_duration as fd


def check(paths: list[Path], jobs: int | None, as_json: bool, console: Console) -> None:
    loaded = [load_plan(p) for p in paths]  # raises on the first invalid plan, all its errors listed
    results = [(lp, analyze(lp.plan, jobs)) for lp in loaded]
    if as_json:
        docs = [_json(lp, a) for lp, a in results]
        console.print_json(json.dumps(docs[0] if len(docs) == 1 else docs))
        return
    for lp, a in results:
        render(lp, a, console)


def _json(lp: LoadedPlan, a: Analysis) -> dict[str, Any]:
    doc = a.to_json()
    doc["path"] = str(lp.path)
    doc["warnings"] = [str(w) for w in lp.warnings]
    for finding, raw in zip(a.findings, doc["findings"], strict=True):
        raw["location"] = str(_locate(lp, finding.tasks))
    return doc


def _locate(lp: LoadedPlan, task_ids: tuple[str, ...]) -> object:
    ids = [t.id for t in lp.plan.tasks]
    if task_ids and task_ids[0] in ids:
        return lp.locate("tasks", ids.index(task_ids[0]))
    return lp.locate()


def render(lp: LoadedPlan, a: Analysis, console: Console) -> None:
    plan = lp.plan
    console.rule(f"[bold]{plan.name}[/]  {lp.path}")
    for w in lp.warnings:
        console.print(f"[yellow]warning[/] {w}")

    tree = Tree(f"[bold]{a.tasks} tasks in {len(a.levels)} levels[/] (a level = longest chain of needs above it)")
    critical = set(a.critical_path)
    for depth, ids in enumerate(a.levels):
        branch = tree.add(f"level {depth}  [dim]{len(ids)} in parallel[/]")
        for tid in ids:
            t = plan.task(tid)
            mark = "[red]●[/] " if tid in critical else ""
            needs = f"  [dim]needs {', '.join(t.needs)}[/]" if t.needs else ""
            branch.add(f"{mark}[cyan]{tid}[/] {t.title} [dim]{t.size.value} {fd(t.seconds)}[/]{needs}")
    console.print(tree)

    e = a.estimate
    table = Table(title="Estimates", show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("critical path", f"{' -> '.join(a.critical_path)}  ({fd(a.critical_path_seconds)})  [red]●[/]")
    table.add_row("total work", f"{fd(a.total_work_seconds)} (the sequential estimate)")
    table.add_row(f"wall time, --jobs {e.jobs}", f"{fd(e.wall_seconds)} dependency-driven (plait's scheduler)")
    table.add_row("", f"{fd(e.barrier_seconds)} with phase barriers (each level waits for the previous)")
    table.add_row("lower bound", f"{fd(e.lower_bound_seconds)} = max(critical path, work / jobs)")
    table.add_row("speed-up", f"{e.speedup:.2f}x, time reduction {100 * e.time_reduction:.0f}%")
    console.print(table)

    by_jobs = Table(title="Simulated wall time by number of agents")
    for col in ("agents", "dependency-driven", "phase barriers", "speed-up"):
        by_jobs.add_column(col, justify="right")
    for row in a.by_jobs:
        style = "bold green" if row.jobs == a.recommended_agents else ""
        by_jobs.add_row(str(row.jobs), fd(row.wall_seconds), fd(row.barrier_seconds), f"{row.speedup:.2f}x",
                        style=style)
    console.print(by_jobs)

    reasons = "\n".join(f"  • {r}" for r in a.score_reasons)
    body = [f"[bold]parallelization score {a.score}/10[/]\n{reasons}",
            f"[bold]recommended agents: {a.recommended_agents}[/] — {a.recommended_reason}"]
    for f in a.findings:
        body.append(f"[yellow]{f.kind}[/] {_locate(lp, f.tasks)}: {f.message} — {f.fix}")
    console.print(Panel(Group(*body), title="Analysis", expand=False))
