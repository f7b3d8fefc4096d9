"""Mirror cool-down (resilient mode only): a host that keeps failing is skipped a while.

mirrorlab's own, so that a dead mirror costs only the first pulls. A host that failed at
the connection level twice in a row (or timed out once: that already cost a whole read
timeout) is skipped for `seconds`; the order among the rest is kept, and when every
usable source cools down, none is skipped. Node modes never use it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .outcomes import HOST_FAILURES, Outcome


@dataclass
class CoolDown:
    """Per-host consecutive failure counts and when each host may be tried again."""

    seconds: float = 30.0
    threshold: int = 2
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, int] = field(default_factory=dict)
    _until: dict[str, float] = field(default_factory=dict)

    def active(self, host: str) -> bool:
        return self.seconds > 0 and self._until.get(host, 0.0) > self.clock()

    def record(self, host: str, outcome: Outcome) -> None:
        if outcome == Outcome.SERVED:
            self._failures.pop(host, None)
            self._until.pop(host, None)
        elif outcome in HOST_FAILURES:
            count = self._failures.get(host, 0) + (self.threshold if outcome == Outcome.TIMEOUT
                                                   else 1)
            self._failures[host] = count
            if count >= self.threshold and self.seconds > 0:
                self._until[host] = self.clock() + self.seconds

    def cooling(self, hosts: list[str]) -> set[str]:
        """The hosts to skip among `hosts` (the usable ones); none if all of them cool."""
        cooling = {host for host in hosts if self.active(host)}
        return set() if cooling == set(hosts) else cooling

    def clear(self) -> None:
        self._failures.clear()
        self._until.clear()
