"""The plan: the contract between humans, planner agents and the engine."""

from __future__ import annotations

from plait.plan.model import Plan, Task

__all__ = ["Plan", "Task"]
