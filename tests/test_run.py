"""`plait run` end to end on real temp git repositories with the deterministic script agent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from plait import api
from plait.errors import PlaitError
from plait.git import merge
from plait.run.engine import RunOptions
from runfixtures import events, git, make_repo, overlaps, snapshot, spans, task, write_plan


def run_plan(repo: Path, tasks: list[dict[str, Any]], jobs: int = 4, **extra: Any) -> tuple[str, str]:
    plan = write_plan(repo, tasks, **extra)
    handle, run_id = api.start(plan, RunOptions(jobs=jobs, retry_base_seconds=0.05), cwd=repo)
    return api.execute(handle, run_id), run_id


def tree(repo: Path, ref: str) -> dict[str, str]:
    names = git(repo, "ls-tree", "-r", "--name-only", ref).splitlines()
    return {n: git(repo, "show", f"{ref}:{n}") for n in names}


def test_diamond_runs_in_parallel_and_dependents_see_their_dependencies(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    before = snapshot(repo)
    status, run_id = run_plan(repo, [
        task("a", {"a.txt": "a\n"}, delay="0.3s"),
        task("b", {"b.txt": "b\n"}, needs=["a"], delay="0.6s", verify="test -f a.txt"),
        task("c", {"c.txt": "c\n"}, needs=["a"], delay="0.6s", verify="test -f a.txt"),
        task("d", {"d.txt": "d\n"}, needs=["b", "c"], verify="test -f a.txt && test -f b.txt && test -f c.txt"),
    ], integration={"verify": "test -f d.txt"})
    assert status == "completed"
    s = spans(events(repo, run_id))
    assert overlaps(s["b"], s["c"]), s
    assert s["a"][1] <= min(s["b"][0], s["c"][0]) and max(s["b"][1], s["c"][1]) <= s["d"][0]
    assert tree(repo, f"plait/{run_id}/integration") == {
        "README.md": "# project", "a.txt": "a", "b.txt": "b", "c.txt": "c", "d.txt": "d"}
    assert snapshot(repo) == before
    evidence = repo / ".plait" / "runs" / run_id / "tasks" / "d"
    for name in ("EVIDENCE.md", "results.json", "deviations.md", "context.json"):
        assert (evidence / name).is_file(), name
    assert (repo / ".plait" / "runs" / run_id / "INTEGRATION-REPORT.md").is_file()
    prompt = (evidence / "logs" / "attempt-1" / "prompt.md").read_text()
    assert "task b" in prompt and "task c" in prompt  # dependencies' context summaries


def test_wide_dag_uses_all_jobs(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    status, run_id = run_plan(repo, [task(f"t{i}", {f"f{i}.txt": str(i)}, delay="0.5s") for i in range(6)], jobs=3)
    assert status == "completed"
    s = spans(events(repo, run_id))
    # At some instant three tasks were running at once, never four.
    points = sorted(t for span in s.values() for t in span)
    most = max(sum(1 for a, b in s.values() if a <= p < b) for p in points)
    assert most == 3


def test_verify_failure_fails_run_and_blocks_dependents_but_not_independent_work(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    status, run_id = run_plan(repo, [
        task("bad", {"bad.txt": "x"}, verify="exit 3"),
        task("after", {"after.txt": "x"}, needs=["bad"]),
        task("free", {"free.txt": "x"}, delay="0.2s"),
    ])
    assert status == "failed"
    doc = api.status(run_id, cwd=repo)
    states = {t["id"]: t["state"] for t in doc["tasks"]}
    assert states == {"bad": "failed", "after": "blocked", "free": "done"}
    assert doc["failed_tasks"][0]["id"] == "bad"
    assert not git(repo, "branch", "--list", f"plait/{run_id}/integration")


def test_out_of_scope_write_is_a_deviation(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    t = task("a", {"in.txt": "x", "elsewhere/out.txt": "y"})
    t["files"] = ["in.txt"]
    status, run_id = run_plan(repo, [t])
    assert status == "completed"
    doc = api.status(run_id, cwd=repo)
    assert doc["tasks"][0]["deviations"] == ["elsewhere/out.txt"]
    deviations = (repo / ".plait" / "runs" / run_id / "tasks" / "a" / "deviations.md").read_text()
    assert "elsewhere/out.txt" in deviations


def test_contract_change_by_non_owner_fails_the_task(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"api.yaml": "v1\n"})
    status, run_id = run_plan(repo, [
        task("owner", {"impl.txt": "x"}),
        task("intruder", {"api.yaml": "v2\n"}),
    ], contracts=[{"path": "api.yaml", "owner": "owner"}])
    assert status == "failed"
    doc = api.status(run_id, cwd=repo)
    intruder = next(t for t in doc["tasks"] if t["id"] == "intruder")
    assert intruder["state"] == "failed" and "contract" in intruder["error"]


def test_conflicting_parallel_tasks_are_caught_by_the_radar(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"shared.txt": "base\n"})
    status, run_id = run_plan(repo, [
        task("left", {"shared.txt": "left\n"}),
        task("right", {"shared.txt": "right\n"}, delay="0.3s"),
    ])
    evts = events(repo, run_id)
    conflict = [e for e in evts if e["kind"] == "task.conflict"]
    assert conflict and conflict[0]["data"]["files"] == ["shared.txt"]
    # Reported as soon as the second task finished, before integration began.
    started_integration = [e["seq"] for e in evts if e["kind"] == "integration.started"]
    assert conflict[0]["seq"] < started_integration[0]
    assert status == "failed"
    report = (repo / ".plait" / "runs" / run_id / "INTEGRATION-REPORT.md").read_text()
    assert "shared.txt" in report


def test_the_radar_merges_only_once_a_finished_task_could_conflict(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    merged: list[str] = []
    real = merge.Chain.add

    def spy(self: merge.Chain, name: str, sha: str, starts: Any = ()) -> Any:
        if self.message == "radar":
            merged.append(name)
        return real(self, name, sha, starts)

    monkeypatch.setattr(merge.Chain, "add", spy)
    repo = make_repo(tmp_path / "repo", {"shared.txt": "base\n"})
    status, _ = run_plan(repo, [task(n, {f"{n}.txt": f"{n}\n"}) for n in "abc"])
    assert status == "completed" and merged == []  # none could conflict with another: no merge needed
    status, run_id = run_plan(repo, [task("a", {"a.txt": "a\n"}), task("b", {"b.txt": "b\n"}),
                                     task("left", {"shared.txt": "left\n"}),
                                     task("right", {"shared.txt": "right\n"}, delay="0.3s")])
    assert status == "failed"
    # The last of left and right to finish could conflict: everything finished before it is merged, then it.
    assert sorted(merged) == ["a", "b", "left", "right"]
    conflict = [e for e in events(repo, run_id) if e["kind"] == "task.conflict"]
    assert [(e["task"], e["data"]) for e in conflict] == [
        (merged[-1], {"with": ({"left", "right"} - {merged[-1]}).pop(), "files": ["shared.txt"]})]


def test_preflight_failure_blocks_the_run_with_one_line_per_check(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    plan = write_plan(repo, [task("a", {"a": "x"})], preflight=[
        {"tool": "no-such-tool-xyz"}, {"env": "PLAIT_TEST_UNSET_VAR"}, {"run": "exit 4"}, {"tool": "git"}])
    with pytest.raises(PlaitError) as info:
        api.start(plan, RunOptions(), cwd=repo)
    lines = info.value.lines()
    assert len(lines) == 4
    assert "no-such-tool-xyz" in lines[0]
    assert "PLAIT_TEST_UNSET_VAR" in lines[1]
    assert "exited 4" in lines[2]


def test_stack_delivery_restacks_branches_in_dependency_order(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    plan = write_plan(repo, [task("a", {"a.txt": "a"}), task("b", {"b.txt": "b"}, needs=["a"])])
    handle, run_id = api.start(plan, RunOptions(jobs=2, deliver="stack"), cwd=repo)
    assert api.execute(handle, run_id) == "completed"
    stacked = git(repo, "for-each-ref", "--format=%(refname:short)", f"refs/heads/plait/{run_id}/stack/")
    branches = stacked.splitlines()
    assert len(branches) == 2
    top = branches[-1]
    assert set(tree(repo, top)) == {"README.md", "a.txt", "b.txt"}
