"""`plait run --rehearse`: the real agent CLIs of the plan's profiles, talking to plait's scripted
model server instead of a provider. Each task's `script:` edits become the model's tool calls, so
the whole orchestration (worktrees, limits, verify, integration) runs without spending a token."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from plait import graph
from plait.errors import Location, PlaitError
from plait.plan.model import Plan, ReviewAnswer, Task
from plait.testing import ModelServer, Scenario, author_scenario, scenario_from_script, text
from plait.testing.scenario import Write, fix_scenario, review_scenario

if TYPE_CHECKING:
    from plait.workflow.agent import RoleJob

# Per-task environment on top of a profile's allow-listed one.
TaskEnv = Callable[[str], dict[str, str]]


def endpoint_env(url: str, api_key: str) -> dict[str, str]:
    """Where each CLI looks for its provider: every adapter reads one of these."""
    return {
        "ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": api_key,
        "OPENAI_BASE_URL": f"{url}/v1", "OPENAI_API_KEY": api_key,
        "GOOGLE_GEMINI_BASE_URL": url, "GEMINI_API_KEY": api_key,
    }


def scenarios(plan: Plan, task: Task, latency: float) -> dict[str, Scenario]:
    """Agent id -> scenario: the task's own (its `script:` edits), and for a reviewed task its reviewer's
    and fixer's in every round (`<task>/review-<n>`, `<task>/fix-<n>`; script `review:` and `fix:`); a
    per-level task's fixer only (its level's reviewer is in `level_scenarios`)."""
    script = task.script
    found = {task.id: scenario_from_script(script, latency=latency) if script
             else Scenario([text(f"Rehearsal of {task.id}: nothing scripted.")], latency=latency)}
    for n in range(1, plan.max_rounds_for(task) + 1):
        if plan.reviewed(task):
            found[f"{task.id}/review-{n}"] = found[f"{task.id}/review-{n}-retry"] = review_scenario(
                _answer(task, n), latency)
        if plan.reviewed(task) or plan.level_reviewed(task):
            found[f"{task.id}/fix-{n}"] = fix_scenario(script.fix if script else {}, latency)
    return found


def level_scenarios(plan: Plan, latency: float) -> dict[str, Scenario]:
    """The reviewer of each level's per-level review, round by round (`level-<n>/review-<r>`): one verdict
    naming every task of the level whose `script: review:` answer for that round requests changes."""
    level = graph.levels({t.id: list(t.needs) for t in plan.tasks})
    found: dict[str, Scenario] = {}
    for depth in sorted({level[t.id] for t in plan.tasks if plan.level_reviewed(t)}):
        tasks = [t for t in plan.tasks if plan.level_reviewed(t) and level[t.id] == depth]
        for n in range(1, max(plan.max_rounds_for(t) for t in tasks) + 1):
            rejected = {t.id: a.comments or ["(changes requested)"] for t in tasks
                        if (a := _answer(t, n)) and a.verdict == "changes_requested"}
            verdict = {"verdict": "changes_requested", "tasks": rejected} if rejected else {"verdict": "approved"}
            final = f"Reviewed the level.\n{json.dumps(verdict)}"
            found[f"level-{depth}/review-{n}"] = found[f"level-{depth}/review-{n}-retry"] = Scenario(
                [], latency=latency, final=final)
    return found


def _answer(task: Task, n: int) -> ReviewAnswer | None:
    """The task's scripted review answer in round `n` (the last repeats; None: approved)."""
    return _round(task.script.review if task.script else [], n)


def _round(answers: Sequence[ReviewAnswer], n: int) -> ReviewAnswer | None:
    return answers[min(n, len(answers)) - 1] if answers else None


def integration_scenarios(plan: Plan, latency: float) -> dict[str, Scenario]:
    """The agents at integration (plait.run.resolve), by agent id: each task's resolver in every round
    (`integration/resolve-<task>/round-<n>`, writing the task's `script: resolve:`), the integration engineer
    (`integration/test/repair-<n>`, the plan's `integration: script:`), and the end review's reviewer and
    fixer (`integration/test/end-review-<n>`, `-retry`, `end-fix-<n>`; `integration: script: review:`/`fix:`),
    and the integration verifier (`integration/test/verifier`, which leaves plait's marks as they are)."""
    rounds = plan.integration.max_rounds or plan.defaults.max_rounds
    script = plan.integration.script
    found: dict[str, Scenario] = {}
    for t in plan.tasks:
        resolution = t.script.resolve if t.script else {}
        for n in range(1, rounds + 1):
            found[f"integration/resolve-{t.id}/round-{n}"] = Scenario(
                [Write(path, content) for path, content in resolution.items()], latency=latency,
                final="Resolved the conflict." if resolution else "Rehearsal: no resolution scripted.")
    found["integration/test/verifier"] = Scenario([], latency=latency,
                                                  final="Rehearsal: the concerns keep plait's marks.")
    answers = script.review if script else []
    for n in range(1, max(rounds, plan.defaults.max_rounds) + 1):
        found[f"integration/test/repair-{n}"] = (scenario_from_script(script, latency=latency) if script else
                                                  Scenario([text("Rehearsal: no repair scripted.")], latency=latency))
        answer = _round(answers, n)
        found[f"integration/test/end-review-{n}"] = found[f"integration/test/end-review-{n}-retry"] = \
            review_scenario(answer, latency)
        found[f"integration/test/end-fix-{n}"] = fix_scenario(script.fix if script else {}, latency)
    return found


