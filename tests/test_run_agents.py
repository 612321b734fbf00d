"""Profiles in a run: the shell agent, transient-failure retries with back-off, per-profile limits,
and `plait clean`."""

from __future__ import annotations

from pathlib import Path

from plait import api
from plait.run.engine import RunOptions
from runfixtures import events, git, make_repo, overlaps, spans, task, write_plan


def start(repo: Path, tasks: list[dict[str, object]], jobs: int = 4, **extra: object) -> tuple[str, str]:
    plan = write_plan(repo, tasks, **extra)
    handle, run_id = api.start(plan, RunOptions(jobs=jobs, retry_base_seconds=0.05), cwd=repo)
    return api.execute(handle, run_id), run_id


def test_crash_by_signal_is_retried_with_backoff_and_then_succeeds(tmp_path: Path) -> None:
    marker = tmp_path / "crashed-once"
    # First attempt: the agent dies by SIGKILL (a crash, transient). Second: it writes its file.
    command = (f"if [ ! -e {marker} ]; then touch {marker}; kill -9 $$; fi; "
               "echo done > out.txt")
    toml = f"[profiles.flaky]\nadapter = \"shell\"\ncommand = '{command}'\n"
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n", "plait.toml": toml})
    status, run_id = start(repo, [{"id": "a", "title": "flaky", "prompt": "p", "agent": "flaky",
                                   "files": ["out.txt"], "verify": "test -f out.txt"}])
    assert status == "completed"
    evts = events(repo, run_id)
    retries = [e for e in evts if e["kind"] == "task.retry"]
    assert len(retries) == 1 and "crash" in retries[0]["data"]["error"]
    assert retries[0]["data"]["delay"] > 0
    assert [e["data"]["attempt"] for e in evts if e["kind"] == "task.started"] == [1, 2]


def test_plain_failure_is_not_retried(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n",
                                         "plait.toml": "[profiles.broken]\nadapter = \"shell\"\ncommand = 'exit 2'\n"})
    status, run_id = start(repo, [{"id": "a", "title": "t", "prompt": "p", "agent": "broken"}])
    assert status == "failed"
    assert not [e for e in events(repo, run_id) if e["kind"] == "task.retry"]


def test_profile_concurrency_limit_is_respected(tmp_path: Path) -> None:
    toml = "[profiles.solo]\nadapter = \"script\"\nconcurrency = 1\n"
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n", "plait.toml": toml})
    tasks = [task(f"s{i}", {f"s{i}": "x"}, delay="0.4s", agent="solo") for i in range(3)]
    tasks += [task(f"f{i}", {f"f{i}": "x"}, delay="0.4s") for i in range(2)]
    status, run_id = start(repo, tasks, jobs=4)
    assert status == "completed"
    s = spans(events(repo, run_id))
    solo = [s[f"s{i}"] for i in range(3)]
    assert not any(overlaps(a, b) for i, a in enumerate(solo) for b in solo[i + 1 :])
    assert overlaps(s["f0"], s["f1"])


def test_role_selects_a_profile_of_that_name(tmp_path: Path) -> None:
    toml = "[profiles.tester]\nadapter = \"shell\"\ncommand = 'echo tested > tested.txt'\n"
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n", "plait.toml": toml})
    tester = {"id": "t", "title": "t", "prompt": "p", "role": "tester", "verify": "test -f tested.txt"}
    status, _ = start(repo, [tester])
    assert status == "completed"


def test_clean_removes_worktrees_but_keeps_branches_and_evidence(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    status, run_id = start(repo, [task("a", {"a.txt": "a"})])
    assert status == "completed"
    assert (repo / ".plait" / "worktrees" / run_id / "a").is_dir()
    removed = api.clean(cwd=repo)
    assert any(p.endswith("/a") for p in removed)
    assert not (repo / ".plait" / "worktrees" / run_id).exists()
    assert git(repo, "rev-parse", f"plait/{run_id}/a")
    assert (repo / ".plait" / "runs" / run_id / "tasks" / "a" / "EVIDENCE.md").is_file()
    assert f"{repo}/.plait" not in git(repo, "worktree", "list")
