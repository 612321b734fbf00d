"""Review and fix (seed 001): once a task verifies, a reviewer agent reads its diff in a read-only sandbox and
answers with a verdict; on changes requested a fixer works in the same workspace, the work is captured and
verified again and reviewed again, for at most `max_rounds` reviews. Only an approval passes the task; an
answer without a readable verdict is asked for once more and then counts as changes requested.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from plait.agents.base import AgentResult, ErrorKind, Permission, Profile
from plait.evidence import ReviewRecord, ReviewRound, VerifyResult
from plait.git.repo import Git
from plait.plan.model import Plan, Task
from plait.run.prompts import Documents, document_sections, fenced, opening, task_sections
from plait.run.prompts import fix_prompt as build_fix_prompt
from plait.state import EventKind
from plait.text import clip, printable

VERDICT_FORMAT = ('{"verdict": "approved", "comments": []}',
                  '{"verdict": "changes_requested", "comments": ["<file>:<line>: <what is wrong and what to do>"]}')
MAX_SCAN_CHARS = 64_000  # of the reviewer's answer, from its end, searched for the verdict
MAX_CANDIDATES = 200  # `{` positions tried, from the last
MAX_COMMENTS = 30
COMMENT_CHARS = 1_000
MAX_DIFF_CHARS = 100_000
_APPROVED = {"approved", "approve", "lgtm"}
_CHANGES = {"changes_requested", "request_changes", "changes", "rejected", "reject"}


@dataclass(frozen=True)
class Verdict:
    approved: bool
    comments: tuple[str, ...] = ()


def parse_verdict(text: str) -> Verdict | None:
    """The verdict in the last JSON object of `text` that has a `verdict` key, or None when there is none
    or it is not one plait knows. Never raises, whatever the text."""
    found = verdict_object(text)
    return None if found is None else verdict_of(found)


def verdict_object(text: str, key: str = "verdict") -> dict[str, Any] | None:
    """The last JSON object of `text` that has `key` (searched from the end, bounded). Never raises."""
    tail = text[-MAX_SCAN_CHARS:]
    decoder = json.JSONDecoder()
    starts = [i for i, c in enumerate(tail) if c == "{"][-MAX_CANDIDATES:]
    for start in reversed(starts):
        try:
            found, _ = decoder.raw_decode(tail, start)
        except (ValueError, RecursionError):
            continue
        if isinstance(found, dict) and key in found:
            return found
    return None


def comment_list(raw: Any) -> tuple[str, ...]:
    """A reviewer's comments (a list, one text, or anything JSON) as bounded, printable lines."""
    items = raw if isinstance(raw, list) else [] if raw is None else [raw]
    return tuple(clip(printable(c if isinstance(c, str) else json.dumps(c)), COMMENT_CHARS)
                 for c in items[:MAX_COMMENTS])


def verdict_of(found: dict[str, Any]) -> Verdict | None:
    word = str(found["verdict"]).strip().lower().replace("-", "_").replace(" ", "_")
    comments = comment_list(found.get("comments"))
    if word in _APPROVED:
        return Verdict(True, comments)
    if word in _CHANGES:
        return Verdict(False, comments or ("(the reviewer requested changes without comments)",))
    return None


def profiles_for(profiles: Mapping[str, Profile], task_profile: Profile) -> tuple[Profile, Profile]:
    """(reviewer, fixer): the project's profiles named `reviewer` and `fixer`, else the task's own. The
    reviewer always runs read-only (its CLI's own setting, on top of the read-only sandbox)."""
    reviewer = profiles.get("reviewer", task_profile)
    return replace(reviewer, permission=Permission.READ_ONLY), profiles.get("fixer", task_profile)


class Work(Protocol):
    """What the loop needs from the attempt it runs in (plait.run.task)."""

    def run_role(self, role: str, profile: Profile, prompt: str, label: str) -> AgentResult: ...
    def capture(self) -> tuple[str | None, str | None]: ...  # (commit, why the change fails the task)
    def verify(self) -> VerifyResult: ...
    def diff(self, commit: str) -> str: ...
    def tree_state(self) -> str: ...  # the work tree's files, as a git tree
    def put_back(self, tree: str) -> list[str]: ...  # undo what a reviewer changed since `tree_state`
    def report(self, kind: EventKind, data: dict[str, Any], record: ReviewRecord) -> None: ...