@contextmanager
def rehearsal(plan: Plan, run_id: str, latency: float = 0.0,
              host: str = "127.0.0.1") -> Iterator[tuple[ModelServer, TaskEnv]]:
    """A running scripted server with one scenario per agent (its own API key), and each agent's env. `host`:
    the address it listens on and the agents reach it at (another machine's, for a Ray cluster's nodes)."""
    keys: dict[str, str] = {}
    with ModelServer(host=host) as server:
        every = [scenarios(plan, t, latency) for t in plan.tasks] + [level_scenarios(plan, latency)]
        for agent_id, scenario in ((a, s) for found in every for a, s in found.items()):
            keys[agent_id] = f"plait-rehearsal-{run_id}-{agent_id.replace('/', '~')}"  # ~ is in no task id
            server.add(keys[agent_id], scenario)
        for agent_id, scenario in integration_scenarios(plan, latency).items():
            keys[agent_id] = f"plait-rehearsal-{run_id}-{agent_id.replace('/', '~')}"
            server.add(keys[agent_id], scenario)
        yield server, lambda agent_id: endpoint_env(server.url, keys[agent_id])


def scripted_roles(server: ModelServer, scenario_for: Callable[[RoleJob], Scenario]) -> Callable[[RoleJob],
                                                                                               Mapping[str, str]]:
    """A `role_env` for plait.workflow's `write_spec` and `write_plan`: each agent run (`spec-1`, `plan-2`...)
    gets its own API key on `server`, answered by `scenario_for(job)` (`job.outputs[0]` is the file it asks for)."""
    def env(job: RoleJob) -> Mapping[str, str]:
        key = f"plait-role-{job.role}-{job.log_dir.name}"
        server.add(key, scenario_for(job))
        return endpoint_env(server.url, key)

    return env


class WorkflowScript(BaseModel):
    """`plait go --rehearse FILE`: what the spec writer and the planner answer in a rehearsal."""

    model_config = ConfigDict(extra="forbid")
    spec: str = Field(description="The spec the spec writer writes.")
    plan: list[str] = Field(min_length=1, description="The plan the planner writes, round by round (a repair "
                            "round gets the next one; the last repeats).")


def workflow_script(path: Path) -> WorkflowScript:
    """Read a rehearsal file; anything wrong is one line naming the file and what to fix."""
    where = Location(str(path))
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise PlaitError(f"cannot read it: {exc.strerror or exc}", "give --rehearse a readable YAML file",
                         where) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = Location(str(path), mark.line + 1, mark.column + 1) if mark else where
        raise PlaitError(f"not valid YAML: {getattr(exc, 'problem', None) or exc}", "fix the YAML syntax",
                         line) from None
    if isinstance(doc, dict) and isinstance(doc.get("plan"), str):
        doc = {**doc, "plan": [doc["plan"]]}
    try:
        return WorkflowScript.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "the file"
        raise PlaitError(f"{field}: {first['msg']}", "give `spec: <the spec's text>` and `plan: [<plan text>, ...]`",
                         where) from None


def workflow_scenario(script: WorkflowScript) -> Callable[[RoleJob], Scenario]:
    """The spec writer writes `script.spec`; the planner's n-th run writes `script.plan[n-1]` (the last repeats)."""
    def scenario_for(job: RoleJob) -> Scenario:
        rel = job.outputs[0]
        if job.role == "spec-writer":
            return author_scenario(rel, script.spec, "Wrote the spec.")
        n = int(job.log_dir.name.rsplit("-", 1)[-1]) if job.log_dir.name.rsplit("-", 1)[-1].isdigit() else 1
        return author_scenario(rel, script.plan[min(n, len(script.plan)) - 1], "Wrote the plan.")

    return scenario_for
