"""The `plait` command's entry point.

`plait status --json` read by a program (standard output not a terminal) is how a live run is polled, by
scripts and agents, so it is answered here without loading the command-line framework: the run's state,
read from the database, printed as one line of JSON (docs/benchmarks.md). Everything else goes to
`plait.cli`, and so does this when it fails for any reason but a user error, so a bug is reported the CLI's
way.
"""

from __future__ import annotations

import sys


def setup_logging() -> None:
    """Warnings and errors on the console as `plait: warning: …`; plait.log gets the rest."""
    import logging

    logging.addLevelName(logging.WARNING, "warning")
    logging.addLevelName(logging.ERROR, "error")
    logging.basicConfig(level=logging.WARNING, format="plait: %(levelname)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.WARNING)


def status_json_run(args: list[str]) -> tuple[bool, str | None]:
    """(True, the run or None for the latest) when `args` is exactly `status [RUN] --json`, in any order."""
    rest = [a for a in args if a != "--json"]
    if len(rest) == len(args) or len(args) - len(rest) > 1 or not rest or rest[0] != "status" or len(rest) > 2:
        return False, None
    run = rest[1] if len(rest) == 2 else None
    return (False, None) if run is not None and run.startswith("-") else (True, run)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    quick, run_id = status_json_run(args)
    if quick and not sys.stdout.isatty():
        from plait import status

        try:
            text = status.document_json(run_id)
        except Exception as exc:
            from plait.errors import PlaitError  # not imported unless needed: nor is logging

            if isinstance(exc, PlaitError):
                for line in exc.lines():
                    print(f"plait: error: {line}", file=sys.stderr)
                sys.exit(1)
            # anything else: the CLI runs it again and reports the bug its way
        else:
            sys.stdout.write(text + "\n")
            return
    from plait.cli import main as cli_main

    cli_main(args)
