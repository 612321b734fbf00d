"""The `plait` command: a thin layer over the library. User errors are caught in one place."""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import traceback
from pathlib import Path

import click
from rich.console import Console

from plait import __version__
from plait.errors import PlaitError

EXIT_USER_ERROR = 1
EXIT_BUG = 3
EXIT_INTERRUPTED = 130


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="plait")
def cli() -> None:
    """Run a team of AI coding agents in parallel on git worktrees.

    Write or generate a plan, check how well it parallelizes, run it: every task gets its own
    worktree and branch, is verified and leaves evidence; the branches are then integrated, the
    full test suite runs, and plait reports the measured speed-up.
    """


@cli.command()
def schema() -> None:
    """Print the JSON Schema of the plan format (give it to planner agents)."""
    from plait.plan.model import json_schema

    click.echo(json.dumps(json_schema(), indent=2))


@cli.command()
@click.argument("plans", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--jobs", "-j", type=click.IntRange(1, 256), help="Agents to estimate for (default: recommended).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (see docs/check.md).")
def check(plans: tuple[Path, ...], jobs: int | None, as_json: bool) -> None:
    """Validate PLANS (plan.yaml or spectacular plan.md) and analyze their parallelization."""
    from plait.commands.check import check as run_check

    run_check(list(plans), jobs, as_json, _console())


def _console() -> Console:
    return Console(highlight=False, soft_wrap=False)


def _bug_log(exc: BaseException) -> Path:
    fd, name = tempfile.mkstemp(prefix="plait-crash-", suffix=".log")
    with os.fdopen(fd, "w") as f:
        f.write(f"plait {__version__}\nargv: {sys.argv!r}\n\n")
        f.write("".join(traceback.format_exception(exc)))
    return Path(name)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors -> one line, exit 1; bugs -> log file, exit 3; Ctrl-C -> 130."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
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
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_USER_ERROR if exc.exit_code == 2 else exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except SystemExit:
        raise
    except BrokenPipeError:
        sys.exit(EXIT_USER_ERROR)
    except Exception as exc:  # noqa: BLE001 - the one place bugs are turned into a log file
        path = _bug_log(exc)
        click.echo(f"plait: internal error: {exc!r} — this is a bug; the traceback is in {path}", err=True)
        sys.exit(EXIT_BUG)
