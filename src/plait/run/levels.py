"""Per-level review (seed 001's "Code Review Loop (Phase N)"): once every `review: per-level` task of a
dependency level has finished, one reviewer reads all its verified tasks together and answers with one verdict
that names the tasks it rejects. Each rejected task's fixer works in a fresh workspace holding that task's work,
which is captured and verified again; then the level is reviewed again, only the tasks not yet approved, until
each is approved or has had its `max_rounds` reviews ("needs a human"). It runs on a worker, like an attempt;
the engine releases an approved task's dependents.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from plait.agents.base import AgentResult, ErrorKind
from plait.evidence import ReviewRecord, ReviewRound, TaskRecord, write_evidence
from plait.git import merge, workspace
from plait.redact import redact, redact_files
from plait.run.prompts import document_sections, fix_prompt, opening, task_sections
from plait.run.review import (
    COMMENT_CHARS,
    MAX_DIFF_CHARS,
    agent_error,
    change_diff,
    comment_list,
    diff_lines,
    profiles_for,
    verdict_object,
    verdict_of,
    verify_failed,
    verify_lines,
)
from plait.run.task import Attempt, Emit, RunContext, launch, short
from plait.state import EventKind
from plait.text import clip, printable

log = logging.getLogger("plait.run")

LEVEL_FORMAT = ('{"verdict": "approved"}',
                '{"verdict": "changes_requested", "tasks": {"<task id>": ["<file>:<line>: <what is wrong and what '
                'to do>"]}}')
Rejected = dict[str, tuple[str, ...]]  # task -> what the review asks of it


def parse_level_verdict(text: str, tasks: Sequence[str]) -> Rejected | None:
    """The tasks of `tasks` the reviewer rejected, each with its comments ({}: all approved), or None when the
    answer holds no readable verdict. Changes requested that name no task of `tasks` reject them all: only an
    approval passes a task. Never raises."""
    found = verdict_object(text)
    overall = verdict_of(found) if found is not None else None
    if found is None or overall is None:
        return None
    if overall.approved:
        return {}
    named = found.get("tasks")
    if isinstance(named, list):  # the ids alone: the overall comments are theirs
        named = {str(t): None for t in named}
    rejected = {t: comment_list(named[t]) or overall.comments for t in tasks if isinstance(named, dict) and t in named}
    return rejected or {t: overall.comments for t in tasks}


@dataclass(frozen=True)
class LevelOutcome:
    records: list[TaskRecord]  # each reviewed task's final record: ok when approved
    cost_usd: float  # what the level's reviewers and fixers spent


class _Under:
    """One task in the level review: its record as it stands, its review rounds, its fixer's workspace."""

    def __init__(self, ctx: RunContext, rec: TaskRecord, emit: Emit) -> None:
        self.ctx, self.rec, self.emit = ctx, rec, emit
        self.task = ctx.plan.task(rec.task_id)
        self.fixer = profiles_for(ctx.profiles, ctx.profiles[rec.profile])[1]
        self.limit = ctx.plan.max_rounds_for(self.task)
        self.rounds: list[ReviewRound] = []
        self.costs: list[float] = []
        self.work: Attempt | None = None  # the fixer's, from the first fix on

    def record(self, reviewer: str, approved: bool = False) -> ReviewRecord:
        spent = round(sum(self.costs), 6) if self.costs else None
        return ReviewRecord(reviewer, self.fixer.name, self.limit, list(self.rounds), approved, spent)

    def cost(self) -> float | None:
        known = [c for c in (self.rec.cost_usd, *self.costs) if c is not None]
        return round(sum(known), 6) if known else None

    def report(self, kind: EventKind, data: dict[str, Any], review: ReviewRecord) -> None:
        self.emit(kind, data, task={"cost_usd": self.cost(), "review_json": json.dumps(review.summary())})


