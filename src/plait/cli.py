"""The `plait` command: a thin layer over the library. User errors are caught in one place."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

import click

from plait import __version__
from plait.errors import PlaitError

if TYPE_CHECKING:  # `plait --help` and `plait status --json` never load rich (docs/benchmarks.md)
    from rich.console import Console

EXIT_USER_ERROR = 1
EXIT_BUG = 3
EXIT_INTERRUPTED = 130
_RELAX = ("In a phased plan (spectacular, spec-kit), keep only the dependencies a task states instead of "
          "also running the phases in their written order.")
_NO_HISTORY = ("Use the plan's own estimates: ignore how long earlier runs' tasks took in this repository (see "
               "docs/run.md, Learned estimates).")
_DETACH = ("Run in a background process that outlives this terminal (its output: .plait/runs/RUN/runner.log); "
           "return once it has started.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, invoke_without_command=True)
@click.version_option(__version__, prog_name="plait")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Run a team of AI coding agents in parallel, each in its own sandboxed git workspace.

    Write or generate a plan, check how well it parallelizes, run it: every task gets its own
    workspace and branch, is verified and leaves evidence; the branches are then integrated, the
    full test suite runs, and plait reports the measured speed-up.
    """
    if ctx.invoked_subcommand is None:  # bare `plait`: the help, not an error
        click.echo(ctx.get_help())


@cli.command("help")
@click.argument("command", required=False)
@click.pass_context
def help_cmd(ctx: click.Context, command: str | None) -> None:
    """Show the help of plait or of one COMMAND."""
    group = ctx.parent.command if ctx.parent else cli
    assert isinstance(group, click.Group)
    if command is None:
        click.echo(group.get_help(ctx.parent or ctx))
        return
    found = group.get_command(ctx, command)
    if found is None:
        raise PlaitError(f"no command {command!r}", "see `plait help` for the commands")
    with click.Context(found, info_name=command, parent=ctx.parent) as sub:
        click.echo(found.get_help(sub))


@cli.command()
def schema() -> None:
    """Print the JSON Schema of the plan format (give it to planner agents)."""
    from plait.plan.model import json_schema

    click.echo(json.dumps(json_schema(), indent=2))


@cli.command()
@click.argument("plans", nargs=-1, required=True, type=click.Path(path_type=Path, readable=False))
@click.option("--jobs", "-j", type=click.IntRange(1, 256), help="Agents to estimate for (default: recommended).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (see docs/check.md).")
@click.option("--relax-phases", is_flag=True, help=_RELAX)
@click.option("--no-history", is_flag=True, help=_NO_HISTORY)
def check(plans: tuple[Path, ...], jobs: int | None, as_json: bool, relax_phases: bool, no_history: bool) -> None:
    """Validate PLANS and analyze their parallelization.

    A plan is plait's plan.yaml, spectacular's plan.md, spec-kit's tasks.md, Taskmaster's tasks.json
    or a ccpm epic folder (see docs/plan-format.md)."""
    from plait.commands.check import check as run_check

    sys.exit(run_check(list(plans), jobs, as_json, relax_phases, _console(), history=not no_history))


@cli.command("import")
@click.argument("source", type=click.Path(path_type=Path, readable=False))
@click.option("--output", "-o", type=click.Path(path_type=Path, dir_okay=False),
              help="Where to write the YAML plan (default: print it).")
@click.option("--force", is_flag=True, help="Replace the output file if it exists.")
@click.option("--relax-phases", is_flag=True, help=_RELAX)
def import_cmd(source: Path, output: Path | None, force: bool, relax_phases: bool) -> None:
    """Convert a plan from another tool (SOURCE: a file or an epic folder) to plait's YAML."""
    from plait.commands.check import import_plan

    import_plan(source, output, force, relax_phases)


@cli.command("run")
@click.argument("plan", type=click.Path(path_type=Path, readable=False))
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=4, show_default=True, help="Agents at once.")
@click.option("--deliver", type=click.Choice(["branch", "stack"]), default="branch", show_default=True,
              help="branch: one integration branch; stack: a branch per task stacked in dependency order.")
@click.option("--max-cost", type=click.FloatRange(0), help="Stop starting tasks once this many USD are spent.")
@click.option("--rehearse", is_flag=True,
              help="Run the profiles' real agent CLIs against plait's scripted model server (no tokens spent).")
