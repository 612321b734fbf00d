"""`plait plan`: a spec -> `plan.yaml` beside it, written by the planner role.

The plan must load and validate (plait.plan.load) and name only profiles that exist. Until it does, the
error lines go back to the planner with its previous text, for a bounded number of rounds. A valid plan
is delivered with its `plait check --json` analysis beside it (`check.json`); after the last round the
draft is kept as `plan.draft.yaml` and its errors as `plan.errors.txt`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from plait.errors import Location, PlaitError
from plait.git.repo import Git
from plait.plan.analyze import Analysis, analyze
from plait.plan.load import LoadedPlan, load_plan
from plait.plan.model import json_schema
from plait.plan.validate import Diagnostic, PlanError
from plait.roles import role_text
from plait.text import clip
from plait.workflow.agent import MakeAgent, Notify, RoleEnv, RoleJob, check_free, deliver, job_dir, run_role
from plait.workflow.context import Settings, choose_profile, context_sections, settings

ROLE = "planner"
MAX_SPEC_CHARS = 100_000
EXAMPLE = """plait: 1
name: user login
spec: {spec}
defaults: {{agent: {agent}, verify: "pytest -q"}}
contracts:
  - {{path: src/app/auth/api.py, owner: auth-api}}
tasks:
  - id: auth-api
    title: Login endpoint
    prompt: Add POST /login as the spec's Architecture describes.
    files: [src/app/auth/api.py, src/app/auth/service.py]
    size: M
    acceptance: [POST /login with good credentials returns a token]
  - id: auth-tests
    title: Login tests from the spec
    role: sdet
    prompt: Write the tests of the spec's Test Plan for login.
    files: [tests/test_login.py]
    size: S
  - id: login-ui
    title: Login form
    needs: [auth-api]
    prompt: Add the login form calling POST /login.
    files: [web/login.html]
    size: S
