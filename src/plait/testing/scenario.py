"""Scenarios: what the scripted model server answers, one step per model turn.

A step is what the "model" does in one turn: call a tool that writes or edits a file or runs a
command, answer with text, fail with an HTTP error, or hang. The server finds the turn from the
conversation the client sends (how many assistant turns it already holds), so a retried request
gets the same answer and the server keeps no per-conversation state. `fail` and `hang` do not
consume a turn: `fail(429)` fails every request at its turn (the CLI gives up after its retries);
`fail(429, times=2)` fails the first two and then serves the next step.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from plait.plan.model import ReviewAnswer, Script


@dataclass(frozen=True)
class Write:
    path: str
    content: str


@dataclass(frozen=True)
class Edit:
    path: str
    old: str
    new: str


@dataclass(frozen=True)
class Run:
    command: str


@dataclass(frozen=True)
class Text:
    message: str


@dataclass(frozen=True)
class Call:
    """Any tool the CLI offers, called by name with these arguments (e.g. an MCP server's
    `mcp__plait__run` in Claude Code): the scripted model as an MCP client."""

    tool: str
    args: dict[str, Any]


@dataclass(frozen=True)
class Fail:
    status: int
    message: str | None = None  # the API's usual wording for `status` when None
    times: int | None = None  # None: every request at this turn fails


@dataclass(frozen=True)
class Hang:
    seconds: float


Step = Write | Edit | Run | Text | Call | Fail | Hang
# Steps that make the model produce something (a tool call or text) and so consume a turn.
Action = Write | Edit | Run | Text | Call
# Steps that only shape how a turn is answered.
Obstacle = Fail | Hang


def write(path: str, content: str) -> Write:
    """Create or overwrite `path` (relative to the agent's working directory) with `content`."""
    return Write(path, content)


def edit(path: str, old: str, new: str) -> Edit:
    """Replace the first occurrence of `old` with `new` in `path`."""
    return Edit(path, old, new)


def run(command: str) -> Run:
    """Run a shell command through the CLI's shell tool."""
    return Run(command)


def call(tool: str, **args: Any) -> Call:
    return Call(tool, args)


def text(message: str) -> Text:
    """Answer with text and end the turn (a CLI then finishes its run)."""
    return Text(message)


def fail(status: int, message: str | None = None, times: int | None = None) -> Fail:
    """Answer with an HTTP error: 429 rate limit, 529 overloaded, 401 auth, 500 server, 400 too long."""
    return Fail(status, message, times)


def hang(seconds: float) -> Hang:
    """Hold the request open for `seconds` before answering with the next step."""
    return Hang(seconds)


@dataclass(frozen=True)
class Scenario:
    """The steps of one conversation, and how long each model turn takes."""

    steps: tuple[Step, ...] = ()
    latency: float = 0.0  # seconds the server waits before each main answer
    final: str = "done"  # the text answered once the steps are used up

    def __init__(self, steps: Iterable[Step] = (), latency: float = 0.0, final: str = "done") -> None:
        object.__setattr__(self, "steps", tuple(steps))
        object.__setattr__(self, "latency", latency)
        object.__setattr__(self, "final", final)


@dataclass(frozen=True)
class TurnPlan:
    """What to do for one request: wait, maybe fail, else perform `actions` (empty: final text)."""

    hang: float = 0.0
    fail: Fail | None = None
    fail_ordinal: int = 0  # which counted failure this is (for `times`)
    actions: tuple[Action, ...] = ()
    final_text: str = "done"
    turn: int = 0


def group_turns(steps: Sequence[Step], batch_edits: bool) -> list[tuple[list[Obstacle], list[Action]]]:
    """Split steps into turns: (the fail/hang steps before the turn, the actions of the turn).

    With `batch_edits` (Aider: it handles one answer per message, applying every edit block in it)
    consecutive actions form one turn; otherwise every action is its own turn.
    """
    turns: list[tuple[list[Obstacle], list[Action]]] = []
    before: list[Obstacle] = []
    actions: list[Action] = []
    for step in steps:
        if isinstance(step, Fail | Hang):
            if actions:
                turns.append((before, actions))
                before, actions = [], []
            before.append(step)
            continue
        if actions and not batch_edits:
            turns.append((before, actions))
            before, actions = [], []
        actions.append(step)
    if actions or before:
        turns.append((before, actions))
    return turns


def plan_turn(scenario: Scenario, turn: int, failures_so_far: int, batch_edits: bool = False) -> TurnPlan:
    """The answer for request number `turn` of a conversation (0 = first model call).

    `failures_so_far` is how many requests at this turn already got a counted failure; it lets
    `fail(..., times=n)` give way to the next step after n failures.
    """
    turns = group_turns(scenario.steps, batch_edits)
    if turn >= len(turns):
        return TurnPlan(final_text=scenario.final, turn=turn)
    before, actions = turns[turn]
    waited = 0.0
    budget = failures_so_far
    for step in before:
        if isinstance(step, Hang):
            waited += step.seconds
        elif step.times is None:
            return TurnPlan(hang=waited, fail=step, turn=turn)
        elif budget < step.times:
            return TurnPlan(hang=waited, fail=step, fail_ordinal=failures_so_far, turn=turn)
        else:
            budget -= step.times
    return TurnPlan(hang=waited, actions=tuple(actions), final_text=scenario.final, turn=turn)


def scenario_from_script(script: Script, latency: float = 0.0) -> Scenario:
    """The plan's deterministic edits as model turns, for rehearsals with real agent CLIs.

    Appends and deletes become shell commands; `delay` becomes a hang before the first turn;
    `fail` ends the scenario with an HTTP 500 that the CLI cannot get past.
    """
    steps: list[Step] = []
    if script.delay:
        steps.append(Hang(script.delay))
    steps += [Write(path, content) for path, content in script.write.items()]
    for path, appended in script.append.items():
        steps.append(Run(f"printf %s {shlex.quote(appended)} >> {shlex.quote(path)}"))
    for path, edits in script.replace.items():
        steps += [Edit(path, old, new) for old, new in edits.items()]
    steps += [Run(f"rm -f {shlex.quote(path)}") for path in script.delete]
    steps += [Run(command) for command in script.run]
    if script.fail:
        steps.append(Fail(500, "the rehearsal script asked to fail"))
    return Scenario(steps, latency=latency)


def review_scenario(answer: ReviewAnswer | None = None, latency: float = 0.0) -> Scenario:
    """A reviewer's turn: read nothing, answer with the verdict as its final message (approved when None)."""
    answer = answer or ReviewAnswer(verdict="approved")
    verdict = json.dumps({"verdict": answer.verdict, "comments": answer.comments})
    return Scenario([], latency=latency, final=f"Reviewed the change.\n{verdict}")


def fix_scenario(files: dict[str, str], latency: float = 0.0) -> Scenario:
    """A fixer's turns: write `files`, then say so."""
    return Scenario([Write(path, content) for path, content in files.items()], latency=latency,
                    final="Addressed the review comments.")


def author_scenario(path: str, content: str, final: str = "Wrote it.", latency: float = 0.0) -> Scenario:
    """A role agent's turns (plait.workflow's spec writer or planner): write `path`, then end with `final`."""
    return Scenario([Write(path, content), Text(final)], latency=latency)
