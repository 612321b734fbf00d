"""Every `plait COMMAND --option` shown in README.md and docs/*.md exists: the docs and `--help` agree."""

from __future__ import annotations

import re
from pathlib import Path

import click

from plait.cli import cli

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CODE = re.compile(r"```[^\n]*\n(.*?)```|`([^`\n]+)`", re.S)
COMMAND = re.compile(r"(?:^|[\s($])plait ((?:[a-z][a-z_-]*)(?:[^\n`|#;]*))")
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z-]*|-[a-zA-Z])\b")


def shown() -> list[tuple[str, str, list[str]]]:
    """(where, command, options) for each `plait …` in the docs' code (spans and blocks)."""
    found = []
    for doc in DOCS:
        text = doc.read_text()
        for match in CODE.finditer(text):
            code = (match.group(1) or match.group(2) or "").replace("\\|", "/")  # `a\|b` in a table cell
            line = text[: match.start()].count("\n") + 1
            for use in COMMAND.finditer(code):
                words = use.group(1).split()
                options = [o for o in OPTION.findall(use.group(1)) if not o.startswith("--") or "=" not in o]
                found.append((f"{doc.name}:{line}", words[0], options))
    return found


def test_the_docs_show_commands_at_all() -> None:
    assert len(shown()) > 40


def test_every_command_and_option_in_the_docs_exists() -> None:
    assert isinstance(cli, click.Group)
    ctx = click.Context(cli)
    wrong = []
    for where, name, options in shown():
        command = cli.get_command(ctx, name)
        if command is None:
            wrong.append(f"{where}: no command `plait {name}`")
            continue
        known = {o for p in command.params for o in (*p.opts, *p.secondary_opts)} | {"-h", "--help"}
        wrong += [f"{where}: `plait {name}` has no option {o}" for o in options if o not in known]
    assert not wrong, "\n".join(wrong)
