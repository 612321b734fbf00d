"""The Python API: what the CLI (and the MCP server) call. One function per verb."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Only what `status`, `runs` and `cancel` need is imported here: they answer in milliseconds while a run is
# live (docs/benchmarks.md). Running a plan needs the plan model (pydantic), the agents and the engine, each
# imported by the verbs that use them.
from plait import report
from plait import status as plait_status
from plait.errors import PlaitError
from plait.git.repo import Git
from plait.redact import redact_files
from plait.run import liveness
from plait.state import EventKind, Store, TaskState, db_path

if TYPE_CHECKING:
    from plait import html_report
    from plait.agents.base import Agent, Profile
    from plait.clock import Clock
    from plait.git import land as git_land
    from plait.plan.load import LoadedPlan
    from plait.plan.model import Plan
    from plait.run.engine import Listener, RunOptions
    from plait.run.task import RunContext, RunPaths
    from plait.workflow.plan import WrittenPlan
    from plait.workflow.spec import WrittenSpec

TaskEnv = Callable[[str], dict[str, str]]



@dataclass(frozen=True)
class Repo:
    git: Git
    root: Path
    store: Store


def open_repo(cwd: Path | None = None) -> Repo:
    git = Git.discover(cwd or Path.cwd())
    return Repo(git, git.root, Store(db_path(git.common_dir)))


def _reading_repo(cwd: Path | None = None) -> Repo:
    """`open_repo` for the verbs that only read the state (`status`): found without running git."""
    git = Git.find(cwd or Path.cwd())
    return Repo(git, git.root, Store(db_path(git.common_dir)))


def _ensure_plait_dir(root: Path) -> None:
    folder = root / ".plait"
    folder.mkdir(exist_ok=True)
    ignore = folder / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# plait's evidence and reports; never committed\n*\n")


def _profiles(root: Path) -> dict[str, Profile]:
    from plait.profiles import load_profiles

    return load_profiles(root)


def _make_agent(profile: Profile) -> Agent:
    from plait.agents.registry import make_agent

    return make_agent(profile)


def _agent_env(profile: Profile, task_id: str) -> dict[str, str]:
    from plait.profiles import env_for

    return env_for(profile, os.environ)


def plan_profiles(repo: Repo, plan: Plan, loaded: LoadedPlan | None = None) -> dict[str, Profile]:
    """The repository's profiles, after checking that every task's profile exists."""
    profiles = _profiles(repo.root)
    for i, task in enumerate(plan.tasks):
        name = plan.agent_for(task, profiles)
        if name not in profiles:
            where = None
            if loaded is not None:
                where = loaded.locate("tasks", i, "agent") if task.agent else loaded.locate("defaults", "agent")
            raise PlaitError(f"task {task.id}: unknown agent profile {name!r}",
                             f"define [profiles.{name}] in plait.toml or use one of {', '.join(sorted(profiles))}",
                             where)
    return profiles


def evidence_dir(repo: Repo, run_id: str) -> Path:
    """The run's folder in `.plait/` (`run_paths(...).run_dir`, without reading the workspace settings)."""
    return repo.root / ".plait" / "runs" / run_id


def run_paths(repo: Repo, run_id: str) -> RunPaths:
    """Where a run's evidence (in `.plait/`) and its workspaces (outside the checkout by default) live."""
    from plait.run.task import RunPaths

    return RunPaths(repo.root, run_id, _workspaces(repo) / run_id)


def _workspaces(repo: Repo) -> Path:
    """The repository's folder of workspaces: its runs' folders, and the work trees kept for its next run."""
    from plait.git import workspace
    from plait.profiles import workspace_root

    return workspace.repo_folder(workspace_root(repo.root, os.environ) or workspace.default_root(), repo.git)


def sandbox_warning(repo: Repo, plan: Plan) -> str | None:
    """One line when agents will run without write confinement; a user error when a profile demands it."""
    from plait.agents.base import SandboxMode
    from plait.sandbox import support

    found = support()
    if found.landlock_abi is not None:
        return None
    profiles = plan_profiles(repo, plan)
    used = {profiles[plan.agent_for(t, profiles)] for t in plan.tasks}
    strict = sorted(p.name for p in used if p.sandbox is SandboxMode.LANDLOCK)
    if strict:
        raise PlaitError(f"profile {strict[0]} asks for sandbox = \"landlock\", but {found.landlock_reason}",
                         "run on Linux 5.13 or newer with Landlock enabled, or set sandbox = \"auto\"")
    if all(p.sandbox is SandboxMode.OFF for p in used):
        return None
    return (f"agents' writes are NOT confined on this machine ({found.landlock_reason}); "
            "they can write wherever you can (see docs/security.md)")