class _LevelReview:
    def __init__(self, ctx: RunContext, level: int, records: Sequence[TaskRecord], emit_for: Callable[[str], Emit],
                 cancel: threading.Event) -> None:
        self.ctx, self.level, self.cancel = ctx, level, cancel
        self.under = [_Under(ctx, r, emit_for(r.task_id)) for r in records]
        self.reviewer = profiles_for(ctx.profiles, ctx.profiles[records[0].profile])[0]
        self.final: dict[str, TaskRecord] = {}
        self.spent: list[float] = []
        self.incidents: list[str] = []  # the reviewer's, noted on every task it read

    def pending(self) -> list[_Under]:
        return [u for u in self.under if u.task.id not in self.final]

    def run(self) -> LevelOutcome:
        n = 0
        try:
            while self.pending():
                n += 1
                self.round(n)
        except Exception as exc:  # every failure becomes the tasks' result, here; the traceback goes to a log
            log.exception("the review of level %s failed", self.level)
            folder = self.ctx.paths.level_dir(self.level)
            folder.mkdir(parents=True, exist_ok=True)
            with (folder / "internal-error.log").open("a") as f:
                f.write(redact(traceback.format_exc()))
            for u in self.pending():
                self.end(u, False, short(f"level {self.level} review failed: {type(exc).__name__}: {exc}"))
        finally:
            redact_files(self.ctx.paths.level_dir(self.level))
        return LevelOutcome([self.final[u.task.id] for u in self.under], round(sum(self.spent), 6))

    def round(self, n: int) -> None:
        asked = [u for u in self.pending() if u.rec.verify is None or u.rec.verify.ok]
        verdicts: Rejected = {u.task.id: verify_failed(u.rec.verify).comments
                              for u in self.pending() if u.rec.verify is not None and not u.rec.verify.ok}
        malformed, shares = False, {}
        if asked:
            for u in asked:
                u.report(EventKind.TASK_REVIEWING, {"level": self.level, "round": n, "reviewer": self.reviewer.name,
                                                    "commit": u.rec.commit_sha}, u.record(self.reviewer.name))
            got = self.ask(n, asked)
            if isinstance(got, AgentResult):
                for u in self.pending():
                    self.end(u, False, agent_error("reviewer", self.reviewer, got, n),
                             got.error_kind or ErrorKind.UNKNOWN, self.reviewer.name)
                return
            rejected, malformed, cost = got
            verdicts |= rejected
            shares = {u.task.id: round(cost / len(asked), 6) for u in asked} if cost is not None else {}
        for u in self.pending():
            comments = verdicts.get(u.task.id, ())
            approved = u.task.id not in verdicts
            word = "approved" if approved else "changes_requested"
            share = shares.get(u.task.id)
            u.costs += [share] if share is not None else []
            u.rounds.append(ReviewRound(n, u.rec.commit_sha or "", word, list(comments), malformed and u in asked,
                                        share))
            u.report(EventKind.TASK_REVIEWED, {"level": self.level, "round": n, "verdict": word,
                                               "comments": list(comments), "malformed": malformed and u in asked,
                                               "cost_usd": share}, u.record(self.reviewer.name, approved))
            if approved:
                self.end(u, True)
            elif n >= u.limit:
                more = f" (+{len(comments) - 1} more)" if len(comments) > 1 else ""
                self.end(u, False, f"level {self.level} review: changes still requested after {n} round(s), "
                                   f"needs a human: {clip(comments[0], 300)}{more}")
            else:
                self.fix(u, n, comments)

    def ask(self, n: int, asked: list[_Under]) -> tuple[Rejected, bool, float | None] | AgentResult:
        """One review of `asked`, asked once more when the answer holds no readable verdict: (the tasks
        rejected, malformed, cost), or the reviewer's failed AgentResult."""
        ctx, paths = self.ctx, self.ctx.paths
        heads = [(paths.branch(u.task.id), u.rec.commit_sha or u.rec.base_sha) for u in asked]
        merged = merge.merge_commits(ctx.git, ctx.base_sha, heads, f"[plait {paths.run_id}] level {self.level}")
        ws = workspace.create(ctx.git, paths.level_folder(self.level) / "review", paths.level_folder(self.level)
                              / "home", merged.commit, f"plait/{paths.run_id}/level-{self.level}")
        ids = [u.task.id for u in asked]
        spent: list[float] = []
        answer = ""
        try:
            for retry in (False, True):
                label = f"review-{n}" + "-retry" * retry
                result, incidents = launch(ctx, ws, f"level-{self.level}", "reviewer", self.reviewer,
                                           self.prompt(n, asked, merged.conflict is not None, retry),
                                           paths.level_dir(self.level) / label,
                                           self.reviewer.timeout or ctx.plan.defaults.timeout, self.cancel,
                                           f"level-{self.level}/{label}")
                self.incidents += [f"level {self.level} reviewer: {i}" for i in incidents]
                if result.cost_usd is not None:
                    spent.append(result.cost_usd)
                    self.spent.append(result.cost_usd)
                if not result.ok:
                    return result
                answer = result.summary
                rejected = parse_level_verdict(answer, ids)
                if rejected is not None:
                    return rejected, False, round(sum(spent), 6) if spent else None
        finally:
            workspace.remove(ws.folder)  # nothing a reviewer left there reaches any branch
        raw = clip(printable(answer), COMMENT_CHARS) or "(empty)"
        why = f"the reviewer's answer had no readable verdict (asked twice); it said: {raw}"
        return {t: (why,) for t in ids}, True, round(sum(spent), 6) if spent else None

    def prompt(self, n: int, asked: list[_Under], partial: bool, retry: bool) -> str:
        ctx = self.ctx
        lines = opening("reviewer", None, ctx.paths.repo_root) + document_sections(ctx.docs)
        where = ("your working directory holds their work merged" if not partial else
                 "their work does not all merge, so your working directory holds only part of it: read the diffs")
        lines += [f"# Review of dependency level {self.level}: {len(asked)} task(s)",
                  f"These tasks ran in parallel and verified; what needs them starts once you approve them. Review "
                  f"each one's change; {where}.", ""]
        for u in asked:
            lines += task_sections(ctx.plan, u.task)
            lines += verify_lines(u.rec.verify) if u.rec.verify else []
            lines += [f"## The change of task {u.task.id} (`git diff` of its base and its work)",
                      *diff_lines(change_diff(ctx.git, u.rec.base_sha, u.rec.commit_sha or u.rec.base_sha),
                                  MAX_DIFF_CHARS // len(asked))]
            if u.rounds:
                lines += [f"## What the previous review asked of {u.task.id} (check that it was done)",
                          *[f"- {c}" for c in u.rounds[-1].comments], ""]
        lines += [f"## Your answer (review round {n})",
                  "You only read: do not change any file. End your answer with exactly one JSON object: either",
                  LEVEL_FORMAT[0], "when every task above is right, or", LEVEL_FORMAT[1],
                  f"naming each task that needs changes by its id ({', '.join(u.task.id for u in asked)}); the "
                  "tasks you do not name are approved.", ""]
        if retry:
            lines += ["Your previous answer ended without a verdict plait could read: end with one of the two JSON "
                      "objects above.", ""]
        return "\n".join(lines)

    def fix(self, u: _Under, n: int, comments: Sequence[str]) -> None:
        """The task's fixer in a workspace holding its work; then its work is captured and verified again."""
        ctx = self.ctx
        if u.work is None:
            u.work = Attempt(ctx, u.task, u.rec.attempt, {}, u.emit, self.cancel)
            u.work.reopen(u.rec.base_sha, u.rec.commit_sha or u.rec.base_sha)
        work = u.work
        fixed = work.run_role("fixer", u.fixer, fix_prompt(ctx.plan, u.task, ctx.docs, ctx.paths.repo_root, n,
                                                           comments), f"fix-{n}")
        if fixed.cost_usd is not None:
            u.costs.append(fixed.cost_usd)
            self.spent.append(fixed.cost_usd)
        summary = clip(printable(fixed.summary), COMMENT_CHARS)
        u.rounds[-1] = replace(u.rounds[-1], fixer_cost_usd=fixed.cost_usd, fixer_summary=summary)
        u.report(EventKind.TASK_FIXED, {"level": self.level, "round": n, "fixer": u.fixer.name, "ok": fixed.ok,
                                        "cost_usd": fixed.cost_usd, "summary": summary}, u.record(self.reviewer.name))
        if not fixed.ok:
            self.end(u, False, agent_error("fixer", u.fixer, fixed, n), fixed.error_kind or ErrorKind.UNKNOWN,
                     u.fixer.name)
            return
        commit, problem = work.capture()
        if problem or commit is None:
            self.end(u, False, f"level {self.level} review round {n}: the fix: {problem}")
            return
        u.rec = replace(u.rec, **work.captured, verify=work.verify())

    def end(self, u: _Under, approved: bool, error: str = "", kind: ErrorKind | None = None,
            profile: str = "") -> None:
        """The task's final record, written as its evidence; an approved task's fix workspace goes."""
        incidents = [*u.rec.incidents, *(u.work.incidents if u.work else []), *self.incidents]
        rec = replace(u.rec, ok=approved, error=error, error_kind=kind, transient=False, review=u.record(
            self.reviewer.name, approved), profile=profile or u.rec.profile, cost_usd=u.cost(),
                      finished_at=time.time(), incidents=incidents)
        write_evidence(self.ctx.paths.task_dir(u.task.id), rec, u.task, self.ctx.plan)
        if approved and u.work and u.work.ws:
            workspace.remove(u.work.ws.folder)
        self.final[u.task.id] = rec


def review_level(ctx: RunContext, level: int, records: Sequence[TaskRecord], emit_for: Callable[[str], Emit],
                 cancel: threading.Event) -> LevelOutcome:
    """Review the verified tasks of one level together, fix what is rejected, until each is approved or needs
    a human. Never raises: a failure of any step fails the tasks still under review, with the reason."""
    return _LevelReview(ctx, level, records, emit_for, cancel).run()
