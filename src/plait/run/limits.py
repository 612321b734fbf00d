"""Per-profile concurrency that backs off on rate limits: additive increase, multiplicative
decrease (AIMD), as TCP does for congestion."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class AdaptiveLimits:
    ceilings: dict[str, int]  # the configured limit per profile (or the job count)
    current: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.current = dict(self.ceilings) | self.current

    def throttled(self, profile: str) -> int:
        """A rate limit or overload: halve the profile's concurrency (at least 1)."""
        now = self.current.get(profile, 1)
        self.current[profile] = max(1, now // 2)
        return self.current[profile]

    def succeeded(self, profile: str) -> int:
        """A clean finish: one more slot, up to the ceiling."""
        ceiling = self.ceilings.get(profile, 1)
        self.current[profile] = min(ceiling, self.current.get(profile, ceiling) + 1)
        return self.current[profile]
