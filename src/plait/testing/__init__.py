"""Test support that ships with plait: a scripted model server for real agent CLIs, and a FakeAgent
with a VirtualClock for fast tests of what the engine decides (plait.testing.fake).

Users' own tests can use it too: start a `ModelServer`, give each agent its own API key with a
`Scenario` of steps, point the CLI at `server.url`, and assert on the files and `server.requests`.
"""

from __future__ import annotations

from plait.testing.bins import agent_bin, agent_cache_dir
from plait.testing.fake import FakeAgent, Outcome, VirtualClock
from plait.testing.scenario import (
    Call,
    Edit,
    Fail,
    Hang,
    Run,
    Scenario,
    Step,
    Text,
    Write,
    author_scenario,
    call,
    edit,
    fail,
    hang,
    run,
    scenario_from_script,
    text,
    write,
)
from plait.testing.server import ModelServer, RecordedRequest

__all__ = [
    "Call", "Edit", "Fail", "FakeAgent", "Hang", "ModelServer", "Outcome", "RecordedRequest", "Run", "Scenario", "Step",
    "Text", "VirtualClock", "Write", "agent_bin", "agent_cache_dir", "author_scenario", "call", "edit", "fail", "hang",
    "run", "scenario_from_script", "text", "write",
]
