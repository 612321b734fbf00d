"""Each attempt's working environment (docs/environment.md): files copied from the user's checkout,
dependency caches linked in, ports and a slot name of its own, `setup` before the agent and `teardown`
when the attempt ends, however it ends.

Settings come in three layers, the most specific winning field by field: the task, the plan's
`defaults`, `[environment]` in plait.toml (or `[tool.plait.environment]` in pyproject.toml).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import threading
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plait import proc
from plait.errors import Location, PlaitError
from plait.plan.model import ENVIRONMENT_FIELDS, Cache, Environment, Plan, Task
from plait.redact import redact, register
from plait.run import envcache, ports
from plait.sandbox import Confinement
from plait.text import printable

OUTPUT_CHARS = 2000  # of a setup or teardown command's output kept in the evidence; the log keeps it all


def configured(repo_root: Path) -> Environment:
    """The repository's own layer: `[environment]` in plait.toml, else `[tool.plait.environment]`."""
    plait_toml, pyproject = repo_root / "plait.toml", repo_root / "pyproject.toml"
    source, where = (plait_toml, "environment") if plait_toml.is_file() else (pyproject, "tool.plait.environment")
    if not source.is_file():
        return Environment.model_validate({})
    try:
        doc = tomllib.loads(source.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, OSError) as exc:
        raise PlaitError(f"cannot read it: {exc}", "fix the file", Location(str(source))) from exc
    table: Any = doc
    for part in where.split("."):
        table = table.get(part, {}) if isinstance(table, dict) else {}
    try:
        env = Environment.model_validate(table)
    except ValueError as exc:
        first = str(exc).splitlines()
        raise PlaitError(f"[{where}] is not valid: {' '.join(first[1:3]) or first[0]}",
                         "see docs/environment.md for its keys", Location(str(source))) from None
    from plait.plan.validate import environment_problems

    for keys, message, fix in environment_problems(env):
        raise PlaitError(f"[{where}] {'.'.join(map(str, keys))}: {message}", fix, Location(str(source)))
    return env


def resolve(layers: list[Environment]) -> Environment:
    """Field by field, the first layer that sets it (most specific first)."""
    values = {name: next((getattr(e, name) for e in layers if getattr(e, name) is not None), None)
              for name in ENVIRONMENT_FIELDS}
    return Environment.model_validate(values)


def for_task(plan: Plan, task: Task, repo_root: Path) -> Environment:
    return resolve([task, plan.defaults, configured(repo_root)])


def cache_root(workspaces: Path) -> Path:
    """Where this repository's dependency caches live: beside its runs' workspaces (never beneath
    anything an agent may write), shared by every run."""
    return workspaces.parent / "_environment-cache"  # run ids start with a letter


def is_empty(env: Environment) -> bool:
    return not any(getattr(env, name) for name in ENVIRONMENT_FIELDS)


def slot_name(run_id: str, task_id: str, attempt: int) -> str:
    """A name unique per attempt, fit for docker compose (lowercase letters, digits, `-` and `_`)."""
    return re.sub(r"[^a-z0-9_-]+", "-", f"plait-{run_id}-{task_id}-{attempt}".lower()).strip("-")


def secret_values(text: str) -> list[str]:
    """What a copied file may hold that is secret: the value of each `KEY=value`, `key: value` or
    `"key": "value"` line, else the whole line (a copied file is assumed to be all secret)."""
    found = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "//", ";", "[", "{", "}")):
            continue
        line = re.sub(r"^export\s+", "", line)
        m = re.match(r"""^["']?[\w.-]+["']?\s*[=:]\s*(.*?)\s*,?$""", line)
        value = m.group(1) if m else line
        found.append(value.strip("'\""))
    return found


@dataclass
class Step:
    command: str
    exit_code: int | None
    seconds: float
    output_tail: str
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def summary(self) -> dict[str, object]:
        return {"command": self.command, "exit_code": self.exit_code, "seconds": self.seconds,
                "timed_out": self.timed_out, "output_tail": self.output_tail}

    def failure(self, what: str) -> str:
        why = "timed out" if self.timed_out else f"exited {self.exit_code}"
        return f"{what} `{self.command}` {why}: {self.output_tail[-800:].strip() or '(no output)'}"


@dataclass
class Where:
    """The attempt's places and limits, as the environment needs them."""

    repo_root: Path  # the user's checkout: where `copy` reads
    cache_root: Path
    tree: Path
    home: Path
    tmp: Path
    log_dir: Path
    timeout: float
    cancel: threading.Event
    base_env: Mapping[str, str]  # the user's environment for setup, teardown and builds (like verify's)
    landlock: bool