@dataclass(frozen=True)
class Job:
    plan: Plan
    task: Task
    docs: Documents
    repo_root: Path | None
    reviewer: Profile
    fixer: Profile
    commit: str
    verify: VerifyResult


@dataclass(frozen=True)
class Outcome:
    """How the review ended: approved, or not with an error ("needs a human" after the last round)."""

    record: ReviewRecord
    commit: str
    verify: VerifyResult
    error: str = ""
    error_kind: ErrorKind | None = None  # a reviewer or fixer agent failed this way
    profile: str = ""  # the profile that failed

    @property
    def approved(self) -> bool:
        return self.record.approved


def review_prompt(job: Job, diff: str, verify: VerifyResult, review_round: int, earlier: Sequence[str],
                  retry: bool) -> str:
    plan, task = job.plan, job.task
    lines = opening("reviewer", None, job.repo_root) + document_sections(job.docs) + task_sections(plan, task)
    lines += verify_lines(verify)
    lines += ["## The change to review (`git diff` of the task's base and its work; the files are in your "
              "working directory)", *diff_lines(diff, MAX_DIFF_CHARS)]
    if earlier:
        lines += ["## What the previous review asked for (check that it was done)", *[f"- {c}" for c in earlier], ""]
    lines += [f"## Your answer (review round {review_round} of {plan.max_rounds_for(task)})",
              "You only read: do not change any file. End your answer with exactly one JSON object, either",
              VERDICT_FORMAT[0], "or", VERDICT_FORMAT[1], ""]
    if retry:
        lines += ["Your previous answer ended without a verdict plait could read: end with one of the two JSON "
                  "objects above, exactly as shown.", ""]
    return "\n".join(lines)


def verify_lines(verify: VerifyResult) -> list[str]:
    """What the reviewer is told about the task's verify command and its result."""
    if verify.command is None:
        return ["## Verification", "The task has no verify command: only this review checks the work.", ""]
    output = verify.output_tail[-2000:].strip()
    passed = f"`{verify.command}` passed (exit {verify.exit_code}, {verify.seconds:.1f}s)"
    return ["## Verification", f"{passed}. The end of its output:" if output else f"{passed} with no output.",
            *([fenced(output)] if output else []), ""]


def change_diff(git: Git, base: str, commit: str) -> str:
    """A task's change, as a reviewer reads it (never through the user's diff drivers)."""
    return git.run("diff", "--no-color", "--no-ext-diff", "--no-textconv", base, commit)


def diff_lines(diff: str, limit: int) -> list[str]:
    return [fenced(clip(diff, limit, "read the files for the rest"), "diff"), ""]


def verify_failed(verify: VerifyResult) -> Verdict:
    """A fix broke verification: that is the next fix's comment; no reviewer needed to say so."""
    why = "timed out" if verify.timed_out else f"exited {verify.exit_code}"
    tail = clip(verify.output_tail, COMMENT_CHARS, keep="end")
    return Verdict(False, (f"verify `{verify.command}` {why} after the fix: {tail}",))


