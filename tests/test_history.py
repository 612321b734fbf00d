"""Learned estimates (plait.history): what a run records as its tasks finish, the calibration math, what
`plait check` shows with history and without, and the run's scheduling order following the learned estimates.
Real git, SQLite and the script agent; no assertion on how long anything took."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plait import api, history
from plait.history import MAX_RATIO, PRIOR_SAMPLES, Sample, bucket, calibrate
from plait.plan.model import Plan
from plait.run.engine import RunOptions
from plait.schedule import Job, Scheduler
from plait.testing import FakeAgent, VirtualClock
from plait.testing.fake import crash, edits
from runfixtures import events, make_repo, plait, task, write_plan

HOUR = 3600.0


def durations(repo: api.Repo) -> dict[str, dict[str, Any]]:
    return {r["task_id"]: r for r in repo.store.durations()}


def seed_history(repo: api.Repo, role: str, ratio: float, count: int = 12, profile: str = "script",
                 estimate: float = 2 * HOUR) -> None:
    """`count` earlier tasks of (profile, role) that took `ratio` times their estimate."""
    for i in range(count):
        repo.store.add_duration({"run_id": "earlier", "task_id": f"{role or 'none'}-{i}", "profile": profile,
                                 "role": role, "size": "M", "estimate_seconds": estimate,
                                 "seconds": estimate * ratio, "finished_at": float(i)})


# -- recording ------------------------------------------------------------------------------------------------
def test_a_run_records_each_verified_task_with_its_profile_role_and_the_plans_estimate(tmp_path: Path) -> None:
    repo_dir = make_repo(tmp_path / "repo", {"README.md": "x\n"})
    plan = write_plan(repo_dir, [
        task("a", {"a.txt": "a\n"}, role="software-engineer", estimate="30m"),
        task("b", {"b.txt": "b\n"}, size="L"),
        task("c", {"c.txt": "c\n"}, script={"write": {"c.txt": "c\n"}, "fail": True}),
    ], defaults={"agent": "script", "retries": 0})
    repo, run_id = api.start(plan, RunOptions(jobs=2), cwd=repo_dir)
    assert api.execute(repo, run_id) == "failed"  # c fails: it is not recorded
    found = durations(repo)
    assert set(found) == {"a", "b"}
    assert (found["a"]["profile"], found["a"]["role"], found["a"]["size"]) == ("script", "software-engineer", "M")
    assert found["a"]["estimate_seconds"] == 30 * 60
    assert (found["b"]["role"], found["b"]["size"], found["b"]["estimate_seconds"]) == ("", "L", 4 * HOUR)
    attempts = {a["task_id"]: a for a in repo.store.attempts(run_id)}
    for tid, row in found.items():
        assert row["run_id"] == run_id
        assert row["seconds"] == pytest.approx(attempts[tid]["finished_at"] - attempts[tid]["started_at"])


def test_only_the_verified_attempt_counts_and_a_resumed_or_reused_task_is_not_recorded_twice(tmp_path: Path) -> None:
    repo_dir = make_repo(tmp_path / "repo", {"README.md": "x\n"})
    plan = write_plan(repo_dir, [task("a")], defaults={"agent": "claude"})
    repo, run_id = api.start(plan, RunOptions(jobs=1), cwd=repo_dir)
    fake = FakeAgent({"a": [crash(), edits({"a.txt": "a\n"})]})
    assert api.execute(repo, run_id, make_agent=lambda profile: fake, clock=VirtualClock()) == "completed"
    (row,) = repo.store.durations()
    verified = repo.store.verified_attempt(run_id, "a")
    assert verified is not None and verified["attempt"] == 2
    assert row["seconds"] == pytest.approx(verified["finished_at"] - verified["started_at"])
    _, again = api.start(plan, RunOptions(jobs=1), cwd=repo_dir)  # reuses a: nothing runs, nothing is recorded
    api.execute(repo, again, make_agent=lambda profile: fake, clock=VirtualClock())
    assert len(repo.store.durations()) == 1


def test_the_history_holds_numbers_and_names_only(tmp_path: Path) -> None:
    repo_dir = make_repo(tmp_path / "repo", {"README.md": "x\n"})
    plan = write_plan(repo_dir, [task("a", {"a.txt": "a\n"}, prompt="use sk-ant-api03-" + "x" * 40)],
                      defaults={"agent": "script"})
    repo, run_id = api.start(plan, RunOptions(jobs=1), cwd=repo_dir)
    api.execute(repo, run_id)
    (row,) = repo.store.durations()
    assert set(row) == {"run_id", "task_id", "profile", "role", "size", "estimate_seconds", "seconds", "finished_at"}
    assert "sk-ant" not in json.dumps(row)


# -- the calibration ------------------------------------------------------------------------------------------
def test_no_history_leaves_every_estimate_as_the_plan_says() -> None:
    f = calibrate([]).factor("claude", "", 2 * HOUR)
    assert (f.value, f.samples, f.bucket_samples) == (1.0, 0, 0)


def test_few_samples_are_shrunk_toward_the_plan_and_many_reach_what_was_measured() -> None:
    def factor(n: int) -> float:
        return calibrate([Sample("p", "r", HOUR, 3 * HOUR)] * n).factor("p", "r", HOUR).value

    assert factor(1) == pytest.approx(3 ** (1 / (1 + PRIOR_SAMPLES) * (1 + PRIOR_SAMPLES / (1 + PRIOR_SAMPLES))))
    assert 1 < factor(1) < factor(3) < factor(12) < factor(100) < 3
    assert factor(100) == pytest.approx(3, rel=0.02)


def test_the_median_ignores_a_hung_attempt() -> None:
    steady = [Sample("p", "", HOUR, 2 * HOUR)] * 22
    hung = [*steady[:20], Sample("p", "", HOUR, 40 * HOUR), Sample("p", "", HOUR, 30 * HOUR)]
    assert calibrate(hung).factor("p", "", HOUR).value == pytest.approx(calibrate(steady).factor("p", "", HOUR).value)


def test_noisy_durations_give_the_mean_factor_not_the_median() -> None:
    """Lognormal noise of σ 1 around the plan: the mean duration is exp(σ² / 2) = 1.65 x the median."""
    normal = statistics.NormalDist()
    ratios = [math.exp(normal.inv_cdf((i + 0.5) / 200)) for i in range(200)]
    f = calibrate([Sample("p", "", HOUR, HOUR * r) for r in ratios]).factor("p", "", HOUR).value
    assert f == pytest.approx(math.exp(0.5), rel=0.03)


def test_each_profile_role_and_size_bucket_learns_its_own_factor() -> None:
    samples = ([Sample("claude", "sdet", HOUR, 2 * HOUR)] * 30 + [Sample("claude", "sdet", 4 * HOUR, 2 * HOUR)] * 30
               + [Sample("codex", "sdet", HOUR, HOUR / 2)] * 30)
    c = calibrate(samples)
    assert c.factor("claude", "sdet", HOUR).value > 1.5
    assert c.factor("claude", "sdet", 4 * HOUR).value < 0.65
    assert c.factor("codex", "sdet", HOUR).value < 0.6
    assert c.factor("codex", "software-engineer", HOUR).value == 1.0
    # A bucket with no sample of its own takes its (profile, role) factor.
    group = c.factor("claude", "sdet", 2 * HOUR)
    assert group.bucket_samples == 0 and group.samples == 60


def test_only_the_newest_window_counts() -> None:
    old = [Sample("p", "", HOUR, 5 * HOUR)] * 50
    new = [Sample("p", "", HOUR, HOUR)] * 50
    assert calibrate([*old, *new], window=50).factor("p", "", HOUR).value == 1.0


@pytest.mark.parametrize(("estimate", "expected"), [(30, "15m"), (20 * 60, "15m"), (25 * 60, "30m"), (HOUR, "1h"),
                                                    (2 * HOUR, "2h"), (3 * HOUR, "4h"), (8 * HOUR, "4h"), (0, "15m")])
def test_size_buckets(estimate: float, expected: str) -> None:
    assert bucket(estimate) == expected


samples_strategy = st.lists(st.builds(
    Sample, st.sampled_from(["claude", "codex"]), st.sampled_from(["", "sdet"]),
    st.floats(0, 10 * HOUR), st.floats(0, 1e7)), max_size=60)


@settings(max_examples=100, deadline=None)
@given(samples_strategy, st.floats(1, 8 * HOUR))
def test_factors_are_finite_positive_and_within_the_clipped_ratios(samples: list[Sample], estimate: float) -> None:
    c = calibrate(samples)
    for profile in ("claude", "codex", "gemini"):
        f = c.factor(profile, "sdet", estimate).value
        assert math.isfinite(f) and 1 / MAX_RATIO <= f <= MAX_RATIO


@settings(max_examples=100, deadline=None)
@given(samples_strategy, st.randoms(use_true_random=False))
def test_the_order_of_samples_within_the_window_does_not_matter(samples: list[Sample], rnd: Any) -> None:
    shuffled = list(samples)
    rnd.shuffle(shuffled)
    a, b = calibrate(samples), calibrate(shuffled)
    assert a.groups.keys() == b.groups.keys() and a.cells.keys() == b.cells.keys()
    for key in a.cells:
        assert a.cells[key][0] == pytest.approx(b.cells[key][0], abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0.05, 20), min_size=1, max_size=40), st.floats(0.05, 20))
def test_a_uniformly_slower_history_moves_the_factor_the_same_way(ratios: list[float], slower: float) -> None:
    """Every task taking `slower` times longer multiplies the factor by slower^(n / (n + k)) (bucket and
    profile-role shrinkage together), whatever the ratios were."""
    before = calibrate([Sample("p", "", HOUR, HOUR * r) for r in ratios]).factor("p", "", HOUR).value
    after = calibrate([Sample("p", "", HOUR, HOUR * r * slower) for r in ratios]).factor("p", "", HOUR).value
    n, k = len(ratios), PRIOR_SAMPLES
    expected = math.log(slower) * (n / (n + k) + k / (n + k) * n / (n + k))
    clipped = any(not 1 / MAX_RATIO <= r * slower <= MAX_RATIO for r in ratios)
    if not clipped:
        assert math.log(after / before) == pytest.approx(expected, abs=1e-9)


# -- the scheduling order -------------------------------------------------------------------------------------
def two_roles() -> Plan:
    return Plan.model_validate({"plait": 1, "name": "p", "tasks": [
        {"id": "x", "title": "x", "prompt": "x", "role": "software-engineer"},
        {"id": "y", "title": "y", "prompt": "y", "role": "sdet"}]})


def first_ready(plan: Plan) -> str:
    jobs = [Job(t.id, tuple(t.needs), t.seconds, plan.agent_for(t)) for t in plan.tasks]
    return Scheduler(jobs, 1).next_to_start()[0]


def test_the_scheduler_starts_the_task_history_says_is_longest_first() -> None:
    plan = two_roles()
    assert first_ready(plan) == "x"  # equal estimates: the plan's order
    slow_tests = calibrate([Sample("script", "sdet", 2 * HOUR, 6 * HOUR)] * 10)
    learned = history.estimates(plan, (), slow_tests)
    assert learned.tasks["y"].seconds > 4 * HOUR and learned.tasks["x"].seconds == 2 * HOUR
    assert first_ready(learned.plan) == "y"


def started_order(repo: api.Repo, run_id: str) -> list[str]:
    return [e["task"] for e in events(repo.root, run_id) if e["kind"] == "task.started"]


def test_a_run_schedules_by_learned_estimates_unless_told_to_ignore_history(tmp_path: Path) -> None:
    repo_dir = make_repo(tmp_path / "repo", {"README.md": "x\n"})
    plan = write_plan(repo_dir, [task("x", {"x.txt": "x\n"}, role="software-engineer"),
                                 task("y", {"y.txt": "y\n"}, role="sdet")], defaults={"agent": "script"})
    repo = api.open_repo(repo_dir)
    seed_history(repo, "sdet", 3.0)
    _, learned = api.start(plan, RunOptions(jobs=1, fresh=True), cwd=repo_dir)
    heard: list[str] = []
    assert api.execute(repo, learned, lambda kind, task, data: heard.append(kind)) == "completed"
    assert heard[0] == "run.estimates", "the run says it uses history before it starts"
    assert started_order(repo, learned) == ["y", "x"]
    (said,) = [e for e in events(repo.root, learned) if e["kind"] == "run.estimates"]
    assert said["data"]["samples"] == 12 and said["data"]["tasks"]["y"]["factor"] > 2
    _, plain = api.start(plan, RunOptions(jobs=1, fresh=True, history=False), cwd=repo_dir)
    assert api.execute(repo, plain) == "completed"
    assert started_order(repo, plain) == ["x", "y"]
    assert not [e for e in events(repo.root, plain) if e["kind"] == "run.estimates"]
    assert len(repo.store.durations()) == 12 + 4, "both runs recorded their tasks, --no-history too"


# -- plait check ----------------------------------------------------------------------------------------------
def test_check_shows_learned_estimates_and_how_many_durations_they_come_from(tmp_path: Path) -> None:
    repo_dir = make_repo(tmp_path / "repo", {"README.md": "x\n"})
    plan = write_plan(repo_dir, [task("x", {"x.txt": "x\n"}, role="software-engineer"),
                                 task("y", {"y.txt": "y\n"}, role="sdet", needs=["x"])], defaults={"agent": "script"})
    before = plait(repo_dir, "check", str(plan), "--json")
    assert "history" not in json.loads(before.stdout)
    seed_history(api.open_repo(repo_dir), "sdet", 2.0, count=40)

    shown = plait(repo_dir, "check", str(plan))
    assert shown.returncode == 0, shown.stderr
    assert "learned from 40 task durations of earlier runs" in shown.stdout
    assert "2h -> 3h" in shown.stdout  # y: 2h x 2 measured, shrunk toward the plan by its 40 samples
    doc = json.loads(plait(repo_dir, "check", str(plan), "--json").stdout)
    assert doc["history"]["used"] and doc["history"]["samples"] == 40
    y = doc["history"]["tasks"]["y"]
    assert y["plan_seconds"] == 2 * HOUR and 3.5 * HOUR < y["seconds"] < 4 * HOUR and y["samples"] == 40
    assert doc["history"]["tasks"]["x"]["factor"] == 1.0
    assert doc["critical_path_seconds"] == pytest.approx(2 * HOUR + y["seconds"], abs=1)

    ignored = plait(repo_dir, "check", str(plan), "--no-history")
    assert "learned from" not in ignored.stdout and "2h ->" not in ignored.stdout
    plain = json.loads(plait(repo_dir, "check", str(plan), "--json", "--no-history").stdout)
    assert "history" not in plain and plain["critical_path_seconds"] == 4 * HOUR


def test_check_says_when_the_history_is_of_other_profiles_and_roles(tmp_path: Path) -> None:
    repo_dir = make_repo(tmp_path / "repo", {"README.md": "x\n"})
    plan = write_plan(repo_dir, [task("x", {"x.txt": "x\n"})], defaults={"agent": "script"})
    seed_history(api.open_repo(repo_dir), "sdet", 2.0, count=5)
    shown = plait(repo_dir, "check", str(plan))
    assert "the plan's own: none of the 5 task durations" in shown.stdout
    assert not json.loads(plait(repo_dir, "check", str(plan), "--json").stdout)["history"]["used"]
