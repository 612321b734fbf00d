"""Where a run's attempts run: threads on this machine (the default), or a Ray cluster (`--executor ray`,
docs/ray.md). Either way the engine, the journal, the radar, integration and the limits stay here.

The choice is the command line's, else `[executor]` in plait.toml, else local:

    [executor]
    name = "ray"                  # "local" or "ray"
    address = "auto"              # what `ray.init(address=...)` takes; unset: a private local Ray
    [executor.resources]          # what each attempt asks the cluster for, by agent profile
    default = { num_cpus = 1 }
    claude = { num_cpus = 0.5, claude_cli = 1 }
"""

from __future__ import annotations

import importlib.util
import os
import tomllib
from collections.abc import Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plait.errors import Location, PlaitError

if TYPE_CHECKING:
    from plait.run.context import RunContext
    from plait.run.engine import RunOptions

EXECUTORS = ("local", "ray")
DEFAULT_RESOURCES: Mapping[str, float] = {"num_cpus": 1.0}
RAY_MISSING = PlaitError("the Ray executor needs Ray, which is not installed",
                         'install it with `pip install "plait[ray]"` (on this machine and on every node)')


@dataclass(frozen=True)
class Settings:
    name: str = "local"
    address: str | None = None
    resources: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # profile or "default" -> asks

    def asks(self, profile: str) -> dict[str, float]:
        """What one attempt of `profile` asks the cluster for (Ray's `num_cpus`, `num_gpus`, custom names)."""
        return dict(self.resources.get(profile) or self.resources.get("default") or DEFAULT_RESOURCES)


def settings(repo_root: Path, name: str | None = None, address: str | None = None) -> Settings:
    """The executor for a run: `name`/`address` (the command line's) over plait.toml's `[executor]`."""
    source = repo_root / "plait.toml"
    table: dict[str, Any] = {}
    if source.is_file():
        try:
            found = tomllib.loads(source.read_text(encoding="utf-8")).get("executor", {})
        except (OSError, tomllib.TOMLDecodeError):
            found = {}  # plait.toml's own reader (profiles) reports a broken file
        table = found if isinstance(found, dict) else {}
    where = Location(str(source))
    chosen = name or table.get("name") or "local"
    if chosen not in EXECUTORS:
        raise PlaitError(f"[executor] name: unknown executor {chosen!r}", f"use one of {', '.join(EXECUTORS)}",
                         where)
    given = address or table.get("address")
    if given is not None and not isinstance(given, str):
        raise PlaitError("[executor] address: must be a string", 'write e.g. address = "auto"', where)
    resources = table.get("resources", {})
    if not isinstance(resources, dict) or not all(
            isinstance(v, dict) and all(isinstance(n, int | float) and n >= 0 for n in v.values())
            for v in resources.values()):
        raise PlaitError("[executor.resources]: each profile takes a table of resource amounts",
                         "write e.g. claude = { num_cpus = 1, claude_cli = 1 }", where)
    return Settings(chosen, given, {k: {r: float(n) for r, n in v.items()} for k, v in resources.items()})


def check(repo_root: Path, options: RunOptions) -> None:
    """Before a run is recorded: its executor is known, and Ray is installed if it is the one."""
    if settings(repo_root, options.executor, options.address).name == "ray" and \
            importlib.util.find_spec("ray") is None:
        raise RAY_MISSING


def rehearsal_host(repo_root: Path, options: RunOptions) -> str:
    """Where a rehearsal's scripted model server listens: this machine only, unless attempts run on a Ray
    cluster, whose nodes reach it at this machine's address ($PLAIT_REHEARSAL_HOST to choose another)."""
    if settings(repo_root, options.executor, options.address).name != "ray":
        return "127.0.0.1"
    given = os.environ.get("PLAIT_REHEARSAL_HOST")
    if given:
        return given
    from ray.util import get_node_ip_address

    return str(get_node_ip_address())  # type: ignore[no-untyped-call]


def make_executor(ctx: RunContext, options: RunOptions) -> Executor:
    chosen = settings(ctx.paths.repo_root, options.executor, options.address)
    if chosen.name == "ray":
        from plait.run.ray_executor import RayExecutor

        return RayExecutor(ctx, options.jobs, chosen)
    return ThreadPoolExecutor(max_workers=options.jobs, thread_name_prefix="plait-task")