@dataclass
class AttemptEnvironment:
    spec: Environment
    where: Where
    slot: str
    held: ports.Ports = field(default_factory=lambda: ports.Ports({}))
    caches: list[envcache.CacheUse] = field(default_factory=list)
    copied: list[str] = field(default_factory=list)
    setup: list[Step] = field(default_factory=list)
    teardown: list[Step] = field(default_factory=list)
    resumed: bool = False  # the work tree is an earlier attempt's: what plait copied there is replaced
    finished: bool = False

    @property
    def variables(self) -> dict[str, str]:
        """What setup, the agent and verify see: the ports, and the slot under the names tools read."""
        return {**self.held.variables(), "PLAIT_SLOT": self.slot, "COMPOSE_PROJECT_NAME": self.slot}

    @property
    def materialized(self) -> list[str]:
        """The workspace paths plait put there that the repository does not carry: never captured."""
        return [*self.copied, *(c.path for c in self.caches)]

    def prepare(self) -> str | None:
        """Copy, link, reserve, set up: None when ready, else why the attempt fails (the agent never ran)."""
        spec, where = self.spec, self.where
        for name in spec.copy_files or []:
            problem = self._copy(name)
            if problem:
                return problem
        try:
            self.held = ports.reserve(list(spec.ports or []))
        except ports.NoFreePort as exc:
            return f"ports: {exc}"
        for cache in spec.cache or []:
            try:
                use = envcache.obtain(cache, where.tree, where.cache_root, self._builder(cache), where.cancel)
                envcache.link(use, where.tree)
            except (envcache.CacheError, OSError) as exc:
                return str(exc)
            self.caches.append(use)
        self._exclude()
        for command in spec.setup or []:
            step = self._run(command, "setup", where.tree, self.writable(), where.cancel)
            self.setup.append(step)
            if not step.ok:
                return step.failure("setup")
        return None

    def finish(self) -> None:
        """Teardown (every command, whatever the others did, and whatever setup did) and the ports back.
        Runs once; not cancellable: it is what undoes what setup started, also after a cancel."""
        if self.finished:
            return
        self.finished = True
        try:
            commands = self.spec.teardown or [] if self.where.tree.is_dir() else []  # a workspace to run in
            for command in commands:
                self.teardown.append(self._run(command, "teardown", self.where.tree, self.writable(),
                                               threading.Event()))
        finally:
            self.held.release()

    def clear(self) -> None:
        """Remove what plait put in the work tree (copied files, cache links): a tree passed on to another
        task must not carry this one's `.env`."""
        for name in self.materialized:
            path = self.where.tree / name
            if path.is_symlink() or path.is_file():
                path.unlink()
            elif path.is_dir():
                shutil.rmtree(path, ignore_errors=True)

    def writable(self) -> tuple[Path, ...]:
        where = self.where
        return (where.tree, where.home, where.tmp)

    @contextlib.contextmanager
    def hidden(self, aside: Path) -> Iterator[None]:
        """The copied files and cache links moved out of the work tree while plait reads its file
        state (a capture), so they are never committed, whatever the repository ignores."""
        moved: list[tuple[Path, Path]] = []
        try:
            for i, name in enumerate(self.materialized):
                path = self.where.tree / name
                if os.path.lexists(path):
                    place = aside / str(i)
                    aside.mkdir(parents=True, exist_ok=True)
                    os.replace(path, place)
                    moved.append((place, path))
            yield
        finally:
            for place, path in reversed(moved):
                if not os.path.lexists(path):
                    os.replace(place, path)

    def summary(self) -> dict[str, object]:
        """The evidence's `environment`: what the workspace got, and setup's and teardown's output."""
        return {"slot": self.slot, "ports": dict(self.held.by_name), "copied": list(self.copied),
                "caches": [c.summary() for c in self.caches], "setup": [s.summary() for s in self.setup],
                "teardown": [s.summary() for s in self.teardown]}

    # -- mechanics ------------------------------------------------------------------------------------
    def _copy(self, name: str) -> str | None:
        source, target = self.where.repo_root / name, self.where.tree / name
        if not envcache.inside(target, self.where.tree):
            return f"copy: {name} would be written outside the workspace (through a symlink in the repository)"
        if not source.is_file():
            return f"copy: {name} is not a file in {self.where.repo_root}"
        if os.path.lexists(target) and not self.resumed:
            return (f"copy: the repository itself holds {name}; `copy` is for files git does not carry "
                    "(remove it from `copy`)")
        data = source.read_bytes()
        register(secret_values(data.decode(errors="replace")))  # masked in every log from now on
        target.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        target.write_bytes(data)
        shutil.copymode(source, target)
        self.copied.append(name)
        return None

    def _exclude(self) -> None:
        """The agent's own `git status` does not show what plait put there."""
        exclude = self.where.tree / ".git" / "info" / "exclude"
        if self.materialized and exclude.parent.parent.is_dir():
            exclude.parent.mkdir(exist_ok=True)
            with exclude.open("a") as f:
                f.write("".join(f"/{p.strip('/')}\n" for p in self.materialized))

    def _env(self) -> dict[str, str]:
        where = self.where
        env = {k: v for k, v in where.base_env.items() if not k.startswith("GIT_")}
        # The user's HOME stays (to read its config); the caches a tool writes go where it may write.
        env.update(TMPDIR=str(where.tmp), XDG_CACHE_HOME=str(where.home / ".cache"),
                   npm_config_cache=str(where.home / ".npm"), GIT_CEILING_DIRECTORIES=str(where.tree.parent))
        env.update(self.variables)
        return env

    def _builder(self, cache: Cache) -> Callable[[Path], str | None]:
        def build(folder: Path) -> str | None:
            step = self._run(cache.build, f"cache-{folder.name}", folder, (folder, self.where.home, self.where.tmp),
                             self.where.cancel)
            self.setup.append(step)
            return None if step.ok else step.failure("its build")
        return build

    def _run(self, command: str, label: str, cwd: Path, writable: tuple[Path, ...], cancel: threading.Event) -> Step:
        where = self.where
        where.log_dir.mkdir(parents=True, exist_ok=True)
        log = where.log_dir / f"{label}.log"
        with log.open("ab") as f:  # one log per kind: every command's output, in order
            f.write(f"$ {command}\n".encode())
        partial = where.log_dir / f".{label}.part"
        done = proc.run(command, shell=True, cwd=cwd, env=self._env(), timeout=where.timeout, cancel=cancel,
                        stdout_path=partial, stderr_path=partial,
                        confine=Confinement(writable=writable, landlock=where.landlock))
        with log.open("ab") as f, partial.open("rb") as part:
            shutil.copyfileobj(part, f)
        partial.unlink()
        tail = printable(redact(done.stdout[-OUTPUT_CHARS:]))
        return Step(command, done.returncode, round(done.duration, 3), tail, done.timed_out)