class _Loop:
    def __init__(self, work: Work, job: Job) -> None:
        self.work, self.job = work, job
        self.limit = job.plan.max_rounds_for(job.task)
        self.rounds: list[ReviewRound] = []
        self.costs: list[float] = []
        self.commit, self.verify = job.commit, job.verify

    def record(self, approved: bool = False) -> ReviewRecord:
        spent = round(sum(self.costs), 6) if self.costs else None
        return ReviewRecord(self.job.reviewer.name, self.job.fixer.name, self.limit, list(self.rounds), approved,
                            spent)

    def end(self, approved: bool, error: str = "", failed: AgentResult | None = None,
            profile: str = "") -> Outcome:
        return Outcome(self.record(approved), self.commit, self.verify, error,
                       (failed.error_kind or ErrorKind.UNKNOWN) if failed else None, profile)

    def spend(self, result: AgentResult) -> float | None:
        if result.cost_usd is not None:
            self.costs.append(result.cost_usd)
        return result.cost_usd

    def run(self) -> Outcome:
        work, job = self.work, self.job
        earlier: list[str] = []
        for n in range(1, self.limit + 1):
            if self.verify.ok:
                work.report(EventKind.TASK_REVIEWING, {"round": n, "reviewer": job.reviewer.name,
                                                       "commit": self.commit}, self.record())
            got = self.review(n, earlier) if self.verify.ok else (verify_failed(self.verify), False, None)
            if isinstance(got, AgentResult):
                return self.end(False, agent_error("reviewer", job.reviewer, got, n), got, job.reviewer.name)
            verdict, malformed, cost = got
            word = "approved" if verdict.approved else "changes_requested"
            self.rounds.append(ReviewRound(n, self.commit, word, list(verdict.comments), malformed, cost))
            work.report(EventKind.TASK_REVIEWED, {"round": n, "verdict": word, "comments": list(verdict.comments),
                                                  "malformed": malformed, "cost_usd": cost},
                        self.record(verdict.approved))
            if verdict.approved:
                return self.end(True)
            if n == self.limit:
                more = f" (+{len(verdict.comments) - 1} more)" if len(verdict.comments) > 1 else ""
                return self.end(False, f"review: changes still requested after {n} round(s), needs a human: "
                                       f"{clip(verdict.comments[0], 300)}{more}")
            earlier = list(verdict.comments)
            fixed = work.run_role("fixer", job.fixer, build_fix_prompt(job.plan, job.task, job.docs, job.repo_root,
                                                                       n, earlier), f"fix-{n}")
            summary = clip(printable(fixed.summary), COMMENT_CHARS)
            self.rounds[-1] = replace(self.rounds[-1], fixer_cost_usd=self.spend(fixed), fixer_summary=summary)
            work.report(EventKind.TASK_FIXED, {"round": n, "fixer": job.fixer.name, "ok": fixed.ok,
                                               "cost_usd": fixed.cost_usd, "summary": summary}, self.record())
            if not fixed.ok:
                return self.end(False, agent_error("fixer", job.fixer, fixed, n), fixed, job.fixer.name)
            commit, problem = work.capture()
            if problem or commit is None:
                return self.end(False, f"review round {n}: the fix: {problem}")
            self.commit, self.verify = commit, work.verify()
        raise AssertionError("unreachable: the last round returns")

    def review(self, n: int, earlier: Sequence[str]) -> tuple[Verdict, bool, float | None] | AgentResult:
        """One review, asked once more when the answer holds no readable verdict: (verdict, malformed,
        cost), or the reviewer's failed AgentResult."""
        diff = self.work.diff(self.commit)
        spent: list[float] = []
        answer = ""
        for retry in (False, True):
            prompt = review_prompt(self.job, diff, self.verify, n, earlier, retry)
            before = self.work.tree_state()
            result = self.work.run_role("reviewer", self.job.reviewer, prompt, f"review-{n}" + ("-retry" * retry))
            self.work.put_back(before)
            cost = self.spend(result)
            spent += [cost] if cost is not None else []
            if not result.ok:
                return result
            answer = result.summary
            verdict = parse_verdict(answer)
            if verdict is not None:
                return verdict, False, round(sum(spent), 6) if spent else None
        raw = clip(printable(answer), COMMENT_CHARS) or "(empty)"
        return (Verdict(False, (f"the reviewer's answer had no readable verdict (asked twice); it said: {raw}",)),
                True, round(sum(spent), 6) if spent else None)


def review_and_fix(work: Work, job: Job) -> Outcome:
    """Review rounds until approval or `max_rounds` reviews, a fix between each two. Only the reviewer's
    readable "approved" passes the task."""
    return _Loop(work, job).run()


def agent_error(role: str, profile: Profile, result: AgentResult, n: int) -> str:
    kind = result.error_kind or ErrorKind.UNKNOWN
    return f"review round {n}: {role} {profile.name}: {kind.value}: {clip(printable(result.error_message), 500)}"
