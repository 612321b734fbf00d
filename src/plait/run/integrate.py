"""Weave verified task branches into `plait/<run>/integration` in dependency order (a resolver agent on
each conflict), run the plan's full test command on the result (an integration engineer when it fails),
review it (`review: end`), deliver, and write INTEGRATION-REPORT.md."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from plait.evidence import ReviewRecord, VerifyResult, read_json
from plait.git import merge, stack, workspace
from plait.redact import redact_files, write_text
from plait.run import concerns, resolve
from plait.run.task import RunContext, spares
from plait.state import EventKind

Emit = Callable[..., Any]


@dataclass
class IntegrationResult:
    ok: bool
    commit: str | None = None
    merged: list[str] = field(default_factory=list)
    conflict: str | None = None
    verify: VerifyResult | None = None
    delivered: dict[str, str] = field(default_factory=dict)
    mends: list[resolve.Mend] = field(default_factory=list)  # conflicts resolved, the integration test repaired
    review: ReviewRecord | None = None  # `review: end`
    concerns: list[dict[str, Any]] | None = None  # as the integration verifier marked them (None: it did not run)
    error: str = ""  # why it failed, in one line


def integrate(ctx: RunContext, commits: Mapping[str, str], order: list[str], deliver: str,
              emit: Emit, cancel: threading.Event, weave: Weave | None = None) -> IntegrationResult:
    """Merge (a resolver on each conflict), test (an integration engineer when it fails), review (`end`),
    deliver. Setting `cancel` stops the agents and the integration test; nothing is delivered then. `weave`:
    the merge the run built as tasks finished (same order, same result), continued here."""
    git, paths, plan = ctx.git, ctx.paths, ctx.plan
    branch = f"plait/{paths.run_id}/integration"
    emit(EventKind.INTEGRATION_STARTED, None, {"branch": branch, "order": order})
    result = IntegrationResult(ok=False)
    current = merge_all(ctx, commits, order, emit, cancel, result, weave)
    if current is not None:
        result.commit = current
        ref = f"refs/heads/{branch}"
        git.update_ref(ref, current, git.rev_parse(ref))
        bench = resolve.Bench(ctx, "test", current, cancel, emit)
        result.verify = bench.verify()
        emit_verified(emit, result.verify)
        if not result.verify.ok and result.verify.command and plan.integration.agents and not cancel.is_set():
            mend, result.verify = resolve.repair(bench, result.verify, commits, order, emit)
            result.mends.append(mend)
            if mend.ok and mend.commit:
                git.update_ref(ref, mend.commit, git.rev_parse(ref))
                result.commit = mend.commit
                emit_verified(emit, result.verify)
        result.ok = result.verify.ok and not cancel.is_set()
        if not result.verify.ok:
            result.error = ("the integration test failed" + (f" and the integration engineer could not repair it "
                                                            f"({result.mends[-1].error})" if result.mends and
                                                            result.mends[-1].kind == "integration-test" else ""))
        if "integration-verifier" in ctx.profiles and not cancel.is_set():
            found = concerns.concerns({t: resolve.context_of(ctx, t) for t in order},
                                      [(c.path, c.owner) for c in plan.contracts])
            result.concerns = resolve.check_concerns(bench, found) if found else None
        if result.ok and plan.review_at_end:
            outcome = resolve.end_review(bench, result.verify, order)
            result.review, result.verify = outcome.record, outcome.verify
            result.ok = outcome.approved and not cancel.is_set()
            result.error = "" if outcome.approved else f"end review: {outcome.error}"
            if outcome.commit != result.commit:
                git.update_ref(ref, outcome.commit, git.rev_parse(ref))
                result.commit = outcome.commit
        if result.ok:  # the test's work tree stays for the repository's next workspaces
            workspace.park(bench.ws, spares(paths))
            workspace.remove(paths.integration_folder)
            result.delivered = deliver_branches(ctx, commits, order, deliver, branch, result)
            emit(EventKind.DELIVERED, None, {"mode": deliver, "branches": result.delivered})
        redact_files(paths.run_dir / "integration")
    write_report(ctx, result, commits, order, deliver)
    return result


class Weave:
    """The integration's merge, built while the run goes on: every task's commit merged on the base in
    `order`, as far as the tasks finished so far allow (the next in order not finished yet waits), so at the
    run's end only what finished last is left to merge. A conflict stops it there: the integration's resolver
    takes over (`merge_all`). Same order, same merges, same commits as merging everything at the end."""

    def __init__(self, ctx: RunContext, order: list[str], merges: merge.Merges | None = None) -> None:
        self.ctx, self.order = ctx, order
        self.message = f"[plait {ctx.paths.run_id}] integrate"
        self.merges = merges if merges is not None else merge.Merges()  # shared with the conflict radar
        self.chain = merge.Chain(ctx.git, ctx.base_sha, self.message, self.merges)
        self.next = 0  # order[next] is the next to merge
        self.merged: list[str] = []  # what the integration report lists, in merge order
        self.conflict: merge.Conflict | None = None
        self.needs = {t.id: t.needs for t in ctx.plan.tasks}

    def advance(self, commits: Mapping[str, str]) -> merge.Conflict | None:
        """Merge every task in order whose commit `commits` holds, up to the first that is missing or conflicts."""
        while self.conflict is None and self.next < len(self.order) and self.order[self.next] in commits:
            tid = self.order[self.next]
            needs = self.needs[tid]  # what its work was built on, merged before it
            starts = [commits[d] for d in needs if d in commits] if needs else [self.ctx.base_sha]
            self.conflict = self.chain.add(self.ctx.paths.branch(tid), commits[tid], starts)
            if self.conflict is None:
                self.merged.append(tid)
                self.next += 1
        return self.conflict

    def resolved(self, commit: str, name: str) -> None:
        """A resolver merged the conflicting task: go on from its commit."""
        self.chain = merge.Chain(self.ctx.git, commit, self.message, self.merges)
        self.merged.append(name)
        self.conflict = None
        self.next += 1


def merge_all(ctx: RunContext, commits: Mapping[str, str], order: list[str], emit: Emit, cancel: threading.Event,
              result: IntegrationResult, weave: Weave | None = None) -> str | None:
    """Every task's commit merged on the base in `order` (continuing `weave`, what the run merged as tasks
    finished), a resolver on each conflict: the merge, or None when a conflict stays (`result.conflict` says
    which)."""
    weave = weave or Weave(ctx, order)
    while True:
        conflict = weave.advance(commits)
        result.merged = list(weave.merged)
        if conflict is None:
            return weave.chain.commit
        emit(EventKind.INTEGRATION_CONFLICT, None, {"conflict": str(conflict), "task": conflict.name.rsplit("/", 1)[-1],
                                                    "files": list(conflict.files)})
        if not ctx.plan.integration.agents or cancel.is_set():
            result.conflict = str(conflict)
            result.error = f"integration conflict: {conflict}"
            return None
        mend = resolve.resolve_conflict(ctx, weave.chain.commit, conflict, commits, emit, cancel)
        result.mends.append(mend)
        if not mend.ok or mend.commit is None:
            result.conflict = str(conflict)
            result.error = f"integration conflict not resolved: {conflict}; the resolver: {mend.error}"
            return None
        weave.resolved(mend.commit, mend.task or conflict.name)


def emit_verified(emit: Emit, v: VerifyResult) -> None:
    emit(EventKind.INTEGRATION_VERIFIED, None, {"command": v.command, "ok": v.ok, "exit_code": v.exit_code,
                                                "seconds": v.seconds})


def deliver_branches(ctx: RunContext, commits: Mapping[str, str], order: list[str], mode: str, branch: str,
                     result: IntegrationResult) -> dict[str, str]:
    assert result.commit is not None
    if mode != "stack":
        return {branch: result.commit}
    entries = [(t, commits[t], list(ctx.plan.task(t).needs)) for t in order]
    stacked = stack.restack(ctx.git, ctx.base_sha, entries, f"refs/heads/plait/{ctx.paths.run_id}/stack/")
    # What agents changed at integration is in no task's branch: the integration branch carries it.
    return {**stacked, branch: result.commit} if result.mends or result.review else stacked


def write_report(ctx: RunContext, result: IntegrationResult, commits: Mapping[str, str], order: list[str],
                 deliver: str) -> None:
    paths, plan = ctx.paths, ctx.plan
    lines = [f"# Integration report — run {paths.run_id}: {plan.name}", "",
             f"**Result: {'PASSED' if result.ok else 'FAILED'}**", ""]
    lines += [f"Base `{ctx.base_sha[:12]}`; integration branch `plait/{paths.run_id}/integration`"
              + (f" at `{result.commit[:12]}`" if result.commit else "") + ".", ""]
    lines += ["## Merged (in dependency order)", ""]
    lines += [f"- `{t}` (`{commits[t][:12]}`)" for t in result.merged] or ["(nothing merged)"]
    if result.error:
        lines += ["", f"Why: {result.error}"]
    if result.conflict:
        lines += ["", "## Conflict", "", result.conflict]
    changed_by_agents = [m for m in result.mends if m.ok]
    if changed_by_agents:
        lines += ["", "> **Agents changed the merged result** (below): review their changes like any other work."]
    for mend in result.mends:
        lines += mend_section(mend)
    if result.review is not None:
        r = result.review
        lines += ["", "## End review", "", f"Reviewer `{r.reviewer}`, fixer `{r.fixer}`: "
                  f"{'approved' if r.approved else 'NOT approved'} after {len(r.rounds)} round(s) of {r.max_rounds}."]
        lines += [f"- round {x.round}: {x.verdict}" + "".join(f"\n  - {c}" for c in x.comments) for x in r.rounds]
    lines += ["", "## Integration test", ""]
    v = result.verify
    if v is None:
        lines.append("Not run (the merge did not complete).")
    elif v.command is None:
        lines.append("The plan has no `integration.verify` command: the integrated tree was not tested.")
    else:
        lines += [f"`{v.command}` — exit {v.exit_code} in {v.seconds:.1f}s", "", "```", v.output_tail.strip(), "```"]
    lines += ["", "## Tasks", "", "| task | verify | files | deviations | summary |", "|---|---|---|---|---|"]
    for t in order:
        folder = paths.task_dir(t)
        res = read_json(folder / "results.json")
        ctxdoc = read_json(folder / "context.json")
        verify = res.get("verify") or {}
        vtext = "none" if not verify.get("command") else ("pass" if verify.get("exit_code") == 0 else "FAIL")
        lines.append(f"| {t} | {vtext} | {len(res.get('files_changed', []))} | "
                     f"{', '.join(res.get('deviations', [])) or '—'} | {ctxdoc.get('context_summary', '')[:120]} |")
    if result.delivered:
        lines += ["", f"## Delivered ({deliver})", ""] + [f"- `{b}` at `{s[:12]}`" for b, s in result.delivered.items()]
    write_text(paths.run_dir / "INTEGRATION-REPORT.md", "\n".join(lines) + "\n")


def mend_section(mend: resolve.Mend) -> list[str]:
    """What a resolver or the integration engineer was asked, did, and how the tests judged it."""
    outcome = "accepted" if mend.ok else f"NOT accepted: {mend.error}"
    if mend.kind == "conflict":
        others = ", ".join(f"`{p}`" for p in mend.partners) or "the work merged before it"
        lines = ["", f"## Conflict: `{mend.task}` with {others} — resolver `{mend.profile}`, {outcome}", "",
                 "Conflicted files: " + ", ".join(f"`{f}`" for f in mend.files)]
    else:
        lines = ["", f"## Integration test repaired by the integration engineer `{mend.profile}` — {outcome}", ""]
    if mend.changed:
        lines.append("Files the agent changed: " + ", ".join(f"`{f}`" for f in mend.changed))
    if mend.test_files:
        lines.append("**It changed test files**: " + ", ".join(f"`{f}`" for f in mend.test_files)
                     + " — check that no test was weakened.")
    cost = resolve.total([r.cost_usd for r in mend.rounds])
    if cost is not None:
        lines.append(f"Cost: ${cost:.4f}")
    for r in mend.rounds:
        verdict = "accepted" if r.ok else f"not accepted: {r.problem.splitlines()[0] if r.problem else '?'}"
        lines += ["", f"### Round {r.round} ({r.seconds:.1f}s): {verdict}", "", r.summary.strip() or "(no summary)"]
    return lines

