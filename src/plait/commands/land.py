"""`plait land` and `plait clean`: call the API and say exactly what changed."""

from __future__ import annotations

import sys

import click

from plait import api


def land(run_id: str | None, how: str) -> None:
    """Land (or stack) the run, then offer to clean up: a question at a terminal, else the command to run."""
    done = api.land(run_id, how)
    rid = done.run_id
    if done.landed is None:
        names = ", ".join(done.stacked) or "none (the run changed nothing)"
        click.echo(f"run {rid} delivered its stacked branches itself: {names}" if done.existed else
                   f"created {len(done.stacked)} stacked branch(es) for run {rid}; your branch was not touched: "
                   f"{names}")
        click.echo(f"once they are reviewed: plait clean --run {rid} --branches")
        return
    click.echo(done.landed.describe(rid))
    if done.landed.old != done.landed.new:
        click.echo(f"  to undo: git reset --keep {done.landed.old[:12]}")
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        click.echo(f"clean up: plait clean --run {rid} --branches")
    elif click.confirm(f"Remove run {rid}'s workspaces and branches?", default=False):
        report_clean(api.clean(run_id=rid, branches=True), branches=True)


def report_clean(cleaned: api.Cleaned, branches: bool) -> None:
    click.echo(f"removed {len(cleaned.workspaces)} workspace(s)")
    if branches:
        names = f": {', '.join(cleaned.branches)}" if cleaned.branches else ""
        click.echo(f"deleted {len(cleaned.branches)} branch(es){names}")
    for kept in cleaned.kept:
        click.echo(f"kept {kept}")