def describe(plan: Plan, repo_root: Path | None, cache_root: Path | None) -> dict[str, dict[str, object]]:
    """What `plait check` shows: each task's environment (tasks without one are left out), where its
    caches stand, and what its processes may write."""
    toml = configured(repo_root) if repo_root is not None else Environment.model_validate({})
    out: dict[str, dict[str, object]] = {}
    for task in plan.tasks:
        spec = resolve([task, plan.defaults, toml])
        if is_empty(spec):
            continue
        caches = []
        for c in spec.cache or []:
            state = "key files missing in your checkout"
            if repo_root is not None and cache_root is not None:
                with contextlib.suppress(envcache.CacheError, OSError):
                    entry = envcache.entry_for(cache_root, c, envcache.key_hash(c, repo_root))
                    state = f"ready ({entry})" if envcache.ready(entry) else "built by the first attempt that needs it"
            caches.append({"path": c.path, "key": c.key, "build": c.build, "state": state, "access": "read-only"})
        out[task.id] = {
            "setup": spec.setup or [], "teardown": spec.teardown or [], "copy": spec.copy_files or [],
            "copy_missing": [f for f in spec.copy_files or []
                             if repo_root is not None and not (repo_root / f).is_file()],
            "ports": {name: f"PLAIT_PORT_{name.upper()}" for name in spec.ports or []},
            "slot": "PLAIT_SLOT and COMPOSE_PROJECT_NAME: plait-<run>-<task>-<attempt>",
            "cache": caches,
            "writable": ["the work tree", "the task's private home", "the attempt's private tmp"],
        }
    return out


def shared_files(plan: Plan, where: Where, slot: str) -> tuple[AttemptEnvironment | None, str | None]:
    """For a workspace that no single task owns (the integration's): the plan's copied files and caches,
    which need no teardown; (the environment or None, why it could not be made or None)."""
    spec = resolve([plan.defaults, configured(where.repo_root)])
    spec = spec.model_copy(update={"setup": None, "teardown": None, "ports": None})
    if is_empty(spec):
        return None, None
    env = AttemptEnvironment(spec, where, slot)
    return env, env.prepare()


def hidden(env: AttemptEnvironment | None, aside: Path) -> contextlib.AbstractContextManager[None]:
    """`env.hidden(aside)`, or nothing to hide."""
    return contextlib.nullcontext() if env is None else env.hidden(aside)
