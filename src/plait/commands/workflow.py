"""`plait spec`, `plait plan`, `plait go`: render what plait.workflow does; `go` asks before going on."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import click
from rich.console import Console

from plait import api
from plait.errors import Location, PlaitError
from plait.run.engine import RunOptions
from plait.workflow.agent import MakeAgent, Notify, RoleEnv
from plait.workflow.plan import WrittenPlan
from plait.workflow.spec import WrittenSpec

MAX_REQUEST_BYTES = 256 * 1024


def request_text(request: str | None, from_file: Path | None) -> str:
    """The feature request: the argument, the file's text, or both (the argument first)."""
    parts = [request.strip()] if request and request.strip() else []
    if from_file is not None:
        try:
            raw = from_file.read_bytes()[: MAX_REQUEST_BYTES + 1]
        except OSError as exc:
            raise PlaitError(f"cannot read it: {exc.strerror or exc}", "give --from a readable text file",
                             Location(str(from_file))) from None
        if len(raw) > MAX_REQUEST_BYTES:
            raise PlaitError(f"over {MAX_REQUEST_BYTES // 1024} KB", "shorten the request", Location(str(from_file)))
        parts += [raw.decode("utf-8", errors="replace").strip()]
    text = "\n\n".join(p for p in parts if p)
    if not text:
        raise PlaitError("no feature request given", 'write it as an argument (plait spec "add login") or in a file '
                         "given with --from FILE")
    return text


def _notify(console: Console) -> Notify:
    return lambda line: console.print(line, markup=False, highlight=False, soft_wrap=True)


def spec(request: str | None, from_file: Path | None, agent: str | None, force: bool, console: Console,
         make_agent: MakeAgent | None = None, role_env: RoleEnv | None = None) -> WrittenSpec:
    written = api.write_spec(request_text(request, from_file), agent=agent, force=force,
                             make_agent=make_agent, notify=_notify(console), role_env=role_env)
    console.print(f"wrote [bold]{written.rel}[/]", soft_wrap=True)
    return written


def plan(spec_path: Path, agent: str | None, rounds: int, force: bool, console: Console,
         make_agent: MakeAgent | None = None, role_env: RoleEnv | None = None) -> WrittenPlan:
    from plait.commands.check import render

    repo = api.open_repo()
    written = api.write_plan(spec_path, agent=agent, rounds=rounds, force=force,
                             make_agent=make_agent, notify=_notify(console), role_env=role_env)
    render(written.loaded, written.analysis, console)
    shown = written.path.relative_to(repo.root)
    console.print(f"wrote [bold]{shown}[/] (valid after {written.rounds} round(s)) and its analysis "
                  f"{written.check_json.relative_to(repo.root)}", soft_wrap=True)
    return written


def go(request: str | None, from_file: Path | None, agent: str | None, rounds: int, yes: bool,
       options: RunOptions, console: Console, interactive: bool | None = None,
       make_agent: MakeAgent | None = None, rehearse: Path | None = None) -> int:
    """spec -> plan -> check -> run. With a terminal, asks after the spec and after the plan (unless
    --yes); without one and without --yes, never waits: it stops after the plan, exit 0. `rehearse`: a
    rehearsal file (plait.run.rehearse.WorkflowScript): the real CLIs talk to the scripted model server."""
    if rehearse is None:
        return _go(request, from_file, agent, rounds, yes, options, console, interactive, make_agent, None)
    from plait.run.rehearse import scripted_roles, workflow_scenario, workflow_script
    from plait.testing import ModelServer

    answers = workflow_script(rehearse)
    with ModelServer() as server:
        console.print(f"rehearsal: the spec writer and planner talk to plait's scripted model server ({server.url}); "
                      "no provider is called", markup=False, soft_wrap=True)
        return _go(request, from_file, agent, rounds, yes, dataclasses.replace(options, rehearse=True), console,
                   interactive, make_agent, scripted_roles(server, workflow_scenario(answers)))


def _go(request: str | None, from_file: Path | None, agent: str | None, rounds: int, yes: bool,
        options: RunOptions, console: Console, interactive: bool | None, make_agent: MakeAgent | None,
        role_env: RoleEnv | None) -> int:
    interactive = sys.stdin.isatty() if interactive is None else interactive
    written = spec(request, from_file, agent, False, console, make_agent, role_env)
    if not yes and interactive and not click.confirm(f"Write a plan from {written.rel}?", default=True):
        console.print(f"stopped after the spec; continue with: plait plan {written.rel}", markup=False)
        return 0
    planned = plan(written.path, agent, rounds, False, console, make_agent, role_env)
    plan_rel = Path(written.rel).parent / planned.path.name
    if not yes:
        if not interactive:
            click.echo(f"plait: stopped before running: no terminal to confirm on — review {plan_rel}, then run "
                       f"`plait run {plan_rel}`, or re-run `plait go` with --yes", err=True)
            return 0
        if not click.confirm(f"Run {plan_rel} now?", default=True):
            console.print(f"stopped after the plan; continue with: plait run {plan_rel}", markup=False)
            return 0
    from plait.commands.run import run

    return run(planned.path, options, console)
