"""The one attempt loop: try sources in order, record each attempt, ask the mode what next.

Manifests, blobs, tags and referrers all go through `AttemptLoop.run`. A handler gives it
the candidates (from `Fallback.candidates`) and a coroutine that tries one source and
either returns the result or raises; the loop skips blocked and cooling sources, maps the
exception to an `Outcome` (an unmapped one is a bug and propagates), records, counts and
logs the attempt, and consults the `Fallback` rules to go on or stop.

In `blob` mode the walk past the first source is shared by the requests of one pull, as
PR #845's `getBlobWithMirrorFallback` does: `PullWalk` holds the sources not yet
consumed and the one found to work (`mirrorOverride`), behind a lock.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from .cooldown import CoolDown
from .failures import describe, outcome_of_error
from .fallback import Fallback
from .metrics import Metrics
from .outcomes import Attempt, Outcome, SourceFailure
from .steps import Step

log = logging.getLogger("mirrorlab.proxy")

T = TypeVar("T")


@dataclass
class PullWalk:
    """Blob mode's shared state of one pull: the sources after the manifest's, not yet
    tried, and the one that served a blob after a fallback (used from then on)."""

    remaining: list[str]
    """Source repositories (`Step.source_name`) after the manifest's, not yet walked."""
    override: str | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class PullWalks:
    """PullWalk per pull: per top-level manifest served (`steps.Remembered.pull`), so a
    later pull of the same image walks afresh."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._walks: dict[str, PullWalk] = {}

    def get(self, pull: str, remaining: list[str]) -> PullWalk:
        walk = self._walks.get(pull)
        if walk is None:
            if len(self._walks) >= self.limit:
                self._walks.pop(next(iter(self._walks)))
            walk = self._walks[pull] = PullWalk(list(remaining))
        return walk

    def clear(self) -> None:
        self._walks.clear()


@dataclass
class AttemptLoop(Generic[T]):
    """One request's walk over its sources."""

    kind: str
    referenced: bool
    """Whether what is asked for was referenced by a manifest this proxy served."""
    fallback: Fallback
    cooldown: CoolDown
    metrics: Metrics
    request_id: int
    blocked_origin: str = ""
    attempts: list[Attempt] = field(default_factory=list)
    served_by: Step | None = None
    retry_delay: float = 1.0
    home: str = ""
    """The source of the referencing manifest: any other one serving is a fallback."""

    def record(self, step: Step, outcome: Outcome, detail: str, started: float | None,
               *, code: str | None = None) -> Attempt:
        """Append the attempt of `step`, count it and log it."""
        elapsed = (time.monotonic() - started) * 1000 if started is not None else 0.0
        fallback = self.referenced and step.source_name != self.home
        rescued: tuple[str, ...] = ()
        if outcome == Outcome.SERVED:
            probe = [*self.attempts, Attempt(str(step.source.reference), outcome)]
            rescued = self.fallback.rescued(probe, kind=self.kind, referenced=self.referenced)
        attempt = Attempt(str(step.source.reference), outcome, detail, elapsed, fallback, code,
                          rescued)
        self.attempts.append(attempt)
        host = step.source.host
        self.metrics.attempts.labels(self.kind, host, str(outcome)).inc()
        if self.fallback.cooldown and outcome not in (Outcome.BLOCKED, Outcome.COOLDOWN):
            self.cooldown.record(host, outcome)
        if rescued:
            self.metrics.rescues.labels(self.kind, ",".join(rescued)).inc()
        event: dict[str, object] = {
            "event": "attempt", "request": self.request_id, "kind": self.kind,
            "logical": str(step.logical), "source": attempt.source, "outcome": str(outcome),
            "detail": detail, "ms": round(elapsed, 2), "fallback": fallback,
            "mode": str(self.fallback.mode)}
        if code:
            event["code"] = code
        if rescued:
            event["rescued"] = list(rescued)
            event["note"] = f"a node in {' or '.join(rescued)} mode fails here"
        log.info(json.dumps(event))
        return attempt

    def _skipped(self, step: Step, cooling: set[str]) -> bool:
        source = step.source
        if source.blocked:
            self.record(step, Outcome.BLOCKED, f"registry {source.blocked_by} is blocked in "
                        f"{self.blocked_origin}", None)
        elif source.host in cooling:
            self.record(step, Outcome.COOLDOWN, f"{source.host} failed repeatedly; skipped "
                        f"for {self.cooldown.seconds:g}s", None)
        else:
            return False
        return True

    async def _try(self, step: Step, attempt: Callable[[Step], Awaitable[T]]
                   ) -> tuple[T | None, SourceFailure | None]:
        """One try of one source, recorded: its result, or its failure."""
        started = time.monotonic()
        try:
            value = await attempt(step)
        except Exception as error:
            outcome = outcome_of_error(error)
            if outcome is None:
                raise
            failure = error if isinstance(error, SourceFailure) else SourceFailure(
                outcome, describe(error))
            self.record(step, outcome, str(failure), started, code=failure.code)
            return None, failure
        self.metrics.latency.labels(self.kind, step.source.host).observe(
            time.monotonic() - started)
        self.served_by = step
        if self.attempts:
            self.metrics.fallbacks.labels(self.kind).inc()
        self.record(step, Outcome.SERVED, "", started)
        return value, None

    async def run(self, candidates: list[Step], attempt: Callable[[Step], Awaitable[T]],
                  walk: PullWalk | None = None) -> T | None:
        """The first result of `attempt` over the candidates, or None when none served.

        With a `walk` (blob mode), the walk decides which of the candidates come after the
        first (the manifest's source), and a source it found replaces that one."""
        steps = list(candidates)
        self.home = steps[0].source_name if steps else ""
        by_name = {step.source_name: step for step in steps}
        if walk is not None:
            async with walk.lock:  # another request of the pull is walking: wait for it
                steps = [by_name.get(walk.override or "", steps[0])]
        usable = [s.source.host for s in steps if not s.source.blocked]
        cooling = self.cooldown.cooling(usable) if self.fallback.cooldown else set()
        locked = False
        try:
            index = 0
            while index < len(steps):
                step = steps[index]
                if self._skipped(step, cooling):
                    index += 1
                    continue
                if locked and walk is not None and step.source_name in walk.remaining:
                    walk.remaining.remove(step.source_name)  # used up, as upstream
                value, failure = await self._try(step, attempt)
                more = index + 1 < len(steps) or (walk is not None and bool(walk.remaining))
                if failure is not None and not failure.final and more and \
                        self.fallback.retries_same_source(
                        failure.outcome, kind=self.kind, referenced=self.referenced):
                    await asyncio.sleep(self.retry_delay)
                    value, failure = await self._try(step, attempt)
                if failure is None:
                    if locked and walk is not None:
                        walk.override = step.source_name
                    return value
                if failure.final or not self.fallback.goes_on(
                        failure.outcome, failure.code, kind=self.kind,
                        referenced=self.referenced):
                    return None
                if walk is not None and not locked:
                    # The first source failed: walk on under the pull's lock, trying first a
                    # source another request found meanwhile (`retireStaleOverride`).
                    await walk.lock.acquire()
                    locked = True
                    names = [walk.override] if walk.override not in (None, step.source_name) \
                        else []
                    names += [name for name in walk.remaining if name not in names]
                    steps = [step, *(by_name[name] for name in names if name in by_name)]
                index += 1
            return None
        finally:
            if locked and walk is not None:
                walk.lock.release()
