"""`plait spec`: a feature request -> `specs/<id>-<slug>/spec.md`, written by the spec-writer role.

The spec must have every section of the template (seed 001). A draft that lacks some goes back to the
agent once with the list; if it still lacks them, it is kept as `spec.draft.md` and the user is told.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from plait.errors import Location, PlaitError
from plait.git.repo import Git
from plait.roles import role_text
from plait.workflow.agent import MakeAgent, Notify, RoleEnv, RoleJob, check_free, deliver, job_dir, run_role
from plait.workflow.context import choose_profile, context_sections, settings

ROLE = "spec-writer"
SECTIONS = ("Summary", "Requirements", "Architecture", "Test Plan", "Out of Scope", "Open Questions")
SPECS_DIR = "specs"
_HEADING = re.compile(r"^#{1,6}[ \t]+(?:\d+[.)]?[ \t]+)?(.+?)[ \t#]*$", re.MULTILINE)


@dataclass(frozen=True)
class WrittenSpec:
    path: Path  # in the user's checkout
    rel: str  # repository-relative
    rounds: int  # agent runs it took (1 or 2)
    evidence: Path  # .plait/workflow/<id>-<slug>/


def slug(request: str) -> str:
    """A few words of the request, for the spec's folder name: `add-user-login`."""
    words = re.findall(r"[a-z0-9]+", request.lower())[:6]
    return "-".join(words)[:40].strip("-") or "feature"


def missing_sections(text: str) -> list[str]:
    """The template's sections that no heading of `text` starts (`## 2. Test plan` counts)."""
    titles = [m.group(1).strip().lower() for m in _HEADING.finditer(text)]
    return [s for s in SECTIONS if not any(t.startswith(s.lower()) for t in titles)]


def prompt(role: str, request: str, rel: str, context: str) -> str:
    headings = ", ".join(f"`## {s}`" for s in SECTIONS)
    return "\n".join([
        role.strip(), "", "## Feature request", "", request.strip(), "",
        "## What to write", "",
        f"Write it to `{rel}` (relative to your working directory, the repository's root). Use these "
        f"headings, in this order: {headings}. Write no other file: only the spec is kept.", "",
        context,
    ])


def _retry(rel: str, missing: list[str]) -> str:
    return "\n".join([
        "", "## Your previous draft is incomplete", "",
        f"It has no {', '.join(missing)} section. Your draft is at `{rel}` in your working tree: complete it so "
        f"that it has every section ({', '.join(SECTIONS)}), each as a `##` heading.", ""])


def write_spec(git: Git, repo_root: Path, request: str, *, agent: str | None = None, force: bool = False,
               make_agent: MakeAgent | None = None, notify: Notify = lambda _line: None,
               role_env: RoleEnv | None = None) -> WrittenSpec:
    """Ask the spec writer for a spec of `request`; check its sections, retry once, deliver it."""
    conf = settings(repo_root)
    profile = choose_profile(repo_root, ROLE, agent, conf)
    folder = f"{SPECS_DIR}/{secrets.token_hex(3)}-{slug(request)}"
    rel = f"{folder}/spec.md"
    check_free(repo_root, rel, force)
    base = git.resolve_commit("HEAD")
    first = prompt(role_text(ROLE, repo_root), request, rel, context_sections(repo_root, git, base, conf))
    logs = job_dir(repo_root, Path(folder).name)
    notify(f"{ROLE} ({profile.name}) is writing {rel}; its logs go to {logs.relative_to(repo_root)}")
    draft: str | None = None
    missing = list(SECTIONS)
    for round_ in (1, 2):
        job = RoleJob(ROLE, profile, first if draft is None else first + _retry(rel, missing), (rel,),
                      logs / f"spec-{round_}", profile.timeout or conf.timeout, {rel: draft} if draft else {})
        run = run_role(git, repo_root, job, make_agent, notify, role_env)
        if run.ignored:
            notify(f"not copied (only the spec is kept): {', '.join(run.ignored)}")
        draft = run.outputs[rel] or draft
        missing = missing_sections(draft) if draft else list(SECTIONS)
        if not missing:
            assert draft is not None
            return WrittenSpec(deliver(repo_root, rel, draft, force), rel, round_, logs)
        if round_ == 1:
            notify(f"the spec has no {', '.join(missing)} section: asking the {ROLE} once more"
                   if draft else f"the {ROLE} wrote nothing at {rel}: asking once more")
    if draft is None:
        raise PlaitError(f"the {ROLE} agent ({profile.name}) wrote no spec at {rel}, twice",
                         f"see its logs in {logs}; try again, or another profile with --agent")
    saved = deliver(repo_root, f"{folder}/spec.draft.md", draft, force=True)
    raise PlaitError(f"the spec still has no {', '.join(missing)} section after a retry",
                     "add the sections and rename the draft to spec.md, or run `plait spec` again",
                     Location(str(saved)))
