"""The plan model (format version 1). `plait schema` prints its JSON Schema.

Durations are written as `30s`, `90m`, `1.5h`, `2h30m` or a bare number of minutes, and are held
as seconds. Sizes give a default estimate when a task has none: S 1h, M 2h, L 4h; XL is
rejected by validation with advice to split.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)

from plait.text import format_duration as format_duration  # re-exported: plan code names it here

# One `<number><unit>` part of a duration; parts are read one after another (linear in the text: a
# single regular expression over the whole text backtracked for seconds on crafted spacing).
_DURATION_PART = re.compile(r"\s*(\d{1,15}(?:\.\d{1,15})?)\s*([hms])")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0}
MAX_DURATION_TEXT = 64
ID_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?$"


def parse_duration(value: Any) -> float:
    """`30s`, `90m`, `1.5h`, `2h30m` or a bare number of minutes -> seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of minutes or text like 30s, 90m, 1.5h")
    if isinstance(value, int | float):
        try:
            seconds = float(value) * 60.0
        except OverflowError:
            raise ValueError("that number is too large for a duration") from None
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError("a duration is a finite, non-negative number")
        return seconds
    if isinstance(value, str):
        text = value.strip().lower()
        if len(text) > MAX_DURATION_TEXT:
            raise ValueError(f"a duration of {len(text)} characters is not a duration: write e.g. 30s, 90m, 1.5h")
        if re.fullmatch(r"\d{1,15}(\.\d{1,15})?", text):
            return parse_duration(float(text))
        total = _parts_seconds(text)
        if total is not None and math.isfinite(total):
            return total
    raise ValueError(f"{str(value)[:80]!r} is not a duration: write e.g. 30s, 90m, 1.5h or 2h30m")


def _parts_seconds(text: str) -> float | None:
    """`2h30m`, `1.5h`, `90m 10s`: units in the order h, m, s, each at most once; None if not that."""
    pos, last, total = 0, -1, 0.0
    while pos < len(text):
        part = _DURATION_PART.match(text, pos)
        if part is None:
            return None
        rank = "hms".index(part.group(2))
        if rank <= last:
            return None
        last, total, pos = rank, total + float(part.group(1)) * _UNIT_SECONDS[part.group(2)], part.end()
    return total if last >= 0 else None


def _seconds_text(seconds: float) -> str:
    """Serialize as `<seconds>s` so a dumped plan loads back to the same durations."""
    return f"{seconds:.6f}".rstrip("0").rstrip(".") + "s"


_DURATION_SCHEMA = {
    "anyOf": [
        {"type": "number", "minimum": 0, "description": "minutes"},
        {"type": "string", "pattern": r"^\s*(\d+(\.\d+)?\s*h)?\s*(\d+(\.\d+)?\s*m)?\s*(\d+(\.\d+)?\s*s)?\s*$",
         "examples": ["30s", "90m", "1.5h", "2h30m"]},
    ]
}
Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(_seconds_text, return_type=str),
    WithJsonSchema(_DURATION_SCHEMA),
]


class Size(StrEnum):
    S = "S"
    M = "M"
    L = "L"
    XL = "XL"


