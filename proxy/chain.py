"""Trying sources in order: attempt records, the all-failed message, and mirror cool-down.

Every failure of a source moves to the next one, as in containers/image. When all fail,
the message has upstream's shape, `(Mirrors also failed: [m1: e1]\\n[m2: e2]): src: e`,
so it reads like what podman would have printed.

The cool-down is mirrorlab's own: a host that failed at the connection level several
times in a row is skipped for a while (order kept among the rest), so a dead mirror
costs only the first pulls. `strict` turns it off for node-faithful runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .plan import PullSource
from .reference import ImageReference

# Outcomes that say a host is unreachable, rather than that it lacks this content.
HOST_FAILURES = frozenset({"connect", "tls", "timeout", "status"})


@dataclass(frozen=True)
class Step:
    """One source of a request's chain, with the logical reference it serves."""

    logical: ImageReference
    source: PullSource


@dataclass(frozen=True)
class Attempt:
    """One source tried (or skipped) for one request."""

    source: str
    outcome: str
    """`served`, `blocked`, `cooldown`, or a failure kind (`not_found`, `connect`, ...)."""
    detail: str = ""
    elapsed_ms: float = 0.0
    fallback: bool = False
    """True when mirrorlab went beyond containers/image (per-blob or per-manifest)."""

    @property
    def failed(self) -> bool:
        return self.outcome != "served"


def aggregate_error(attempts: list[Attempt]) -> str:
    """containers/image's shape: one error unchanged, or mirrors listed before the last."""
    failures = [a for a in attempts if a.failed]
    if not failures:
        return "no source to try"
    last = failures[-1]
    last_text = f"{last.source}: {last.detail}"
    if len(failures) == 1:
        return last.detail
    mirrors = "\n".join(f"[{a.source}: {a.detail}]" for a in failures[:-1])
    return f"(Mirrors also failed: {mirrors}): {last_text}"


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

    def record(self, host: str, outcome: str) -> None:
        if outcome == "served":
            self._failures.pop(host, None)
            self._until.pop(host, None)
        elif outcome in HOST_FAILURES:
            # A timeout already cost a whole read timeout: it trips the cool-down alone.
            count = self._failures.get(host, 0) + (self.threshold if outcome == "timeout"
                                                   else 1)
            self._failures[host] = count
            if count >= self.threshold and self.seconds > 0:
                self._until[host] = self.clock() + self.seconds

    def order(self, steps: list[Step]) -> tuple[list[Step], list[Step]]:
        """All steps, and those to skip; if every usable one cools down, none is skipped."""
        usable = [s for s in steps if not s.source.blocked]
        cooling = [s for s in usable if self.active(s.source.host)]
        if cooling and len(cooling) == len(usable):
            return steps, []
        return steps, cooling
