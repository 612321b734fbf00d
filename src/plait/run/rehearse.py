"""`plait run --rehearse`: the real agent CLIs of the plan's profiles, talking to plait's scripted
model server instead of a provider. Each task's `script:` edits become the model's tool calls, so
the whole orchestration (worktrees, limits, verify, integration) runs without spending a token."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from plait.plan.model import Plan
from plait.testing import ModelServer, Scenario, scenario_from_script, text

# Per-task environment on top of a profile's allow-listed one.
TaskEnv = Callable[[str], dict[str, str]]


def endpoint_env(url: str, api_key: str) -> dict[str, str]:
    """Where each CLI looks for its provider: every adapter reads one of these."""
    return {
        "ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": api_key,
        "OPENAI_BASE_URL": f"{url}/v1", "OPENAI_API_KEY": api_key,
        "GOOGLE_GEMINI_BASE_URL": url, "GEMINI_API_KEY": api_key,
    }


@contextmanager
def rehearsal(plan: Plan, run_id: str, latency: float = 0.0) -> Iterator[tuple[ModelServer, TaskEnv]]:
    """A running scripted server with one scenario per task (its own API key), and the env for each task."""
    keys = {t.id: f"plait-rehearsal-{run_id}-{t.id}" for t in plan.tasks}
    with ModelServer() as server:
        for t in plan.tasks:
            scenario = (scenario_from_script(t.script, latency=latency) if t.script
                        else Scenario([text(f"Rehearsal of {t.id}: nothing scripted.")], latency=latency))
            server.add(keys[t.id], scenario)
        yield server, lambda task_id: endpoint_env(server.url, keys[task_id])