SIZE_SECONDS: dict[Size, float] = {Size.S: 3600.0, Size.M: 7200.0, Size.L: 14400.0, Size.XL: 28800.0}
# The largest estimate a single task may carry before validation asks for a split (spectacular's rule:
# only XL, over 8h, must be split).
MAX_TASK_SECONDS = 8 * 3600.0


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Check(_Strict):
    """One preflight check: exactly one of `run`, `env`, `tool`."""

    name: str | None = Field(None, description="Shown in reports; defaults to the check itself.")
    run: str | None = Field(None, description="A shell command that must exit 0 in the repository.")
    env: str | None = Field(None, description="An environment variable that must be set and non-empty.")
    tool: str | None = Field(None, description="A program that must be on PATH.")

    @model_validator(mode="after")
    def _exactly_one(self) -> Check:
        given = [k for k in ("run", "env", "tool") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("a preflight check has exactly one of `run`, `env`, `tool`")
        return self

    @property
    def label(self) -> str:
        kind = "run" if self.run else "env" if self.env else "tool"
        return self.name or f"{kind} {getattr(self, kind)}"


class Contract(_Strict):
    """A frozen interface: only its owner task may change these paths during a run."""

    path: str = Field(description="Repository-relative path or glob of the frozen file(s).")
    owner: str = Field(description="Id of the only task allowed to change it.")
    description: str | None = None


def _as_list(value: Any) -> Any:
    """A single string where a list is expected reads as a list of one (`setup: npm ci`)."""
    return [value] if isinstance(value, str) else value


Commands = Annotated[list[str], BeforeValidator(_as_list)]
PORT_NAME = r"^[A-Za-z][A-Za-z0-9_]{0,31}$"


class Cache(_Strict):
    """A dependency folder built once per content of its key files and shared into every workspace
    read-only (docs/environment.md)."""

    path: str = Field(description="The folder, relative to the repository root (e.g. node_modules, .venv).")
    key: Annotated[list[str], BeforeValidator(_as_list)] = Field(
        min_length=1, description="The files the build reads (e.g. package.json, package-lock.json): a change to "
        "any of them builds a new folder. They are copied into the folder where `build` runs.")
    build: str = Field(description="Shell command that creates `path` from the key files (e.g. npm ci); it runs "
                       "once per key, in a folder holding only the key files.")


class Environment(_Strict):
    """What a workspace needs to run, besides the repository's files (docs/environment.md). Each field left
    out is taken from the next layer: task, then the plan's defaults, then `[environment]` in plait.toml."""

    # `copy` is a field name pydantic's BaseModel also has: held as copy_files, written `copy`.
    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)

    setup: Commands | None = Field(None, description="Shell commands run in the new workspace before the agent; "
                                   "one that fails fails the attempt.")
    teardown: Commands | None = Field(None, description="Shell commands run when the attempt ends, however it "
                                      "ends (also after a timeout or a cancel).")
    copy_files: list[str] | None = Field(None, alias="copy", description="Files git does not carry (.env, local "
                                         "config) copied from your checkout into each workspace; their values are "
                                         "masked in every log, and they are never committed.")
    ports: list[Annotated[str, Field(pattern=PORT_NAME)]] | None = Field(
        None, description="Names of ports each attempt gets for itself: `web` gives PLAIT_PORT_WEB.")
    cache: list[Cache] | None = Field(None, description="Dependency folders built once per key and shared "
                                      "read-only into every workspace.")


ENVIRONMENT_FIELDS = ("setup", "teardown", "copy_files", "ports", "cache")


# When the reviewer agent reads a task's work (docs/run.md, "Review"): per-task, once its level is done
# (per-level), once the whole run is integrated (end; see Integration), or never.
ReviewMode = Literal["per-task", "per-level", "end", "never"]
MAX_ROUNDS_LIMIT = 10


class Defaults(Environment):
    agent: str = Field("script", description="Agent profile used by tasks that name none.")
    verify: str | None = Field(None, description="Verify command for tasks that give none.")
    timeout: Duration = Field(1800.0, description="Per-attempt time limit for an agent (e.g. 30m).")
    retries: int = Field(2, ge=0, le=10, description="Retries for transient failures (timeouts, crashes).")
    review: ReviewMode = Field("never", description="per-task: a reviewer agent reads each task's verified work "
                               "and a fixer addresses its comments; per-level: one review of all the verified "
                               "tasks of a dependency level before their dependents start; end: one review of "
                               "the integrated result; never: no review.")
    max_rounds: int = Field(3, ge=1, le=MAX_ROUNDS_LIMIT, description="Reviews of one task before it fails as "
                            "needing a human.")


class ReviewAnswer(_Strict):
    """What a rehearsal's reviewer answers in one review round."""

    verdict: Literal["approved", "changes_requested"]
    comments: list[str] = Field(default_factory=list)


class Script(_Strict):
    """What the built-in deterministic `script` agent does in the task's worktree."""

    write: dict[str, str] = Field(default_factory=dict, description="path -> full new content.")
    append: dict[str, str] = Field(default_factory=dict, description="path -> text appended.")
    replace: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="path -> {old text: new text}; each old text must occur."
    )
    delete: list[str] = Field(default_factory=list, description="Paths removed.")
    run: list[str] = Field(default_factory=list, description="Shell commands run after the edits.")
    delay: Duration = Field(0.0, description="Time the agent 'thinks' before editing (e.g. 2s).")
    fail: bool = Field(False, description="Exit non-zero after the edits (to rehearse failures).")
    review: list[ReviewAnswer] = Field(default_factory=list, description="In a rehearsal of a reviewed task, "
                                       "the reviewer's answer round by round (the last repeats); approved if none.")
    fix: dict[str, str] = Field(default_factory=dict, description="In a rehearsal, what the fixer writes in "
                                "each fix round: path -> full new content.")
    resolve: dict[str, str] = Field(default_factory=dict, description="What the resolver writes when this "
                                    "task's work conflicts at integration: path -> full new content (the `script` "
                                    "agent and rehearsals).")