@click.option("--rehearse-latency", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Seconds per scripted model turn in a rehearsal.")
@click.option("--relax-phases", is_flag=True, help=_RELAX)
@click.option("--agent", "agent", metavar="PROFILE",
              help="Agent profile for the tasks that name none (instead of the plan's `defaults.agent`).")
@click.option("--detach", is_flag=True, help=_DETACH)
@click.option("--fresh", is_flag=True, help="Run every task again, even those an earlier run verified with the "
              "same inputs (by default their verified work is reused).")
@click.option("--no-history", is_flag=True, help=_NO_HISTORY)
@click.option("--executor", type=click.Choice(["local", "ray"]),
              help="Where attempts run: this machine (local) or a Ray cluster (default: plait.toml's "
              "[executor], else local; see docs/ray.md).")
@click.option("--address", metavar="ADDR", help="The Ray cluster to use with --executor ray (as `ray.init` takes "
              "it, e.g. auto or HOST:6379; default: plait.toml's, else a private Ray on this machine).")
def run_cmd(plan: Path, jobs: int, deliver: str, max_cost: float | None, rehearse: bool,
            rehearse_latency: float, relax_phases: bool, agent: str | None, detach: bool, fresh: bool,
            no_history: bool, executor: str | None, address: str | None) -> None:
    """Run PLAN: every task in its own sandboxed workspace, in parallel, verified, then integrated."""
    from plait.commands.run import run
    from plait.run.engine import RunOptions

    options = RunOptions(jobs=jobs, deliver=deliver, max_cost=max_cost, rehearse=rehearse,
                         rehearse_latency=rehearse_latency, relax_phases=relax_phases, agent=agent, fresh=fresh,
                         history=not no_history, executor=executor, address=address)
    sys.exit(run(plan, options, _console(), detach))


@cli.command()
@click.argument("request", required=False)
@click.option("--from", "from_file", type=click.Path(path_type=Path, dir_okay=False),
              help="Read the feature request (or more of it) from this file.")
@click.option("--agent", help="Agent profile to write it (default: see docs/workflow.md).")
@click.option("--force", is_flag=True, help="Replace the spec file if it exists.")
def spec(request: str | None, from_file: Path | None, agent: str | None, force: bool) -> None:
    """Write a spec for REQUEST: specs/<id>-<slug>/spec.md, by an agent in the spec-writer role.

    The agent works in a sandboxed workspace made from HEAD; only the spec file is copied to your
    checkout. See docs/workflow.md."""
    from plait.commands.workflow import spec as write

    written = write(request, from_file, agent, force, _console())
    click.echo(f"next: plait plan {written.rel}")


@cli.command("plan")
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path, readable=False))
@click.option("--agent", help="Agent profile to write it (default: see docs/workflow.md).")
@click.option("--rounds", type=click.IntRange(1, 20), default=3, show_default=True,
              help="Agent runs at most, each given the previous one's validation errors.")
@click.option("--force", is_flag=True, help="Replace plan.yaml and check.json if they exist.")
def plan_cmd(spec_path: Path, agent: str | None, rounds: int, force: bool) -> None:
    """Write plan.yaml beside SPEC, by an agent in the planner role, repaired until it validates.

    The analysis of `plait check` is printed and saved beside it as check.json. See docs/workflow.md."""
    from plait.commands.workflow import plan as write

    written = write(spec_path, agent, rounds, force, _console())
    click.echo(f"next: plait run {written.path}")


@cli.command()
@click.argument("request", required=False)
@click.option("--from", "from_file", type=click.Path(path_type=Path, dir_okay=False),
              help="Read the feature request (or more of it) from this file.")
@click.option("--agent", help="Agent profile for the spec writer and the planner.")
@click.option("--rounds", type=click.IntRange(1, 20), default=3, show_default=True,
              help="Planner runs at most.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask: go from the request straight to a finished run.")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=4, show_default=True, help="Agents at once.")
@click.option("--deliver", type=click.Choice(["branch", "stack"]), default="branch", show_default=True,
              help="branch: one integration branch; stack: a branch per task stacked in dependency order.")
@click.option("--max-cost", type=click.FloatRange(0), help="Stop starting tasks once this many USD are spent.")
@click.option("--rehearse", "rehearse", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
              help="Rehearse the whole workflow: the real agent CLIs talk to plait's scripted model server; FILE "
                   "gives the spec writer's and planner's answers (see docs/workflow.md).")
