"""`plait check`: validate plans and show how well they parallelize."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from plait.history import Estimates

PHASED = ("spectacular", "speckit")


@dataclass(frozen=True)
class Relaxed:
    """What `--relax-phases` would change: the plan analyzed with only its stated dependencies."""

    analysis: Analysis
    dropped: int  # implied edges it would drop


def check(paths: list[Path], jobs: int | None, as_json: bool, relax: bool, console: Console,
          history: bool = True) -> int:
    """Check every plan; 1 when one is invalid. With `as_json`, an invalid plan gives a JSON error document
    on stdout instead of error lines. `history`: estimate with what this repository's earlier runs took."""
    if as_json:
        docs = [check_doc(path, jobs, relax, history=history) for path in paths]
        text = json.dumps(docs[0] if len(docs) == 1 else docs)
        if console.is_terminal:
            console.print_json(text)
        else:  # a pipe or a file: plain JSON, without the cost of highlighting it
            click.echo(text)
        return 0 if all(d["valid"] for d in docs) else 1
    for path in paths:
        lp = load_plan(path, relax_phases=relax)
        learned = check_profiles(lp, None, history)
        a = analyze(learned.plan if learned else lp.plan, jobs)
        render(lp, a, console, None if relax else _relaxed(lp, a.estimate.jobs, learned), learned)
        render_environments(environments(lp, None), console)
    return 0


def check_profiles(lp: LoadedPlan, root: Path | None, history: bool = False) -> Estimates | None:
    """What `plait run` would refuse: a task whose agent profile does not exist, or a broken plait.toml
    (PlaitError). Profiles belong to the repository plait runs in (`root`, else the current directory's);
    outside any repository there is nothing to check them against. With `history`: the plan's estimates
    learned from the repository's earlier runs (plait.history), when it has any."""
    from plait import api

    try:
        repo = api.open_repo(root)
    except PlaitError:
        return None
    profiles = api.plan_profiles(repo, lp.plan, lp)
    if not history:
        return None
    from plait import history as learned

    found = learned.estimates(lp.plan, profiles, learned.load(repo.store))
    return found if found.samples else None


def check_doc(path: Path, jobs: int | None, relax: bool, root: Path | None = None,
              history: bool = True) -> dict[str, Any]:
    """`plait check --json` of one plan: its analysis, or (`valid: false`) every error with its location."""
    try:
        lp = load_plan(path, relax_phases=relax, root=root)
        learned = check_profiles(lp, root, history)
    except PlanError as exc:
        return _error_doc(path, exc.diagnostics)
    except PlaitError as exc:
        return _error_doc(path, (Diagnostic("error", exc.message, exc.fix, exc.location or Location(str(path))),))
    a = analyze(learned.plan if learned else lp.plan, jobs)
    doc = _json(lp, a, None if relax else _relaxed(lp, a.estimate.jobs, learned), learned)
    doc["environments"] = environments(lp, root)
    return doc


def _relaxed(lp: LoadedPlan, jobs: int | None, learned: Estimates | None = None) -> Relaxed | None:
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
    if learned:  # the same tasks: their learned estimates
        seconds = {tid: e.seconds for tid, e in learned.tasks.items() if e.samples}
        other = dataclasses.replace(other, plan=other.plan.model_copy(update={"tasks": [
            t.model_copy(update={"estimate": seconds[t.id]}) if t.id in seconds else t for t in other.plan.tasks]}))
    return Relaxed(analyze(other.plan, jobs), dropped)


def _error_doc(path: Path, found: tuple[Diagnostic, ...]) -> dict[str, Any]:
    def one(d: Diagnostic) -> dict[str, Any]:
        where = d.location
        return {"severity": d.severity, "message": d.message, "fix": d.fix, "location": str(where),
                "file": where.path, "line": where.line, "column": where.column}

    return {"path": str(path), "valid": False, "errors": [one(d) for d in found if d.severity == "error"]}


def _json(lp: LoadedPlan, a: Analysis, relaxed: Relaxed | None, learned: Estimates | None = None) -> dict[str, Any]:
    doc = a.to_json()
    if learned:
        doc["history"] = learned.summary()
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


def render(lp: LoadedPlan, a: Analysis, console: Console, relaxed: Relaxed | None = None,
           learned: Estimates | None = None) -> None:
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
            branch.add(f"{mark}[cyan]{tid}[/] {t.title} [dim]{t.size.value} {_estimate(t.seconds, tid, learned)}[/]"
                       f"{needs}")
    console.print(tree)

    e = a.estimate
    table = Table(title="Estimates", show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    if learned:
        table.add_row("estimates", _learned_line(learned))
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


def _estimate(seconds: float, tid: str, learned: Estimates | None) -> str:
    """A task's estimate: the plan's, and what history makes of it."""
    e = learned.tasks.get(tid) if learned else None
    if e is None or not e.samples or round(e.seconds) == round(seconds):
        return fd(seconds)
    return f"{fd(seconds)} -> {fd(e.seconds)}"


def _learned_line(learned: Estimates) -> str:
    used = [e for e in learned.tasks.values() if e.samples]
    if not used:
        return (f"the plan's own: none of the {learned.samples} task durations recorded in this repository is of "
                "these tasks' agent profiles and roles")
    low, high = min(e.factor for e in used), max(e.factor for e in used)
    spread = f"x{low:.2f}" if round(low, 2) == round(high, 2) else f"x{low:.2f} to x{high:.2f}"
    return (f"learned from {learned.samples} task durations of earlier runs in this repository: {len(used)} of "
            f"{len(learned.tasks)} tasks' estimates {spread} (--no-history: the plan's own)")


def environments(lp: LoadedPlan, root: Path | None) -> dict[str, dict[str, object]]:
    """Each task's working environment (docs/environment.md), as `plait run` would make it here."""
    from plait import api
    from plait.run import environment

    try:
        repo = api.open_repo(root)
    except PlaitError:
        return environment.describe(lp.plan, None, None)
    return environment.describe(lp.plan, repo.root, environment.cache_root(api.run_paths(repo, "check").workspaces))


def render_environments(found: dict[str, dict[str, Any]], console: Console) -> None:
    if not found:
        return
    table = Table(title="Environment of each task (docs/environment.md)")
    for col in ("task", "setup / teardown", "copied", "ports", "caches (read-only)"):
        table.add_column(col)
    for tid, env in found.items():
        steps = [f"setup: {c}" for c in env["setup"]] + [f"teardown: {c}" for c in env["teardown"]]
        caches = [f"{c['path']} <- {', '.join(c['key'])}: {c['state']}" for c in env["cache"]]
        copied = [f"{f} [red](not in your checkout)[/]" if f in env["copy_missing"] else f for f in env["copy"]]
        table.add_row(tid, "\n".join(steps), "\n".join(copied), "\n".join(env["ports"].values()),
                      "\n".join(caches))
    console.print(table)
    console.print("Setup, the agent and verify may write only the work tree, the task's private home and the "
                  "attempt's private tmp; each attempt has its own ports and PLAIT_SLOT / COMPOSE_PROJECT_NAME.")
