"""plait: run a team of AI coding agents in parallel, each in its own sandboxed git workspace."""

from __future__ import annotations

__version__ = "0.1.0"
