"""A real headless Chromium for the report and dashboard tests: the system's `chromium` (scripts/install-browser),
driven by Playwright; Playwright's own browser downloads are never used."""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import IN_CI
from runfixtures import common_dir


def chromium_path() -> str:
    """The system Chromium: missing fails in CI, skips locally with what to run."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        import playwright  # noqa: F401
    except ImportError:
        found = None
    if found is None:
        message = "chromium or playwright is not installed: run scripts/install-browser"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    with sync_playwright() as p:
        # As root, Chromium refuses to start with its sandbox on.
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        launched = p.chromium.launch(executable_path=path, args=args)
        yield launched
        launched.close()


def watch_errors(page: Any) -> list[str]:
    """Console errors and uncaught exceptions of `page`, as they happen."""
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return errors


def attempt_count(repo: Path, run_id: str) -> int:
    db = sqlite3.connect(common_dir(repo) / "plait" / "state.db")
    (n,) = db.execute("SELECT count(*) FROM attempts WHERE run_id=? AND started_at IS NOT NULL", (run_id,)).fetchone()
    db.close()
    return int(n)
