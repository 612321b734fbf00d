"""`plait run --rehearse`: the real agent CLIs of the plan's profiles, talking to plait's scripted
model server instead of a provider. Each task's `script:` edits become the model's tool calls, so
the whole orchestration (worktrees, limits, verify, integration) runs without spending a token."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

from plait.plan.model import Plan, Task
from plait.testing import ModelServer, Scenario, scenario_from_script, text
from plait.testing.scenario import fix_scenario, review_scenario

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
    and fixer's in every round (`<task>/review-<n>`, `<task>/fix-<n>`; script `review:` and `fix:`)."""
    script = task.script
    found = {task.id: scenario_from_script(script, latency=latency) if script
             else Scenario([text(f"Rehearsal of {task.id}: nothing scripted.")], latency=latency)}
    if plan.reviewed(task):
        answers = script.review if script else []
        for n in range(1, plan.max_rounds_for(task) + 1):
            answer = answers[min(n, len(answers)) - 1] if answers else None
            found[f"{task.id}/review-{n}"] = found[f"{task.id}/review-{n}-retry"] = review_scenario(answer, latency)
            found[f"{task.id}/fix-{n}"] = fix_scenario(script.fix if script else {}, latency)
    return found


@contextmanager
def rehearsal(plan: Plan, run_id: str, latency: float = 0.0) -> Iterator[tuple[ModelServer, TaskEnv]]:
    """A running scripted server with one scenario per agent (its own API key), and each agent's env."""
    keys: dict[str, str] = {}
    with ModelServer() as server:
        for t in plan.tasks:
            for agent_id, scenario in scenarios(plan, t, latency).items():
                keys[agent_id] = f"plait-rehearsal-{run_id}-{agent_id.replace('/', '~')}"  # ~ is in no task id
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