def go(request: str | None, from_file: Path | None, agent: str | None, rounds: int, yes: bool, jobs: int,
       deliver: str, max_cost: float | None, rehearse: Path | None) -> None:
    """From REQUEST to verified branches ready for review: spec, plan, check, run.

    At a terminal it asks before planning and before running (--yes does not ask). Without a
    terminal and without --yes it never waits: it stops after writing the plan (exit 0)."""
    from plait.commands.workflow import go as run_go
    from plait.run.engine import RunOptions

    options = RunOptions(jobs=jobs, deliver=deliver, max_cost=max_cost)
    sys.exit(run_go(request, from_file, agent, rounds, yes, options, _console(), rehearse=rehearse))


@cli.command()
@click.argument("run_id", required=False)
@click.option("--detach", is_flag=True, help=_DETACH)
def resume(run_id: str | None, detach: bool) -> None:
    """Continue a failed, cancelled or killed run (the latest by default); verified tasks never run again."""
    from plait.commands.run import resume as run_resume

    sys.exit(run_resume(run_id, _console(), detach))


@cli.command("_runner", hidden=True)
@click.argument("run_id")
@click.option("--resume", is_flag=True, help="Continue the run (as `plait resume`).")
@click.option("--ready-fd", type=int, required=True, help="Pipe to tell the starter that the run started.")
def runner_cmd(run_id: str, resume: bool, ready_fd: int) -> None:
    """Run a recorded run to its end in a detached runner process (what `--detach` starts)."""
    from plait.commands.run import run_detached

    sys.exit(run_detached(run_id, resume, ready_fd, _console()))


@cli.command()
@click.argument("run_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (see docs/status.md).")
@click.option("--watch", "-w", is_flag=True, help="Keep the table up to date until the run ends (on a terminal).")
def status(run_id: str | None, as_json: bool, watch: bool) -> None:
    """Show a run's state (the latest run by default); works while it runs."""
    from plait.commands.run import status as show
    from plait.commands.run import watch as follow

    if watch and not as_json:
        sys.exit(follow(run_id, _console()))
    show(run_id, as_json, _console)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def runs(as_json: bool) -> None:
    """List this repository's runs: id, plan, status, started, tasks done, speed-up."""
    from plait.commands.run import list_runs

    list_runs(as_json, _console())


@cli.command()
@click.argument("run_id", required=False)
@click.argument("task_id", required=False)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new output until the task's attempt ends.")
def logs(run_id: str | None, task_id: str | None, follow: bool) -> None:
    """Show a task's agent output as readable text (the latest run; every task's, or TASK's)."""
    from plait.commands.logs import show_logs

    sys.exit(show_logs(run_id, task_id, follow, _console()))


@cli.command()
@click.argument("run_id", required=False)
def cancel(run_id: str | None) -> None:
    """Stop a live run cleanly (the latest by default): running agents are stopped, nothing new starts."""
    from plait import api

    rid, said = api.cancel_run(run_id)
    click.echo(f"run {rid}: {said}")


@cli.command()
@click.argument("run_id", required=False)
@click.option("--squash", is_flag=True, help="One squashed commit on your branch instead of the run's history.")
@click.option("--stack", is_flag=True,
              help="Create the run's stacked branches plait/RUN/stack/* for review; your branch is not touched.")
def land(run_id: str | None, squash: bool, stack: bool) -> None:
    """Bring a completed run's result (plait/RUN/integration; the latest run by default) onto your current
    branch: a fast-forward when possible, else a merge commit.

    The one plait command that moves a branch of yours, and only when you run it. It refuses, changing
    nothing, when the run did not complete, HEAD is detached, a merge or rebase is in progress, or your
    checkout has local changes in files the result changes; local changes elsewhere are kept as they are.
    See docs/land.md."""
    from plait.commands.land import land as run_land

    if squash and stack:
        raise click.UsageError("--squash and --stack cannot be combined")
    run_land(run_id, "squash" if squash else "stack" if stack else "merge")


@cli.command()
@click.option("--run", "run_id", help="Only this run.")
@click.option("--branches", is_flag=True, help="Also delete the runs' plait/RUN/* branches (never a live run's).")
def clean(run_id: str | None, branches: bool) -> None:
    """Remove finished runs' workspaces and the work trees kept for the next run (evidence and reports stay;
    branches too, unless --branches)."""
    from plait import api
    from plait.commands.land import report_clean

    report_clean(api.clean(run_id=run_id, branches=branches), branches)


