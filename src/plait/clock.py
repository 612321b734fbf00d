"""Where the engine gets its time for scheduling and waiting: a Protocol, the real clock, and (in
plait.testing) a virtual one, so retries, back-off and rate-limit waits can be tested in milliseconds.

Timestamps written to the event log and the evidence are wall-clock time (`time.time()`): they say when
something happened, whatever clock drove the schedule."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic scale: what schedule times (back-off ends) are measured in."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait this long (a virtual clock just moves on)."""
        ...


class RealClock:
    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)