"""


@dataclass(frozen=True)
class WrittenPlan:
    path: Path
    loaded: LoadedPlan
    analysis: Analysis
    check_json: Path
    rounds: int  # agent runs it took


def locate_spec(repo_root: Path, spec: Path) -> str:
    """The spec's repository-relative path (a folder means its spec.md); it must be inside the repository,
    since the plan is written beside it."""
    spec = spec / "spec.md" if spec.is_dir() else spec
    if not spec.is_file():
        raise PlaitError(f"{spec}: no such spec file", "give the path of a spec.md (`plait spec` writes one)")
    resolved, root = spec.resolve(), repo_root.resolve()
    if not resolved.is_relative_to(root):
        raise PlaitError("the spec is outside the repository", "move it into the repository: the plan is written "
                         "beside it", Location(str(spec)))
    return resolved.relative_to(root).as_posix()


def prompt(role: str, spec_rel: str, spec_text: str, rel: str, profiles: Collection[str], builder: str,
           context: str) -> str:
    schema = json.dumps(json_schema(), indent=1)
    return "\n".join([
        role.strip(), "", f"## The spec (`{spec_rel}`)", "", clip(spec_text, MAX_SPEC_CHARS, f"see {spec_rel}"), "",
        "## What to write", "",
        f"Write the plan as YAML to `{rel}` (relative to your working directory, the repository's root); write no "
        "other file. It must validate against the JSON Schema below (`plait schema`) and pass `plait check`. "
        f"Set `spec: {spec_rel}`. `defaults.agent` is the agent profile that builds the tasks: use `{builder}` "
        f"unless a task needs another; the profiles that exist are {', '.join(sorted(profiles))}. "
        "Paths are relative to the repository's root. A small example of the shape:", "",
        "```yaml", EXAMPLE.format(spec=spec_rel, agent=builder).rstrip(), "```", "",
        "### JSON Schema of the plan format", "", "```json", schema, "```", "",
        context,
    ])


def _repair(round_: int, rounds: int, rel: str, previous: str | None, errors: list[str]) -> str:
    lines = ["", f"## Round {round_} of {rounds}: your previous plan is not valid yet", ""]
    if previous is not None:
        lines += [f"It is in your working tree at `{rel}`; this is what it says:", "", "```yaml",
                  previous.rstrip(), "```", ""]
    lines += ["Fix every one of these errors and write the whole plan again:", *[f"- {e}" for e in errors], ""]
    return "\n".join(lines)


def problems(repo_root: Path, profiles: Collection[str], scratch: Path, rel: str) -> tuple[LoadedPlan | None,
                                                                                         list[str]]:
    """Load the draft at `scratch`: the plan, or every error line, located as `rel:line:col`."""
    def here(d: Diagnostic) -> str:
        where = d.location
        return str(dataclasses.replace(d, location=Location(rel, where.line, where.column))
                   if where.path == str(scratch) else d)

    try:
        lp = load_plan(scratch, root=repo_root)
    except PlanError as exc:
        return None, [here(d) for d in exc.diagnostics]
    except PlaitError as exc:
        return None, [str(exc).replace(str(scratch), rel)]
    unknown = []
    for i, task in enumerate(lp.plan.tasks):
        name = lp.plan.agent_for(task, profiles)
        if name not in profiles:
            where = lp.locate("tasks", i, "agent") if task.agent else lp.locate("defaults", "agent")
            unknown.append(here(Diagnostic("error", f"task {task.id}: unknown agent profile {name!r}",
                                           f"use one of {', '.join(sorted(profiles))}", where)))
    return (None, unknown) if unknown else (lp, [])


def write_plan(git: Git, repo_root: Path, spec: Path, *, agent: str | None = None, rounds: int = 3,
               force: bool = False, make_agent: MakeAgent | None = None,
               notify: Notify = lambda _line: None, role_env: RoleEnv | None = None) -> WrittenPlan:
    """Ask the planner for a plan of `spec` and repair it until it validates (at most `rounds` runs)."""
    from plait.profiles import load_profiles

    conf = settings(repo_root)
    profile = choose_profile(repo_root, ROLE, agent, conf)
    spec_rel = locate_spec(repo_root, spec)
    folder = spec_rel.rpartition("/")[0]
    rel, check_rel = _beside(folder, "plan.yaml"), _beside(folder, "check.json")
    for out in (rel, check_rel):
        check_free(repo_root, out, force)
    spec_text = (repo_root / spec_rel).read_text(encoding="utf-8", errors="replace")
    profiles = load_profiles(repo_root)
    first = prompt(role_text(ROLE, repo_root), spec_rel, spec_text, rel, profiles, _builder(conf, profile.name),
                   context_sections(repo_root, git, git.resolve_commit("HEAD"), conf))
    logs = job_dir(repo_root, Path(folder).name or "plan")
    notify(f"{ROLE} ({profile.name}) is writing {rel}; its logs go to {logs.relative_to(repo_root)}")
    text: str | None = None
    errors: list[str] = []
    for round_ in range(1, rounds + 1):
        log_dir = logs / f"plan-{round_}"
        inputs = {spec_rel: spec_text, **({rel: text} if text is not None else {})}
        job = RoleJob(ROLE, profile, first if round_ == 1 else first + _repair(round_, rounds, rel, text, errors),
                      (rel,), log_dir, profile.timeout or conf.timeout, inputs)
        run = run_role(git, repo_root, job, make_agent, notify, role_env)
        if run.ignored:
            notify(f"not copied (only the plan is kept): {', '.join(run.ignored)}")
        written = run.outputs[rel]
        if written is None:
            errors = [f"{rel}: the plan file was not written — write the whole plan to {rel}"]
            loaded = None
        else:
            text = written
            (log_dir / "plan.yaml").write_text(text, encoding="utf-8")
            loaded, errors = problems(repo_root, profiles, log_dir / "plan.yaml", rel)
        (log_dir / "errors.txt").write_text("".join(f"{e}\n" for e in errors), encoding="utf-8")
        if loaded is not None and text is not None:
            return _deliver(repo_root, rel, check_rel, text, force, round_)
        notify(f"round {round_} of {rounds}: {len(errors)} error(s), the first: {errors[0]}"
               + (f"; asking the {ROLE} to fix them" if round_ < rounds else ""))
    return _give_up(repo_root, folder, rel, text, errors, rounds)


def _beside(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def _builder(conf: Settings, planner: str) -> str:
    """The profile a generated plan's tasks default to."""
    return conf.roles.get("software-engineer", planner)


def _deliver(repo_root: Path, rel: str, check_rel: str, text: str, force: bool, rounds: int) -> WrittenPlan:
    from plait.commands.check import _json as check_document  # the `plait check --json` document

    path = deliver(repo_root, rel, text, force)
    loaded = load_plan(path, root=repo_root)
    analysis = analyze(loaded.plan, None)
    doc = json.dumps(check_document(loaded, analysis, None), indent=2) + "\n"
    return WrittenPlan(path, loaded, analysis, deliver(repo_root, check_rel, doc, force), rounds)


def _give_up(repo_root: Path, folder: str, rel: str, text: str | None, errors: list[str], rounds: int) -> NoReturn:
    draft_rel, errors_rel = _beside(folder, "plan.draft.yaml"), _beside(folder, "plan.errors.txt")
    shown = [e.replace(rel, draft_rel, 1) if e.startswith(rel) else e for e in errors]
    saved = deliver(repo_root, errors_rel, "".join(f"{e}\n" for e in shown), force=True)
    if text is not None:
        saved = deliver(repo_root, draft_rel, text, force=True)
    raise PlaitError(f"no valid plan after {rounds} round(s): {len(errors)} error(s) left, listed in "
                     f"{errors_rel}", "fix the draft and `plait check` it, or run `plait plan` again "
                     "with more --rounds", Location(str(saved)))