def run_sandbox_warning(repo: Repo, run_id: str) -> str | None:
    """`sandbox_warning` for a recorded run."""
    from plait.plan.model import Plan

    return sandbox_warning(repo, Plan.model_validate_json(_run_row(repo, run_id)["plan_json"]))


def _protected(repo: Repo, plan_path: str) -> tuple[str, ...]:
    """Repository paths of the run's plan and plait's config: a task deleting them fails."""
    plan = Path(plan_path).resolve()
    inside = plan.is_relative_to(repo.root.resolve())
    return ("plait.toml", plan.relative_to(repo.root.resolve()).as_posix()) if inside else ("plait.toml",)


def _context(repo: Repo, plan: Plan, run_id: str, base_sha: str, plan_path: str,
             task_env: TaskEnv | None = None, rehearsal: bool = False) -> RunContext:
    from plait.run.prompts import read_documents
    from plait.run.task import RunContext, verify_environment
    from plait.sandbox import support

    profiles = plan_profiles(repo, plan)
    return RunContext(plan=plan, git=repo.git, paths=run_paths(repo, run_id), base_sha=base_sha,
                      profiles=profiles, make_agent=_make_agent,
                      agent_env=_agent_env if task_env is None else
                      (lambda profile, task_id: {**_agent_env(profile, task_id), **task_env(task_id)}),
                      verify_env=verify_environment(), landlock=support().landlock_abi is not None,
                      protected=_protected(repo, plan_path), rehearsal=rehearsal,
                      docs=read_documents(plan, repo.git, base_sha, repo.root))


def _one_repository(loaded: LoadedPlan, root: Path) -> None:
    """A plan whose tasks name other repositories (spectacular's `**Repo**:`) cannot run here."""
    repos = sorted({t.repo for t in loaded.plan.tasks if t.repo})
    if len(repos) > 1 or (repos and repos[0] != root.name):
        first = next(i for i, t in enumerate(loaded.plan.tasks) if t.repo)
        raise PlaitError(f"the plan's tasks name repositories ({', '.join(repos)}), and plait runs one "
                         "repository at a time", "split the plan per repository and run each part in its "
                         "repository (the repository's folder name must match the tasks' `repo`)",
                         loaded.locate("tasks", first, "repo"))


def start(plan_path: Path, options: RunOptions, cwd: Path | None = None) -> tuple[Repo, str]:
    """Validate, preflight and record a new run; returns its id (nothing has run yet)."""
    from plait.plan.load import load_plan
    from plait.run import executors, reuse
    from plait.run.preflight import preflight
    from plait.run.prompts import check_at_start, read_documents

    repo = open_repo(cwd)
    loaded = load_plan(plan_path, relax_phases=options.relax_phases, root=repo.root)
    if options.agent:  # `--agent`: plans from other tools cannot name a profile
        defaults = loaded.plan.defaults.model_copy(update={"agent": options.agent})
        loaded = dataclasses.replace(loaded, plan=loaded.plan.model_copy(update={"defaults": defaults}))
    plan = loaded.plan
    _one_repository(loaded, repo.root)
    base_sha = repo.git.resolve_commit(plan.base or "HEAD")
    profiles = plan_profiles(repo, plan, loaded)  # fail before anything is recorded
    sandbox_warning(repo, plan)
    preflight(plan, repo.root)
    executors.check(repo.root, options)  # a known executor; Ray installed if it is the one
    check_at_start(loaded, repo.git, base_sha, repo.root, profiles)  # spec, constitution, roles, reviewers
    _ensure_plait_dir(repo.root)
    docs = read_documents(plan, repo.git, base_sha, repo.root)
    run_id = repo.store.create_run(
        {"plan_path": str(loaded.path), "plan_name": plan.name, "plan_json": plan.model_dump_json(),
         "repo_root": str(repo.root), "base_sha": base_sha, "jobs": options.jobs,
         "options_json": json.dumps(options.__dict__)},
        [(t.id, t.title) for t in plan.tasks], reuse.input_keys(plan, profiles, base_sha, docs, options.rehearse,
                                                        repo.root))
    if not options.fresh:  # earlier runs' verified work whose inputs are unchanged is done already
        reuse.reuse_verified(repo.git, repo.store, run_paths(repo, run_id), plan)
    return repo, run_id


