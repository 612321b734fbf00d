"""What an agent is told: its role's text first, then the project's constitution and spec, then the task.

The constitution and the spec are read once per run, from the run's base commit (what the agents' work
trees hold) or, when not committed there, from the working tree; each is capped in size. A role is
plait's built-in text or the project's `.plait/roles/NAME.md` (plait.roles).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from plait.agents.base import Profile
from plait.errors import Location, PlaitError
from plait.git.repo import Git
from plait.plan.load import LoadedPlan
from plait.plan.model import Plan, Task
from plait.roles import OVERRIDE_DIR, ROLES, role_text
from plait.text import clip

DEFAULT_ROLE = "software-engineer"
# Role names plans use that mean one of plait's roles (the model's own examples, and common words).
ROLE_ALIASES = {"implementer": DEFAULT_ROLE, "engineer": DEFAULT_ROLE, "developer": DEFAULT_ROLE,
                "tester": "sdet", "test-engineer": "sdet", "integrator": "integration-engineer",
                "security": "security-engineer"}
MAX_DOCUMENT_CHARS = 48_000  # each of the spec and the constitution, in every prompt
MAX_DOCUMENT_FILES = 50  # markdown files read from a constitution folder
_ROLE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


@dataclass(frozen=True)
class Documents:
    """The plan's spec and constitution as the agents read them ("" when the plan names none)."""

    spec: str = ""
    constitution: str = ""
    spec_path: str = ""
    constitution_path: str = ""


def role_for(role: str | None, repo_root: Path | None) -> str:
    """The role file a task's `role` opens its prompt with: the role itself when plait ships it or the
    project defines `.plait/roles/<role>.md`, else its alias, else software-engineer (a role such as
    `backend` still selects a profile of that name; see Plan.agent_for)."""
    if not role:
        return DEFAULT_ROLE
    if _ROLE_NAME.fullmatch(role) and (role in ROLES or (
            repo_root is not None and (repo_root / OVERRIDE_DIR / f"{role}.md").is_file())):
        return role
    return ROLE_ALIASES.get(role.lower(), DEFAULT_ROLE)


def role_prompt(name: str, repo_root: Path | None) -> str:
    return role_text(name, repo_root).strip()


# -- the plan's documents -------------------------------------------------------------------------------
def read_documents(plan: Plan, git: Git, base: str, repo_root: Path,
                   locate: Callable[[str], Location] | None = None) -> Documents:
    """The plan's spec and constitution; a PlaitError (at `locate(key)`) when one cannot be read."""
    texts: dict[str, str] = {}
    for key in ("spec", "constitution"):
        path = getattr(plan, key)
        if path is None:
            continue
        try:
            texts[key] = read_document(git, base, repo_root, path)
        except PlaitError as exc:
            raise PlaitError(f"{key} {path!r}: {exc.message}", exc.fix, locate(key) if locate else None) from None
    return Documents(texts.get("spec", ""), texts.get("constitution", ""), plan.spec or "", plan.constitution or "")


def read_document(git: Git, base: str, repo_root: Path, path: str) -> str:
    """A file, or a folder's markdown files, at `base` or else in the working tree; capped."""
    rel = _repo_relative(repo_root, path)
    text = _at_commit(git, base, rel)
    if text is None:
        text = _in_working_tree(repo_root / rel)
    if text is None:
        raise PlaitError(f"not found in commit {base[:12]} nor in the working tree",
                         "create and commit it, or correct the path in the plan (it is relative to the "
                         "repository root)")
    return clip(text, MAX_DOCUMENT_CHARS, f"the rest is in {path}")


def _repo_relative(repo_root: Path, path: str) -> str:
    full = os.path.normpath(os.path.join(repo_root, path))
    root = os.path.normpath(repo_root)
    if full != root and not full.startswith(root + os.sep):
        raise PlaitError("is outside the repository", "give a path inside the repository")
    return PurePosixPath(Path(os.path.relpath(full, root))).as_posix()


def _at_commit(git: Git, base: str, rel: str) -> str | None:
    spec = f"{base}:{'' if rel == '.' else rel}"
    kind = git.try_run("cat-file", "-t", spec)
    if not kind.ok:
        return None
    if kind.stdout.strip() == "blob":
        return git.run("cat-file", "blob", spec)
    names = [n for n in git.run("ls-tree", "-r", "-z", "--name-only", base, "--", rel).split("\0")
             if n.endswith(".md")]
    return _joined((n, git.run("cat-file", "blob", f"{base}:{n}")) for n in names[:MAX_DOCUMENT_FILES])


def _in_working_tree(path: Path) -> str | None:
    try:
        if path.is_file():
            return path.read_bytes()[: 4 * MAX_DOCUMENT_CHARS].decode("utf-8", "replace")
        if path.is_dir():
            files = sorted(p for p in path.rglob("*.md") if p.is_file())[:MAX_DOCUMENT_FILES]
            return _joined((p.relative_to(path).as_posix(), p.read_text("utf-8", "replace")) for p in files)
    except OSError as exc:
        raise PlaitError(f"cannot be read: {exc}", "make it readable") from None
    return None


def _joined(files: Any) -> str:
    return "\n\n".join(f"<!-- {name} -->\n{text.strip()}" for name, text in files)


