"""plait: run a team of AI coding agents in parallel on git worktrees."""

from __future__ import annotations

__version__ = "0.1.0"
