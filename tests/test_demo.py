"""`plait demo`, the README's main job, end to end through the real CLI."""

from __future__ import annotations

import re
from pathlib import Path

from runfixtures import events, git, plait


def test_demo_runs_the_bundled_plan_in_parallel_and_integrates(tmp_path: Path) -> None:
    target = tmp_path / "demo"
    done = plait(tmp_path, "demo", "--dir", str(target), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    match = re.search(r"run (\w+) completed", done.stdout)
    assert match, done.stdout
    run_id = match.group(1)
    assert "speed-up" in done.stdout and "INTEGRATION-REPORT.md" in done.stdout
    evts = events(target, run_id)
    assert sum(1 for e in evts if e["kind"] == "task.done") == 10
    running, most = 0, 0
    for e in evts:
        running += {"task.started": 1, "task.done": -1}.get(e["kind"], 0)
        most = max(most, running)
    assert most >= 3, "independent tasks ran at the same time"
    files = git(target, "ls-tree", "-r", "--name-only", f"plait/{run_id}/integration").splitlines()
    assert "src/authkit/tokens.py" in files and not any("__pycache__" in f for f in files)
    assert git(target, "status", "--porcelain") == ""  # the demo's own checkout stays clean