# -- prompts --------------------------------------------------------------------------------------------
def fenced(text: str, lang: str = "") -> str:
    """`text` in a code fence longer than any backtick run inside it."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text.rstrip()}\n{fence}"


def document_sections(docs: Documents) -> list[str]:
    lines: list[str] = []
    if docs.constitution:
        lines += [f"# Constitution (`{docs.constitution_path}`): the project's rules; follow them", "",
                  docs.constitution.strip(), ""]
    if docs.spec:
        lines += [f"# Spec (`{docs.spec_path}`): what the whole feature is", "", docs.spec.strip(), ""]
    return lines


def task_sections(plan: Plan, task: Task) -> list[str]:
    """The task, its acceptance criteria, its declared scope and the contracts it must leave alone."""
    lines = [f"# Task {task.id}: {task.title}", "", task.prompt.strip(), ""]
    if task.acceptance:
        lines += ["## Acceptance criteria", *[f"- {a}" for a in task.acceptance], ""]
    if task.files:
        lines += ["## Scope", "Change only these paths (changes elsewhere are reported as deviations):",
                  *[f"- {f}" for f in task.files], ""]
    frozen = [c for c in plan.contracts if c.owner != task.id]
    if frozen:
        lines += ["## Frozen contracts (do not change)", *[f"- {c.path} (owned by {c.owner})" for c in frozen], ""]
    return lines


def opening(name: str, task_role: str | None, repo_root: Path | None) -> list[str]:
    lines = [role_prompt(name, repo_root), ""]
    if task_role and task_role != name:
        lines += [f"(The plan calls your role on this team `{task_role}`.)", ""]
    return lines


def build_prompt(plan: Plan, task: Task, dep_contexts: Mapping[str, Mapping[str, Any]],
                 docs: Documents | None = None, repo_root: Path | None = None) -> str:
    """The implementing agent's prompt: role, constitution, spec, task, its dependencies' summaries."""
    lines = opening(role_for(task.role, repo_root), task.role, repo_root)
    lines += document_sections(docs or Documents()) + task_sections(plan, task)
    if dep_contexts:
        lines += ["## What the tasks you build on did (their work is already in your worktree)"]
        lines += [f"- {dep}: {ctx.get('context_summary', '')}" for dep, ctx in dep_contexts.items()]
        lines.append("")
    lines += verification_section(plan, task)
    return "\n".join(lines)


def verification_section(plan: Plan, task: Task) -> list[str]:
    verify = plan.verify_for(task)
    if not verify:
        return []
    return ["## Verification", f"plait runs `{verify}` in this worktree when you finish; make it pass.", ""]


def fix_prompt(plan: Plan, task: Task, docs: Documents, repo_root: Path | None, review_round: int,
               comments: Sequence[str]) -> str:
    """The fixer's prompt: the task as the implementer had it, and the review comments to address."""
    lines = opening("fixer", None, repo_root) + document_sections(docs) + task_sections(plan, task)
    lines += [f"## Review comments to address (review round {review_round})",
              *[f"- {c}" for c in comments], ""]
    lines += verification_section(plan, task)
    return "\n".join(lines)


def check_at_start(loaded: LoadedPlan, git: Git, base: str, repo_root: Path, profiles: Mapping[str, Profile]) -> None:
    """What the agents will read, checked before the run is recorded: the plan's spec and constitution,
    every role file an agent of the run may get, and that each review has a reviewer that can answer."""
    plan = loaded.plan
    read_documents(plan, git, base, repo_root, loaded.locate)
    reviewed = plan.review_at_end or any(_reviewed(plan, t) for t in plan.tasks)
    at_integration = {"resolver", "integration-engineer"} if plan.integration.agents else set()
    for name in ({role_for(t.role, repo_root) for t in plan.tasks} | ({"reviewer", "fixer"} if reviewed else set())
                 | at_integration | ({"integration-verifier"} if "integration-verifier" in profiles else set())):
        role_text(name, repo_root)
    for i, task in enumerate(plan.tasks):
        reviewer = profiles.get("reviewer") or profiles.get(plan.agent_for(task, profiles))
        if _reviewed(plan, task) and reviewer is not None and reviewer.adapter == "script":
            where = loaded.locate("tasks", i, "review") if task.review else loaded.locate("defaults", "review")
            raise PlaitError(f"task {task.id} is reviewed, but its reviewer would be profile {reviewer.name!r}, "
                             "whose `script` agent cannot review",
                             "define [profiles.reviewer] in plait.toml with a model agent, or set `review: never`",
                             where)
    reviewer = profiles.get("reviewer") or profiles.get(plan.defaults.agent)
    if plan.review_at_end and reviewer is not None and reviewer.adapter == "script":
        at = next((n for n, t in enumerate(plan.tasks) if t.review == "end"), None)
        where = loaded.locate("tasks", at, "review") if at is not None else loaded.locate("defaults", "review")
        raise PlaitError(f"the integrated result is reviewed (`review: end`), but its reviewer would be profile "
                         f"{reviewer.name!r}, whose `script` agent cannot review",
                         "define [profiles.reviewer] in plait.toml with a model agent, or set `review: never`",
                         where)


def _reviewed(plan: Plan, task: Task) -> bool:
    return plan.reviewed(task) or plan.level_reviewed(task)