class Integration(_Strict):
    verify: str | None = Field(None, description="Full test command run on the integrated tree.")
    agents: bool = Field(True, description="Conflicts go to a resolver agent and a failing integration test to "
                         "an integration-engineer agent, each judged by the tests; false: they fail the run.")
    max_rounds: int | None = Field(None, ge=1, le=MAX_ROUNDS_LIMIT, description="Tries of the resolver per "
                                   "conflict and of the integration engineer; defaults.max_rounds when absent.")
    script: Script | None = Field(None, description="What the `script` agent (and a rehearsal) does as the "
                                  "integration engineer (`write`/`replace`...) and as the end review (`review`, "
                                  "`fix`).")


class Task(Environment):
    id: Annotated[str, Field(pattern=ID_PATTERN, max_length=64)]
    title: str
    prompt: str = Field(description="What the agent is asked to do.")
    role: str | None = Field(None, description="The role prompt that opens the agent's prompt (software-engineer, "
                             "sdet, … or .plait/roles/NAME.md); also selects a profile of that name.")
    agent: str | None = Field(None, description="Agent profile; the plan default when absent.")
    needs: list[str] = Field(default_factory=list, description="Ids of tasks whose work this one builds on.")
    files: list[str] = Field(default_factory=list, description="Declared scope: repo-relative paths or globs.")
    reads: list[str] = Field(default_factory=list, description="Files the task reads but does not change "
                             "(inputs, not write scope): repo-relative paths or globs.")
    repo: str | None = Field(None, description="In a plan that spans repositories, the one this task changes. "
                             "plait runs one repository at a time.")
    size: Size = Size.M
    estimate: Duration | None = Field(None, description="Explicit estimate; otherwise from size.")
    verify: str | None = Field(None, description="Shell command that proves the task works.")
    acceptance: list[str] = Field(default_factory=list, description="Acceptance criteria.")
    gate: bool = Field(False, description="A checkpoint: dependents wait for it to be verified and reviewed; if it "
                       "fails, nothing new starts.")
    review: ReviewMode | None = Field(None, description="This task's review (per-task, per-level, end or never); "
                                      "the plan default when absent.")
    max_rounds: int | None = Field(None, ge=1, le=MAX_ROUNDS_LIMIT, description="This task's review rounds.")
    timeout: Duration | None = None
    script: Script | None = Field(None, description="Edits for the built-in `script` agent.")
    allow_empty: bool = Field(False, description="The task may change no file (a check-only task); otherwise "
                              "an attempt that changes nothing fails.")
    allow_deletions: bool = Field(False, description="Let the task delete many files (more than 25, or more "
                                  "than half of its base) or plait's plan and config files.")

    @property
    def seconds(self) -> float:
        return self.estimate if self.estimate is not None else SIZE_SECONDS[self.size]


class Plan(_Strict):
    plait: Literal[1] = Field(description="Plan format version.")
    name: str
    base: str | None = Field(None, description="Branch or commit the run starts from; HEAD when absent.")
    spec: str | None = Field(None, description="Repository path of the spec every agent reads.")
    constitution: str | None = Field(None, description="Repository path (file or folder of .md files) of the "
                                     "project's rules every agent follows.")
    defaults: Defaults = Field(default_factory=Defaults)  # type: ignore[arg-type]
    preflight: list[Check] = Field(default_factory=list)
    contracts: list[Contract] = Field(default_factory=list)
    integration: Integration = Field(default_factory=Integration)  # type: ignore[arg-type]
    tasks: list[Task] = Field(min_length=1)

    def task(self, task_id: str) -> Task:
        for t in self.tasks:
            if t.id == task_id:
                return t
        raise KeyError(task_id)

    def verify_for(self, task: Task) -> str | None:
        return task.verify if task.verify is not None else self.defaults.verify

    def agent_for(self, task: Task, profiles: Collection[str] = ()) -> str:
        """The task's profile: its `agent`, else a profile named after its `role`, else the default."""
        if task.agent:
            return task.agent
        if task.role and task.role in profiles:
            return task.role
        return self.defaults.agent

    def reviewed(self, task: Task) -> bool:
        """Reviewed on its own, once it verifies (per-task)."""
        return (task.review or self.defaults.review) == "per-task"

    def level_reviewed(self, task: Task) -> bool:
        """Reviewed with the other tasks of its dependency level, before its dependents start (per-level)."""
        return (task.review or self.defaults.review) == "per-level"

    @property
    def review_at_end(self) -> bool:
        """The integrated result is reviewed once (`end`, the plan's default or any task's)."""
        return self.defaults.review == "end" or any(t.review == "end" for t in self.tasks)

    def max_rounds_for(self, task: Task) -> int:
        return task.max_rounds if task.max_rounds is not None else self.defaults.max_rounds

    def timeout_for(self, task: Task) -> float:
        return task.timeout if task.timeout is not None else self.defaults.timeout


def json_schema() -> dict[str, Any]:
    schema = Plan.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "plait plan (format 1)"
    return schema
