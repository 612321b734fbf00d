"""Incremental re-runs: a new `plait run` takes an earlier run's verified work for every task whose inputs
are unchanged, so after a fix only the fixed task and what builds on it run again.

A task's input key is a sha256 over what its work depends on: its prompt, scope, verify command, agent,
role, script, acceptance criteria and review, its environment as declared (setup, teardown, copied files,
ports, caches: docs/environment.md; not the copied files' contents), the plan's contracts and documents, and
what it starts
from — the run's base commit for a task without dependencies, its dependencies' keys otherwise. A new
commit at the base, or any change upstream, changes the keys of everything downstream.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from plait import graph
from plait.agents.base import Profile
from plait.git.repo import Git
from plait.plan.model import Plan
from plait.run.context import RunPaths
from plait.run.prompts import Documents
from plait.state import EventKind, Store, TaskState

# What a reused task's row takes from the earlier run: its verified result, not its time or cost (this run
# spent neither).
CARRIED = ("verify_exit", "verify_seconds", "deviations_json", "incidents_json", "review_json")


def input_keys(plan: Plan, profiles: Mapping[str, Profile], base_sha: str, docs: Documents,
               rehearsal: bool, repo_root: Path) -> dict[str, str]:
    """Each task's input key (see the module's docstring)."""
    from plait.run import environment

    configured = environment.configured(repo_root)
    shared = {"contracts": [c.model_dump(mode="json") for c in plan.contracts], "spec": docs.spec,
              "constitution": docs.constitution, "rehearsal": rehearsal}
    keys: dict[str, str] = {}
    for tid in graph.topological_order({t.id: list(t.needs) for t in plan.tasks}):
        task = plan.task(tid)
        profile = profiles[plan.agent_for(task, profiles)]
        inputs: dict[str, Any] = {
            **shared, "title": task.title, "prompt": task.prompt, "files": task.files, "reads": task.reads,
            "verify": plan.verify_for(task), "agent": [profile.name, profile.adapter, profile.model],
            "role": task.role, "script": task.script.model_dump(mode="json") if task.script else None,
            "acceptance": task.acceptance, "review": [task.review or plan.defaults.review, plan.max_rounds_for(task)],
            "starts_from": {d: keys[d] for d in sorted(task.needs)} if task.needs else base_sha,
            "environment": environment.resolve([task, plan.defaults, configured]).model_dump(mode="json"),
        }
        keys[tid] = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
    return keys


def reuse_verified(git: Git, store: Store, paths: RunPaths, plan: Plan) -> dict[str, str]:
    """Mark done, in the new run `paths.run_id`, every task an earlier run verified with the same input key;
    returns task -> the run whose work it took. In dependency order, and only on top of reused
    dependencies: a task whose dependency runs again runs again too."""
    keys = {row["task_id"]: row["input_key"] for row in store.tasks(paths.run_id)}
    commits: dict[str, str] = {}
    origins: dict[str, str] = {}
    for tid in graph.topological_order({t.id: list(t.needs) for t in plan.tasks}):
        needs = plan.task(tid).needs
        if not keys.get(tid) or any(d not in commits for d in needs):
            continue
        found = _earlier(git, store, keys[tid], [commits[d] for d in needs])
        if found is None:
            continue
        origin = found["reused_from"] or found["run_id"]  # where the work was done, through earlier reuses
        branch = paths.branch(tid)
        git.update_ref(f"refs/heads/{branch}", found["commit_sha"], None)  # keeps the commit alive, too
        _copy_evidence(_evidence_dir(found), paths.task_dir(tid), origin)
        store.emit(paths.run_id, EventKind.TASK_REUSED, tid,
                   {"from_run": origin, "commit": found["commit_sha"]},
                   task={"state": TaskState.DONE, "commit_sha": found["commit_sha"], "branch": branch,
                         "reused_from": origin, **{k: found[k] for k in CARRIED}})
        commits[tid], origins[tid] = found["commit_sha"], origin
    return origins


def _earlier(git: Git, store: Store, key: str, dep_commits: list[str]) -> dict[str, Any] | None:
    """The newest verified task with this key whose branch still holds its commit (a deleted branch lets
    `git gc` take the work: it runs again), built on the dependencies' commits, with its evidence."""
    for row in store.verified_with_key(key):
        if git.rev_parse(f"refs/heads/{row['branch']}") != row["commit_sha"]:
            continue
        if not (_evidence_dir(row) / "results.json").is_file():
            continue
        if all(git.is_ancestor(dep, row["commit_sha"]) for dep in dep_commits):
            return row
    return None


def _evidence_dir(row: Mapping[str, Any]) -> Path:
    """The task's evidence in the earlier run (whose checkout may be another worktree; its workspaces, which
    RunPaths also knows, do not matter here)."""
    return RunPaths(Path(row["repo_root"]), row["run_id"], Path()).task_dir(row["task_id"])


def _copy_evidence(source: Path, target: Path, origin: str) -> None:
    """The earlier run's evidence files (not its logs: they stay there), so reports, the integration and
    dependents' prompts read this task as verified; EVIDENCE.md says where the work was done."""
    target.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        if item.is_file():
            shutil.copyfile(item, target / item.name)
    evidence = target / "EVIDENCE.md"
    note = f"**Reused from run `{origin}`**: its inputs are unchanged, so this run took its verified work."
    if evidence.is_file() and note not in (text := evidence.read_text()):  # reused before: it says so already
        title, _, rest = text.partition("\n")
        evidence.write_text(f"{title}\n\n{note}\n{rest}")


def describe(reused: Mapping[str, str], total: int) -> str | None:
    """One line for the run's console: what was reused, from which run(s), and how many tasks will run."""
    if not reused:
        return None
    runs = ", ".join(sorted(set(reused.values())))
    return (f"reused {len(reused)} verified task(s) from run {runs}: {', '.join(reused)}; "
            f"running {total - len(reused)}")
