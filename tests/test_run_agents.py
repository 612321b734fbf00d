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
    # First attempt: the agent dies by SIGKILL (a crash, transient). Second: it writes its file.
    # (The marker is in the task's private home, which its attempts share.)
    command = ('if [ ! -e "$HOME/crashed-once" ]; then touch "$HOME/crashed-once"; kill -9 $$; fi; '
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


def test_clean_removes_workspaces_but_keeps_branches_and_evidence(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    status, run_id = start(repo, [task("a", {"a.txt": "a"}), task("b", {"b.txt": "b"}, verify="false")])
    assert status == "failed"
    rows = {t["task_id"]: t for t in api.open_repo(repo).store.tasks(run_id)}
    kept, gone = Path(rows["b"]["worktree"]), Path(rows["a"]["worktree"])
    assert not gone.exists(), "a verified task's workspace goes at once: its work is in its commit"
    assert (kept / "tree" / "b.txt").is_file(), "a failed attempt's workspace stays to be looked at"
    assert not kept.is_relative_to(repo), "workspaces live outside the checkout by default"
    removed = api.clean(cwd=repo)
    assert removed.workspaces and not kept.exists() and not kept.parent.parent.exists()
    assert git(repo, "rev-parse", f"plait/{run_id}/a") and git(repo, "rev-parse", f"plait/{run_id}/b")
    assert (repo / ".plait" / "runs" / run_id / "tasks" / "a" / "EVIDENCE.md").is_file()


def test_a_completed_run_leaves_no_workspace_behind(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    status, run_id = start(repo, [task("a", {"a.txt": "a"}), task("b", {"b.txt": "b"}, needs=["a"])],
                           integration={"verify": "test -f a.txt && test -f b.txt"})
    assert status == "completed"
    assert not api.run_paths(api.open_repo(repo), run_id).workspaces.exists()
    assert git(repo, "show", f"plait/{run_id}/integration:b.txt") == "b"
