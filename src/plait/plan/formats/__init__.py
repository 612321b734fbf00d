"""Plans written by other tools, read as plait plan data (format 1) for `load.py` to type-check.

Every reader returns a `Parsed`, or raises `PlanError` listing every problem it found at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from plait.plan.validate import Diagnostic

Keys = tuple[str | int, ...]
# Where a value of the plan data came from: (line, column) in the plan file, or (file, line, column)
# when the plan spans several files (a ccpm epic folder, a split plan).
Position = tuple[int, int] | tuple[str, int, int]


@dataclass(frozen=True)
class Parsed:
    data: dict[str, Any]  # plan format 1 data, as a YAML plan would give it
    positions: dict[Keys, Position]
    warnings: list[Diagnostic]
    # task id -> {needed task id: why the edge was inferred rather than written}; `plait import` writes
    # these as comments beside each inferred `needs` entry.
    inferred: dict[str, dict[str, str]] = field(default_factory=dict)
