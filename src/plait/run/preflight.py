"""Level 0 of seed 002: every preflight check must pass before any agent starts."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from plait import proc
from plait.errors import PlaitError
from plait.plan.model import Check, Plan

CHECK_TIMEOUT_SECONDS = 120.0


class PreflightError(PlaitError):
    def __init__(self, failures: list[str]) -> None:
        super().__init__(f"{len(failures)} preflight check(s) failed", "fix them, then run again")
        self.failures = failures

    def lines(self) -> list[str]:
        return [*self.failures, str(self)]


def failure(check: Check, repo_root: Path) -> str | None:
    """Why the check fails (one line with a fix), or None."""
    if check.tool:
        if shutil.which(check.tool) is None:
            return f"preflight {check.label}: `{check.tool}` is not on PATH — install it or fix PATH"
    elif check.env:
        if not os.environ.get(check.env):
            return f"preflight {check.label}: ${check.env} is not set — export {check.env}=… before running"
    elif check.run:
        done = proc.run(check.run, shell=True, cwd=repo_root, timeout=CHECK_TIMEOUT_SECONDS)
        if not done.ok:
            why = "timed out" if done.timed_out else f"exited {done.returncode}"
            detail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
            return f"preflight {check.label}: `{check.run}` {why} {detail[0][:200]} — make it succeed in {repo_root}"
    return None


def preflight(plan: Plan, repo_root: Path) -> list[str]:
    """Run every check; raise PreflightError listing each failure. Returns the passed labels."""
    failures = [f for c in plan.preflight if (f := failure(c, repo_root))]
    if failures:
        raise PreflightError(failures)
    return [c.label for c in plan.preflight]