def reused(repo: Repo, run_id: str) -> dict[str, str]:
    """The run's tasks done with an earlier run's verified work: task -> that run."""
    return {t["task_id"]: t["reused_from"] for t in repo.store.tasks(run_id) if t["reused_from"]}


def execute(repo: Repo, run_id: str, listener: Listener | None = None, resume: bool = False,
            task_env: TaskEnv | None = None, make_agent: Callable[[Profile], Agent] | None = None,
            clock: Clock | None = None) -> str:
    """Run (or continue) a recorded run to its end. `task_env(task_id)` adds variables to each agent's
    environment (tests point agents at their own scripted model server this way); `make_agent` and
    `clock` replace the agents and the engine's clock (plait.testing's FakeAgent and VirtualClock)."""
    from plait.plan.model import Plan
    from plait.run import executors
    from plait.run.engine import Engine, RunOptions

    row = _run_row(repo, run_id)
    plan = Plan.model_validate_json(row["plan_json"])
    options = RunOptions(**json.loads(row["options_json"]))
    with ExitStack() as stack:
        _hold(repo, run_id, stack)  # for this process's whole life with the run: liveness is this lock
        stack.enter_context(_decisions_log(run_paths(repo, run_id).run_dir / "plait.log"))
        if options.rehearse:
            from plait.run.rehearse import rehearsal

            host = executors.rehearsal_host(repo.root, options)  # the nodes of a Ray cluster reach it too
            server, task_env = stack.enter_context(rehearsal(plan, run_id, options.rehearse_latency, host))
            repo.store.emit(run_id, EventKind.REHEARSAL_SERVER, None, {"url": server.url})
        ctx = _context(repo, plan, run_id, row["base_sha"], row["plan_path"], task_env, options.rehearse)
        if make_agent is not None:
            ctx = dataclasses.replace(ctx, make_agent=make_agent)
        ctx, listener = _learned(repo, run_id, ctx, options, listener)
        engine = Engine(ctx, repo.store, options, listener, clock)
        if resume:
            _clean_stale(repo, run_id)
        engine.restore()  # a resumed run's verified tasks, and the tasks a new run reused, are done
        try:
            status = engine.execute()
        except KeyboardInterrupt:
            repo.store.emit(run_id, EventKind.RUN_INTERRUPTED, None, {}, run={"status": "interrupted"})
            raise
        finally:
            redact_files(engine.ctx.paths.run_dir)  # the last word: nothing under the run keeps a secret
    if status == "completed":  # all work is in its branches: the agents' homes and workspaces can go
        from plait.git import workspace
        from plait.run.task import spares

        workspace.remove_all(engine.ctx.paths.workspaces)
        # The work trees it finished with stay for the next run of this repository: at most one per job.
        workspace.trim(spares(engine.ctx.paths), options.jobs)
    return status


def _learned(repo: Repo, run_id: str, ctx: RunContext, options: RunOptions,
             listener: Listener | None) -> tuple[RunContext, Listener]:
    """The run schedules by estimates learned from this repository's earlier durations (unless
    `--no-history`), and records each task's own as it is done (not a rehearsal's: its agents' times are
    the scripted server's)."""
    from plait import history

    plan = ctx.plan
    if options.history:
        learned = history.estimates(plan, ctx.profiles, history.load(repo.store))
        if learned.used:
            said = learned.summary()
            repo.store.emit(run_id, EventKind.RUN_ESTIMATES, None, said)
            if listener is not None:
                listener(EventKind.RUN_ESTIMATES, None, said)
            ctx = dataclasses.replace(ctx, plan=learned.plan)
    if options.rehearse:
        return ctx, listener or (lambda kind, task, data: None)
    return ctx, history.recorder(repo.store, run_id, plan, ctx.profiles, listener)


