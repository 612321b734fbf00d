"""`plait check`: validate plans and show how well they parallelize."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.tree import Tree

from plait.errors import Location, PlaitError
from plait.plan.analyze import Analysis, analyze
from plait.plan.load import LoadedPlan, load_plan
from plait.plan.model import format_duration as fd
from plait.plan.validate import Diagnostic, PlanError

PHASED = ("spectacular", "speckit")


@dataclass(frozen=True)
class Relaxed:
    """What `--relax-phases` would change: the plan analyzed with only its stated dependencies."""

    analysis: Analysis
    dropped: int  # implied edges it would drop


def check(paths: list[Path], jobs: int | None, as_json: bool, relax: bool, console: Console) -> int:
    """Check every plan; 1 when one is invalid. With `as_json`, an invalid plan gives a JSON error document
    on stdout instead of error lines."""
    if as_json:
        docs = [check_doc(path, jobs, relax) for path in paths]
        text = json.dumps(docs[0] if len(docs) == 1 else docs)
        if console.is_terminal:
            console.print_json(text)
        else:  # a pipe or a file: plain JSON, without the cost of highlighting it
            click.echo(text)
        return 0 if all(d["valid"] for d in docs) else 1
    for path in paths:
        lp = load_plan(path, relax_phases=relax)
        check_profiles(lp, None)
        a = analyze(lp.plan, jobs)
        render(lp, a, console, None if relax else _relaxed(lp, a.estimate.jobs))
    return 0


def check_profiles(lp: LoadedPlan, root: Path | None) -> None:
    """What `plait run` would refuse: a task whose agent profile does not exist, or a broken plait.toml
    (PlaitError). Profiles belong to the repository plait runs in (`root`, else the current directory's);
    outside any repository there is nothing to check them against."""
    from plait import api

    try:
        repo = api.open_repo(root)
    except PlaitError:
        return
    api.plan_profiles(repo, lp.plan, lp)


def check_doc(path: Path, jobs: int | None, relax: bool, root: Path | None = None) -> dict[str, Any]:
    """`plait check --json` of one plan: its analysis, or (`valid: false`) every error with its location."""
    try:
        lp = load_plan(path, relax_phases=relax, root=root)
        check_profiles(lp, root)
    except PlanError as exc:
        return _error_doc(path, exc.diagnostics)
    except PlaitError as exc:
        return _error_doc(path, (Diagnostic("error", exc.message, exc.fix, exc.location or Location(str(path))),))
    a = analyze(lp.plan, jobs)
    return _json(lp, a, None if relax else _relaxed(lp, a.estimate.jobs))


def _relaxed(lp: LoadedPlan, jobs: int | None) -> Relaxed | None:
    """The same plan with `--relax-phases`, when that changes its dependencies."""
    if lp.format not in PHASED or not lp.inferred:
        return None
    try:
        other = load_plan(lp.path, relax_phases=True)
    except PlanError:
        return None
    def edges(plan: LoadedPlan) -> set[tuple[str, str]]:
        return {(t.id, need) for t in plan.plan.tasks for need in t.needs}

    dropped = len(edges(lp) - edges(other))
    if dropped <= 0:
        return None
    return Relaxed(analyze(other.plan, jobs), dropped)


def _error_doc(path: Path, found: tuple[Diagnostic, ...]) -> dict[str, Any]:
    def one(d: Diagnostic) -> dict[str, Any]:
        where = d.location
        return {"severity": d.severity, "message": d.message, "fix": d.fix, "location": str(where),
                "file": where.path, "line": where.line, "column": where.column}

    return {"path": str(path), "valid": False, "errors": [one(d) for d in found if d.severity == "error"]}


def _json(lp: LoadedPlan, a: Analysis, relaxed: Relaxed | None) -> dict[str, Any]:
    doc = a.to_json()
    doc["path"] = str(lp.path)
    doc["valid"] = True
    doc["format"] = lp.format
    doc["warnings"] = [str(w) for w in lp.warnings]
    for finding, raw in zip(a.findings, doc["findings"], strict=True):
        raw["location"] = str(_locate(lp, finding.tasks))
    if relaxed:
        doc["relax_phases"] = {"implied_edges_dropped": relaxed.dropped,
                               "critical_path_seconds": relaxed.analysis.critical_path_seconds,
                               "wall_seconds": relaxed.analysis.estimate.wall_seconds,
                               "speedup": relaxed.analysis.estimate.speedup}
    return doc


def import_plan(source: Path, output: Path | None, force: bool, relax: bool) -> None:
    """`plait import`: any plan format to plait's YAML (printed, or written to `output`)."""
    from plait.plan.export import to_yaml

    if output is not None and output.exists() and not force:
        raise PlaitError(f"{output} already exists", "choose another --output, or add --force to replace it",
                         Location(str(output)))
    lp = load_plan(source, relax_phases=relax)
    text = to_yaml(lp, str(source))
    for w in lp.warnings[:5]:
        click.echo(f"plait: warning: {w}", err=True)
    if len(lp.warnings) > 5:
        click.echo(f"plait: {len(lp.warnings) - 5} more warnings: see `plait check {source}`", err=True)
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise PlaitError(f"cannot write {output}: {exc.strerror or exc}", "check the folder exists and is "
                         "writable", Location(str(output))) from None
    implied = sum(len(a) for a in lp.inferred.values())
    click.echo(f"wrote {output}: {len(lp.plan.tasks)} tasks from a {lp.format} plan"
               + (f", {implied} implied dependencies marked `# implied:`" if implied else ""), err=True)


def _locate(lp: LoadedPlan, task_ids: tuple[str, ...]) -> object:
    ids = [t.id for t in lp.plan.tasks]
    if task_ids and task_ids[0] in ids:
        return lp.locate("tasks", ids.index(task_ids[0]))
    return lp.locate()


def render(lp: LoadedPlan, a: Analysis, console: Console, relaxed: Relaxed | None = None) -> None:
    plan = lp.plan
    title = f"[bold]{plan.name}[/]  {lp.path}" + ("" if lp.format == "yaml" else f"  [dim]({lp.format})[/]")
    if console.is_terminal:
        console.rule(title)
    else:  # a rule is as wide as the console: in a log, one line with the path whole
        console.print(f"─── {title} ───")
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
    if relaxed:
        r = relaxed.analysis
        body.append(f"[bold]--relax-phases[/] would drop {relaxed.dropped} dependencies that only the phase order "
                    f"implies: critical path {fd(a.critical_path_seconds)} -> {fd(r.critical_path_seconds)}, "
                    f"wall time at --jobs {e.jobs} {fd(e.wall_seconds)} -> {fd(r.estimate.wall_seconds)}. Use it "
                    "only if no task relies on an earlier phase's work without stating it.")
    console.print(Panel(Group(*body), title="Analysis", expand=False))
