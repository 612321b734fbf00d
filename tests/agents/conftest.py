from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from plait.testing import agent_bin

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture
def require_cli() -> Callable[[str], Path]:
    """The installed CLI, or: fail under CI (the test command installs them), skip locally."""

    def need(name: str) -> Path:
        path = agent_bin(name)
        if path is None:
            if IN_CI:
                pytest.fail(f"{name} is not installed although CI=true: run scripts/install-agent-clis")
            pytest.skip("run scripts/install-agent-clis")
        return path

    return need