@contextmanager
def _decisions_log(path: Path) -> Iterator[None]:
    """plait's own decisions while it runs the run (stopping a process INT -> TERM -> KILL, timeouts, stalls,
    back-off...) in the run's `plait.log`; warnings also reach the console through the root logger."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("plait")
    before = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before)
        handler.close()


def _hold(repo: Repo, run_id: str, stack: ExitStack) -> None:
    try:
        stack.enter_context(liveness.RunLock(liveness.lock_path(repo.git.common_dir, run_id)))
    except liveness.Taken as taken:
        raise PlaitError(f"run {run_id} is still running (pid {taken.pid or '?'})",
                         f"wait for it, or stop it with `plait cancel {run_id}`") from None


def resume(run_id: str, listener: Listener | None = None, cwd: Path | None = None) -> tuple[Repo, str]:
    """Continue a run; refused while its process lives (execute takes the run's lock, atomically)."""
    repo = resumable(run_id, cwd)
    return repo, execute(repo, run_id, listener, resume=True)


def resumable(run_id: str, cwd: Path | None = None) -> Repo:
    """The repository of a run that can be continued: it exists and has not completed. (Whether its
    process still lives is for `execute` to find out, atomically, when it takes the run's lock.)"""
    repo = open_repo(cwd)
    if _run_row(repo, run_id)["status"] == "completed":
        raise PlaitError(f"run {run_id} already completed", "start a new run with `plait run PLAN`")
    return repo


def _clean_stale(repo: Repo, run_id: str) -> None:
    """Workspaces left by a killed process (flock locks die with it; its agents died with it too)."""
    from plait.git import workspace

    for row in repo.store.tasks(run_id):
        if row["state"] != TaskState.DONE and row["worktree"]:
            workspace.remove(Path(row["worktree"]))


def is_live(repo: Repo, run_id: str) -> bool:
    """Whether a process is running the run now: it holds the run's lock (never a guess from time)."""
    return liveness.held(liveness.lock_path(repo.git.common_dir, run_id))


def _run_row(repo: Repo, run_id: str | None) -> dict[str, Any]:
    if run_id is None:
        runs = repo.store.runs()
        if not runs:
            raise PlaitError("no runs yet in this repository", "start one with `plait run PLAN`")
        return runs[-1]
    row = repo.store.run(run_id)
    if row is None:
        known = ", ".join(r["id"] for r in repo.store.runs()[-5:]) or "none"
        raise PlaitError(f"no run {run_id!r} in this repository", f"recent runs: {known} (`plait status`)")
    return row


def status(run_id: str | None = None, cwd: Path | None = None) -> dict[str, Any]:
    """The run's state as plain data: the seed-001 fields plus per-task detail and metrics (plait.status)."""
    return plait_status.document(run_id, cwd)


def run_id_or_latest(run_id: str | None, cwd: Path | None = None) -> str:
    """`run_id` when it names a run of this repository, else the latest run's id (one-line error: none)."""
    return str(_run_row(_reading_repo(cwd), run_id)["id"])


def cancel_run(run_id: str | None, cwd: Path | None = None) -> tuple[str, str]:
    """`cancel` of the given run, or the latest: (its id, what happened)."""
    rid = run_id_or_latest(run_id, cwd)
    return rid, cancel(rid, cwd)


def cancel(run_id: str, cwd: Path | None = None) -> str:
    repo = open_repo(cwd)
    row = _run_row(repo, run_id)
    if not is_live(repo, run_id):
        if row["status"] in ("running", "cancelling"):
            repo.store.emit(run_id, EventKind.RUN_CANCELLED, None, {"why": "no live process"},
                            run={"status": "cancelled"})
            return "cancelled (its process was already gone)"
        raise PlaitError(f"run {run_id} is not running (status {row['status']})", "nothing to cancel")
    repo.store.emit(run_id, EventKind.RUN_CANCEL_REQUESTED, None, {}, run={"status": "cancelling"})
    return "cancelling: running tasks are being stopped"


@dataclass(frozen=True)
class Cleaned:
    """What `clean` removed, and what it left alone and why (`kept`: one phrase each)."""

    workspaces: list[str]
    branches: list[str]
    kept: list[str]


def clean(cwd: Path | None = None, run_id: str | None = None, branches: bool = False) -> Cleaned:
    """Remove finished runs' workspaces (evidence stays) and, with `branches`, their `plait/<run>/*`
    branches (each deleted only if it still points where it was read). A live run is never touched,
    nor a branch you have checked out. Without `run_id`, also the work trees runs kept for the repository's
    next run (they belong to no one run; a live run that wanted one checks out afresh)."""
    from plait.git import workspace

    repo = open_repo(cwd)
    rows = [_run_row(repo, run_id)] if run_id else repo.store.runs()
    current = repo.git.head_branch()
    removed: list[str] = []
    deleted: list[str] = []
    kept: list[str] = []
    for row in rows:
        rid = row["id"]
        if is_live(repo, rid):
            if run_id:
                raise PlaitError(f"run {rid} is still running", f"wait for it, or stop it with `plait cancel {rid}`")
            kept.append(f"run {rid} (still running)")
            continue
        folders = {run_paths(repo, rid).workspaces}
        folders |= {Path(t["worktree"]).parent for t in repo.store.tasks(rid) if t["worktree"]}
        for folder in sorted(folders):
            removed += [str(p) for p in workspace.remove_all(folder)]
        refs = repo.git.list_refs(f"refs/heads/plait/{rid}/") if branches else {}
        for ref, sha in refs.items():
            name = ref.removeprefix("refs/heads/")
            if name == current:
                kept.append(f"{name} (checked out)")
                continue
            repo.git.delete_ref(ref, sha)
            deleted.append(name)
    if not run_id:
        removed += [str(p) for p in workspace.trim(workspace.spares_folder(_workspaces(repo)), 0)]
    return Cleaned(removed, deleted, kept)


def final_metrics(repo: Repo, run_id: str) -> report.Metrics:
    row = _run_row(repo, run_id)
    m = report.compute(row, repo.store.tasks(run_id), repo.store.attempts(run_id), summary=repo.store.summary(run_id))
    report.write(run_paths(repo, run_id).run_dir, m)
    return m


def run_record(repo: Repo, run_id: str | None = None) -> html_report.RunRecord:
    """Everything the state database holds about a run (the latest by default), read once: what the HTML
    report and the dashboard draw."""
    from plait import html_report

    rid = _run_row(repo, run_id)["id"]
    return html_report.RunRecord(run=_run_row(repo, rid), tasks=repo.store.tasks(rid),
                                 attempts=repo.store.attempts(rid), events=repo.store.events(rid),
                                 live=is_live(repo, rid))


def write_html_report(repo: Repo, run_id: str | None = None) -> Path:
    """Write the run's report.html beside its REPORT.md; returns its path."""
    from plait import html_report

    record = run_record(repo, run_id)
    path = run_paths(repo, record.run["id"]).run_dir / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html_report.page(record))
    return path


