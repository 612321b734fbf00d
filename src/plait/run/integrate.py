"""Weave verified task branches into `plait/<run>/integration` in dependency order, run the plan's
full test command on the result, deliver, and write INTEGRATION-REPORT.md."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from plait.evidence import VerifyResult, read_json
from plait.git import merge, stack, workspace
from plait.redact import redact_files, write_text
from plait.run.task import RunContext, confinement, run_verify, verify_environment, workspace_env
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


def integrate(ctx: RunContext, commits: Mapping[str, str], order: list[str], deliver: str,
              emit: Emit, cancel: threading.Event) -> IntegrationResult:
    """Merge, test and deliver. Setting `cancel` stops the integration test; nothing is delivered then."""
    git, paths, plan = ctx.git, ctx.paths, ctx.plan
    branch = f"plait/{paths.run_id}/integration"
    heads = [(paths.branch(t), commits[t]) for t in order]
    emit(EventKind.INTEGRATION_STARTED, None, {"branch": branch, "order": order})
    merged = merge.merge_commits(git, ctx.base_sha, heads, f"[plait {paths.run_id}] integrate")
    result = IntegrationResult(ok=False)
    if merged.conflict is not None:
        result.conflict = str(merged.conflict)
        emit(EventKind.INTEGRATION_CONFLICT, None, {"conflict": result.conflict})
    else:
        result.commit = merged.commit
        result.merged = list(order)
        ref = f"refs/heads/{branch}"
        git.update_ref(ref, merged.commit, git.rev_parse(ref))
        ws = workspace.create(git, paths.integration_folder / "a1", paths.integration_folder / "home",
                              merged.commit, branch)
        log_dir = paths.run_dir / "integration"
        log_dir.mkdir(parents=True, exist_ok=True)
        # The full test suite runs the agents' code: confined like them (the plan's default profile).
        confine = confinement(ctx, ctx.profiles.get(plan.defaults.agent), ws, agent=False)
        result.verify = run_verify(plan.integration.verify, ws.tree, log_dir, plan.defaults.timeout,
                                   cancel, workspace_env(ctx.verify_env or verify_environment(), ws,
                                                                    home=False), confine)
        if result.verify.ok:
            workspace.remove(paths.integration_folder)
        emit(EventKind.INTEGRATION_VERIFIED, None, {"command": result.verify.command, "ok": result.verify.ok,
                                            "exit_code": result.verify.exit_code, "seconds": result.verify.seconds})
        redact_files(log_dir)
        result.ok = result.verify.ok and not cancel.is_set()
        if result.ok:
            result.delivered = deliver_branches(ctx, commits, order, deliver, branch, merged.commit)
            emit(EventKind.DELIVERED, None, {"mode": deliver, "branches": result.delivered})
    write_report(ctx, result, commits, order, deliver)
    return result


def deliver_branches(ctx: RunContext, commits: Mapping[str, str], order: list[str], mode: str, branch: str,
                     commit: str) -> dict[str, str]:
    if mode != "stack":
        return {branch: commit}
    entries = [(t, commits[t], list(ctx.plan.task(t).needs)) for t in order]
    return stack.restack(ctx.git, ctx.base_sha, entries, f"refs/heads/plait/{ctx.paths.run_id}/stack/")


def write_report(ctx: RunContext, result: IntegrationResult, commits: Mapping[str, str], order: list[str],
                 deliver: str) -> None:
    paths, plan = ctx.paths, ctx.plan
    lines = [f"# Integration report — run {paths.run_id}: {plan.name}", "",
             f"**Result: {'PASSED' if result.ok else 'FAILED'}**", ""]
    lines += [f"Base `{ctx.base_sha[:12]}`; integration branch `plait/{paths.run_id}/integration`"
              + (f" at `{result.commit[:12]}`" if result.commit else "") + ".", ""]
    lines += ["## Merged (in dependency order)", ""]
    lines += [f"- `{t}` (`{commits[t][:12]}`)" for t in result.merged] or ["(nothing merged)"]
    if result.conflict:
        lines += ["", "## Conflict", "", result.conflict]
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