@cli.command()
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option("--dir", "directory", type=click.Path(path_type=Path), help="Where to create the demo repository.")
def demo(jobs: int, directory: Path | None) -> None:
    """Create a small Python project and run a 10-task plan on it in parallel (no API key needed)."""
    from plait.commands.demo import demo as run_demo

    sys.exit(run_demo(jobs, directory, _console()))


@cli.command("report")
@click.argument("run_id", required=False)
@click.option("--open", "open_it", is_flag=True, help="Open the report in your web browser.")
def report_cmd(run_id: str | None, open_it: bool) -> None:
    """Write a run's HTML report (the latest run by default): task graph, timeline, figures, analysis.

    One self-contained file, .plait/runs/RUN/report.html (see docs/report.md)."""
    import webbrowser

    from plait import api

    path = api.write_html_report(api.open_repo(), run_id)
    click.echo(str(path))
    if open_it:
        webbrowser.open(path.as_uri())


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="The address to bind; anything but loopback needs a token.")
@click.option("--port", type=click.IntRange(1, 65535), default=8766, show_default=True)
@click.option("--token", envvar="PLAIT_SERVE_TOKEN",
              help="A token every request must carry (or PLAIT_SERVE_TOKEN); open the dashboard with ?token=TOKEN.")
def serve(host: str, port: int, token: str | None) -> None:
    """Serve a live dashboard of this repository's runs (http://127.0.0.1:8766/ by default).

    Follow a run's tasks, timeline and agents' logs as it runs; cancel or resume it (see docs/report.md)."""
    from plait import dashboard

    dashboard.serve(None, host, port, token)


@cli.command()
@click.option("--http", "http", is_flag=True, help="Serve streamable HTTP instead of stdio.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="With --http: the address to bind; anything but loopback needs a token.")
@click.option("--port", type=click.IntRange(1, 65535), default=8765, show_default=True, help="With --http.")
@click.option("--token", help="With --http: the bearer token every request must carry (or PLAIT_MCP_TOKEN).")
@click.option("--repo", "repo", type=click.Path(path_type=Path, file_okay=False),
              help="The repository to work on (default: the current directory's).")
def mcp(http: bool, host: str, port: int, token: str | None, repo: Path | None) -> None:
    """Serve plait's tools over MCP (stdio by default): spec, plan, check, run, status, list_runs, resume,
    cancel, report; runs started by `run` live on in the background."""
    from plait import mcp_server

    if http:
        mcp_server.serve_http(repo, host, port, token)
    else:
        mcp_server.serve_stdio(repo)


def _console() -> Console:
    """On a terminal, its width; elsewhere (CI, logs, pipes) lines are never wrapped: paths and ids stay whole."""
    from rich.console import Console

    terminal = Console().is_terminal
    return Console(highlight=False, soft_wrap=not terminal, width=None if terminal else 100_000)


def _bug_log(exc: BaseException) -> Path:
    fd, name = tempfile.mkstemp(prefix="plait-crash-", suffix=".log")
    with os.fdopen(fd, "w") as f:
        f.write(f"plait {__version__}\nargv: {sys.argv!r}\n\n")
        f.write("".join(traceback.format_exception(exc)))
    return Path(name)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors -> one line, exit 1; bugs -> log file, exit 3; Ctrl-C -> 130."""
    from plait.entry import setup_logging

    setup_logging()
    try:
        cli.main(args=argv, prog_name="plait", standalone_mode=False)
    except PlaitError as exc:
        for line in exc.lines():
            click.echo(f"plait: error: {line}", err=True)
        sys.exit(EXIT_USER_ERROR)
    except click.exceptions.Abort:
        click.echo("plait: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except KeyboardInterrupt:
        click.echo("plait: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "plait"
        message = " ".join(exc.format_message().split()).rstrip(".")
        click.echo(f"plait: error: {message} — see `{where} --help`", err=True)
        sys.exit(EXIT_USER_ERROR)
    except click.ClickException as exc:
        click.echo(f"plait: error: {' '.join(exc.format_message().split())}", err=True)
        sys.exit(EXIT_USER_ERROR)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except SystemExit:
        raise
    except BrokenPipeError:
        sys.exit(EXIT_USER_ERROR)
    except Exception as exc:
        path = _bug_log(exc)
        click.echo(f"plait: internal error: {exc!r} — this is a bug; the traceback is in {path}", err=True)
        sys.exit(EXIT_BUG)