@dataclass(frozen=True)
class Landing:
    """What `land` did: `landed` on your branch, or (`stack`) the run's stacked branches, `{branch: sha}`;
    `existed` when the run had delivered them itself."""

    run_id: str
    landed: git_land.Landed | None = None
    stacked: dict[str, str] = dataclasses.field(default_factory=dict)
    existed: bool = False


def land(run_id: str | None = None, how: str = "merge", cwd: Path | None = None) -> Landing:
    """Bring a completed run's integration result onto the checked-out branch (`how`: "merge" — a
    fast-forward when possible — or "squash"), or with "stack" create the run's stacked branches and
    leave your branch alone. The one verb that moves a branch of yours, and only when called."""
    from plait.git import land as git_land

    repo = open_repo(cwd)
    row = _run_row(repo, run_id)
    rid = row["id"]
    if row["status"] != "completed":
        raise PlaitError(f"run {rid} did not complete (status {row['status']}): it has no verified result to land",
                         f"continue it with `plait resume {rid}`, or land a completed run")
    source = f"plait/{rid}/integration"
    if not repo.git.branch_exists(source):
        raise PlaitError(f"run {rid}'s integration branch {source} is missing",
                         "it was deleted (`plait clean --branches`?): run the plan again")
    if how == "stack":
        return _stack_run(repo, row)
    tasks = "".join(f"- {t['task_id']}: {t['title']}\n" for t in repo.store.tasks(rid))
    name = row["plan_name"] or "plan"
    message = (f"{name} (plait run {rid})\n\n{tasks}" if how == "squash" else
               f"Merge {source}: {name}\n\nplait run {rid}:\n{tasks}")
    return Landing(rid, git_land.land(repo.git, source, how == "squash", message))


