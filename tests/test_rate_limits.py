"""A 429 storm from the scripted server against real Claude Code: the profile's concurrency drops
(AIMD), tasks retry with back-off, and the run still completes."""

from __future__ import annotations

from pathlib import Path

from plait import api
from plait.run.engine import RunOptions
from plait.run.rehearse import endpoint_env
from plait.testing import ModelServer, Scenario, fail, write
from runfixtures import events, make_repo, require_cli, task, write_plan


def test_rate_limit_storm_backs_off_and_completes(tmp_path: Path) -> None:
    binary = require_cli("claude")
    toml = f'[profiles.claude]\nadapter = "claude"\nbinary = "{binary}"\n'
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n", "plait.toml": toml})
    ids = [f"t{i}" for i in range(6)]
    plan = write_plan(repo, [task(t, {f"{t}.txt": "x\n"}, verify=f"test -f {t}.txt") for t in ids],
                      defaults={"agent": "claude", "retries": 3})
    handle, run_id = api.start(plan, RunOptions(jobs=4, retry_base_seconds=0.3), cwd=repo)
    with ModelServer() as server:
        for t in ids:
            # Claude Code retries twice itself (plait sets CLAUDE_CODE_MAX_RETRIES=2): three 429s make the
            # first attempt fail with a rate-limit error; the next attempt gets through.
            server.add(f"key-{t}", Scenario([fail(429, times=3), write(f"{t}.txt", "x\n")]))
        status = api.execute(handle, run_id, task_env=lambda tid: endpoint_env(server.url, f"key-{tid}"))
    assert status == "completed"
    evts = events(repo, run_id)
    backoffs = [e["data"]["concurrency"] for e in evts if e["kind"] == "limits.backoff"]
    assert backoffs and min(backoffs) < 4 and backoffs[0] == 2, backoffs
    retries = [e for e in evts if e["kind"] == "task.retry"]
    assert len(retries) >= len(ids) and all("rate_limit" in e["data"]["error"] for e in retries)
    assert all(e["data"]["delay"] >= 0.3 / 2 for e in retries)  # back-off with jitter: half to all of it
    assert sorted(e["task"] for e in evts if e["kind"] == "task.done") == ids
    # The retried agents continued their own Claude Code sessions.
    resumed = [e["data"]["resume_session"] for e in evts if e["kind"] == "task.started" and e["data"]["attempt"] > 1]
    assert resumed and all(resumed)
