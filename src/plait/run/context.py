"""What every stage of a run shares: where its files live (`RunPaths`) and the run's fixed inputs
(`RunContext`: the plan, the repository, the agents, the documents every prompt carries)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from plait.agents.base import Agent, Profile
from plait.git.repo import Git
from plait.plan.model import Plan
from plait.run.prompts import Documents


@dataclass(frozen=True)
class RunPaths:
    repo_root: Path
    run_id: str
    workspaces: Path  # this run's workspaces, outside the user's checkout by default

    @property
    def plait_dir(self) -> Path:
        return self.repo_root / ".plait"

    @property
    def run_dir(self) -> Path:
        return self.plait_dir / "runs" / self.run_id

    def task_dir(self, task_id: str) -> Path:
        return self.run_dir / "tasks" / task_id

    def attempt_folder(self, task_id: str, attempt: int) -> Path:
        return self.workspaces / task_id / f"a{attempt}"

    def home(self, task_id: str) -> Path:
        return self.workspaces / task_id / "home"

    def level_dir(self, level: int) -> Path:
        """A per-level review's logs (its reviewer's prompts and answers)."""
        return self.run_dir / "levels" / str(level)

    def level_folder(self, level: int) -> Path:
        """The workspace a per-level review's reviewer reads in."""
        return self.workspaces / f"_level-{level}"  # task ids start with a letter or digit

    @property
    def integration_folder(self) -> Path:
        return self.workspaces / "_integration"  # task ids start with a letter or digit

    def branch(self, task_id: str) -> str:
        return f"plait/{self.run_id}/{task_id}"


@dataclass(frozen=True)
class RunContext:
    plan: Plan
    git: Git
    paths: RunPaths
    base_sha: str
    profiles: Mapping[str, Profile]
    make_agent: Callable[[Profile], Agent]
    # (profile, agent id) -> the agent's environment. The agent id is the task's id for the agent that does the
    # task, `<task>/review-<n>` (`-retry`) and `<task>/fix-<n>` for its reviewer and fixer, `level-<n>/review-<r>`
    # for a per-level review (rehearsals give each its own scripted conversation).
    agent_env: Callable[[Profile, str], dict[str, str]]
    verify_env: Mapping[str, str] = field(default_factory=dict)
    landlock: bool = False  # the kernel can confine writes (sandbox.support())
    protected: tuple[str, ...] = ("plait.toml",)  # repo paths a task may not delete: plait's plan and config
    rehearsal: bool = False  # agents talk to plait's scripted model server: costs are simulated
    docs: Documents = field(default_factory=Documents)  # the plan's spec and constitution, read at run start