def _stack_run(repo: Repo, row: dict[str, Any]) -> Landing:
    """The run's `plait/<run>/stack/<task>` branches, made as `--deliver stack` makes them if it has none."""
    from plait.git import stack
    from plait.plan.model import Plan

    rid = row["id"]
    prefix = f"refs/heads/plait/{rid}/stack/"
    existing = repo.git.list_refs(prefix)
    if existing:
        return Landing(rid, stacked={r.removeprefix("refs/heads/"): s for r, s in existing.items()}, existed=True)
    plan = Plan.model_validate_json(row["plan_json"])
    commits = {t["task_id"]: t["commit_sha"] for t in repo.store.tasks(rid)}
    started = [e for e in repo.store.events(rid) if e["kind"] == EventKind.INTEGRATION_STARTED]
    order = started[-1]["data"]["order"]
    entries = [(t, commits[t], list(plan.task(t).needs)) for t in order]
    return Landing(rid, stacked=stack.restack(repo.git, row["base_sha"], entries, prefix))


def runs(cwd: Path | None = None) -> list[dict[str, Any]]:
    """Every run of the repository, oldest first: what `plait runs`, the MCP server and the dashboard list."""
    repo = open_repo(cwd)
    out = []
    for row in repo.store.runs():
        tasks = repo.store.tasks(row["id"])
        live = is_live(repo, row["id"])
        word = row["status"] if live or row["status"] not in ("running", "cancelling") else "interrupted"
        m = report.compute(row, tasks, repo.store.attempts(row["id"]), summary=repo.store.summary(row["id"]))
        out.append({"run_id": row["id"], "plan": row["plan_path"], "status": word,
                    "created_at": row.get("created_at"), "finished_at": row.get("finished_at"),
                    "tasks": len(tasks), "done": sum(1 for t in tasks if t["state"] == TaskState.DONE),
                    "speedup": m.speedup, "rehearsal": m.rehearsal})
    return out


# -- the verbs the CLI, the MCP server and the dashboard share (what one shows, the others show) ------------
def tasks(repo: Repo, run_id: str) -> list[dict[str, Any]]:
    """The run's task rows (state, attempt, commit, times...), as the state database holds them."""
    return repo.store.tasks(run_id)


def task_count(repo: Repo, run_id: str, to_run: bool = False) -> int:
    """The run's tasks (`to_run`: only those not done yet, e.g. after reuse or on resume)."""
    return sum(1 for t in repo.store.tasks(run_id) if not to_run or t["state"] != TaskState.DONE)


def uncommitted(repo: Repo, run_id: str) -> tuple[int, str]:
    """(changes in the user's working tree that are not part of the run — untracked files aside, the commit
    its agents start from)."""
    entries = [e for e in repo.git.status_porcelain().split("\0") if e and not e.startswith("??")]
    return len(entries), str(_run_row(repo, run_id)["base_sha"])


def live_metrics(repo: Repo, run_id: str) -> report.Metrics:
    """The run's figures so far (nothing written: the process running it writes the report at its end)."""
    row = _run_row(repo, run_id)
    return report.compute(row, repo.store.tasks(run_id), repo.store.attempts(run_id),
                          summary=repo.store.summary(run_id))


def events_since(repo: Repo, run_id: str, after: int = 0) -> list[dict[str, Any]]:
    """The run's events after sequence number `after` (0: all), oldest first."""
    return repo.store.events(run_id, after)


def write_spec(request: str, *, agent: str | None = None, force: bool = False, cwd: Path | None = None,
               **hooks: Any) -> WrittenSpec:
    """`plait spec`: the spec writer writes specs/<id>-<slug>/spec.md (plait.workflow.spec.write_spec)."""
    from plait.workflow.spec import write_spec as write

    repo = open_repo(cwd)
    return write(repo.git, repo.root, request, agent=agent, force=force, **hooks)


def write_plan(spec: Path, *, agent: str | None = None, rounds: int = 3, force: bool = False,
               cwd: Path | None = None, **hooks: Any) -> WrittenPlan:
    """`plait plan`: the planner writes plan.yaml beside `spec`, repaired until it validates."""
    from plait.workflow.plan import write_plan as write

    repo = open_repo(cwd)
    return write(repo.git, repo.root, spec, agent=agent, rounds=rounds, force=force, **hooks)
