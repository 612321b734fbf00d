"""The incremental Scheduler (in-degree counts, a heap per profile) answers as the rescanning one did.

`Rescanning` (tests/check_before.py) is `plait.schedule.Scheduler` as it was before issue 13: every query
rescanned every pending task. Random jobs (profiles, duplicate and unknown needs) go through random sequences
of the engine's transitions (start, done, hold, retry with a delay, fail, resume, stop, limits changing) and
every query must give the same answer after each step.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from check_before import Rescanning
from plait.schedule import Job, Scheduler


@st.composite
def job_lists(draw: st.DrawFn) -> list[Job]:
    n = draw(st.integers(1, 14))
    jobs = []
    for i in range(n):
        needs = draw(st.lists(st.integers(0, i), max_size=3)) if i else []
        names = [f"t{j}" if j < i else "outside" for j in needs]  # `outside` is not a job: never done
        weight = draw(st.sampled_from([0.0, 1.0, 2.0, 5.0]))  # ties between priorities are the hard part
        jobs.append(Job(f"t{i}", tuple(names), weight, draw(st.sampled_from(["a", "b", "c"]))))
    return jobs


STEP = st.tuples(st.sampled_from(["start", "done", "hold", "retry", "fail", "resume", "release", "stop",
                                  "limits", "wait"]), st.integers(0, 20), st.integers(0, 3))


def same_answers(old: Rescanning, new: Scheduler, now: float) -> None:
    assert new.next_to_start(now) == old.next_to_start(now)
    assert new.ready(now) == old.ready(now)
    assert new.ready(float("inf")) == old.ready(float("inf"))
    assert new.next_wakeup() == old.next_wakeup()
    assert new.settled == old.settled
    for name in ("pending", "running", "done", "failed", "blocked"):
        assert getattr(new, name) == getattr(old, name), name


@settings(max_examples=400, deadline=None)
@given(job_lists(), st.integers(1, 4), st.lists(STEP, max_size=40))
def test_the_incremental_scheduler_answers_as_the_rescanning_one(jobs: list[Job], m: int,
                                                                 steps: list[tuple[str, int, int]]) -> None:
    old, new = Rescanning(jobs, m, {"a": 1}), Scheduler(jobs, m, {"a": 1})
    now, held = 0.0, list[str]()
    same_answers(old, new, now)
    for action, pick, n in steps:
        running = sorted(old.running)
        if action == "start" and old.next_to_start(now):
            starts = old.next_to_start(now)[: n + 1]
        elif action in ("done", "hold", "retry", "fail") and running:
            task = running[pick % len(running)]
            starts = []
            if action == "done":
                old.mark_done(task), new.mark_done(task)
            elif action == "hold":
                old.hold(task), new.hold(task)
                held.append(task)
            elif action == "retry":
                old.retry(task, now + n), new.retry(task, now + n)
            else:
                assert sorted(new.fail(task)) == sorted(old.fail(task))
        elif action == "resume" and old.pending:
            task = sorted(old.pending)[pick % len(old.pending)]
            old.mark_done(task), new.mark_done(task)
            starts = []
        elif action == "release" and held:
            task = held.pop(pick % len(held))
            if n % 2:
                old.mark_done(task), new.mark_done(task)
            else:
                assert sorted(new.fail(task)) == sorted(old.fail(task))
            starts = []
        elif action == "stop":
            assert new.stop_new() == old.stop_new()
            starts = []
        elif action == "limits":
            limits = {"a": n + 1} if pick % 3 else {"b": n, "c": 1}
            old.profile_limits, new.profile_limits = dict(limits), dict(limits)
            starts = []
        else:
            now += n
            starts = []
        for task in starts:
            old.start(task), new.start(task)
        same_answers(old, new, now)
