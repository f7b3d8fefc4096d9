"""Fallback modes: which sources a request may try, in what order, and when to go on.

A pull is one top-level manifest and then what it references (per-platform manifests,
config, layers). containers/image tries the sources of the plan in order for the
top-level manifest, every failure moving to the next (`docker/docker_image_src.go:
newImageSource`); then the source that served it serves everything it references. The
modes differ only in what happens when one of those referenced fetches fails:

- `sticky`: it fails the pull (every release before blob-level fallback; Debian's podman
  and skopeo; OCP nodes up to 4.21). The strictest mode: what passes here passes on every
  node version.
- `blob`: blob-level mirror fallback (container-libs PR #845; go.podman.io/image/v5
  v5.39.3 and v5.41.1 on; OCP 4.22, podman 5.8/6.1): a blob (layers and config, not
  per-platform manifests) that fails at the source of its manifest with a 5xx, a timeout,
  `BLOB_UNKNOWN` or `TOOMANYREQUESTS` goes on to the sources *after* that one in plan
  order; a source that works then serves the rest of the pull (`mirrorOverride`); other
  failures stay fatal. A 5xx or timeout is first retried once, after a second, at the
  same source when sources remain (`tryGetBlob`).
- `resilient`: mirrorlab's own: any failure moves on, a cut stream resumes at the next
  source, and failing hosts cool down. Beyond every node: each response it rescues is
  marked with the node modes that would have failed it.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, TypeVar

from .outcomes import NOT_CONTACTED, Attempt, Outcome, aggregate_error, fallback_error


class FallbackMode(StrEnum):
    STICKY = "sticky"
    BLOB = "blob"
    RESILIENT = "resilient"


def blob_fallback_trigger(outcome: Outcome, code: str | None) -> bool:
    """PR #845's rule (`isMirrorTransientError || isMirrorFallbackError`): a 5xx, a
    timeout, or an OCI error body with `BLOB_UNKNOWN` or `TOOMANYREQUESTS`. A bare 404 or
    429, a refused connection, TLS and authentication failures stay fatal; so do faults
    after the body began (the same source resumes, `body_reader.go`) and wrong digests."""
    return (outcome in (Outcome.SERVER_ERROR, Outcome.TIMEOUT)
            or (outcome == Outcome.NOT_FOUND and code == "BLOB_UNKNOWN")
            or (outcome == Outcome.TOO_MANY_REQUESTS and code == "TOOMANYREQUESTS"))


NODE_MODES = (FallbackMode.STICKY, FallbackMode.BLOB)
MODE_NAMES = tuple(str(mode) for mode in FallbackMode)
_MODES_HELP = ("sticky: what a manifest references comes from its source or the pull fails "
               "(podman before 5.8, OCP up to 4.21); blob: blob-level fallback of PR #845 "
               "(OCP 4.22); resilient: mirrorlab's own rescue, each rescue marked")


def add_fallback_argument(parser: argparse.ArgumentParser, purpose: str,
                          default: str | None = str(FallbackMode.STICKY)) -> None:
    """The one `--fallback MODE` flag of every command that takes it."""
    where = f"default: {default}" if default else "default: the scenario's, else sticky"
    parser.add_argument("--fallback", choices=MODE_NAMES, default=default,
                        help=f"{purpose} ({where}); {_MODES_HELP}")


class Candidate(Protocol):
    """What the modes need of a step: the physical repository it goes to."""

    @property
    def source_name(self) -> str: ...


C = TypeVar("C", bound=Candidate)


@dataclass(frozen=True)
class Fallback:
    """One mode's rules, consulted by the attempt loop (which never branches on the mode)."""

    mode: FallbackMode = FallbackMode.STICKY

    @property
    def cooldown(self) -> bool:
        """Skip hosts that keep failing: a node tries every source on every pull."""
        return self.mode is FallbackMode.RESILIENT

    @property
    def resumes_across_sources(self) -> bool:
        """A stream cut after bytes went out continues at the next source with Range."""
        return self.mode is FallbackMode.RESILIENT

    def may_fall_back(self, kind: str) -> bool:
        """Whether a referenced fetch of this kind may leave the source of its manifest."""
        if self.mode is FallbackMode.RESILIENT:
            return True
        return self.mode is FallbackMode.BLOB and kind == "blob"

    def candidates(self, plan: Sequence[C], served_by: C | None, kind: str) -> list[C]:
        """The sources a request tries, in order. `served_by` is the source that served the
        manifest referencing what is asked for (None for a top-level request)."""
        if served_by is None:
            return list(plan)
        if not self.may_fall_back(kind):
            return [served_by]
        names = [s.source_name for s in plan]
        if self.mode is FallbackMode.BLOB and served_by.source_name in names:
            rest = list(plan[names.index(served_by.source_name) + 1:])
        else:
            rest = [s for s in plan if s.source_name != served_by.source_name]
        return [served_by, *rest]

    def goes_on(self, outcome: Outcome, code: str | None = None, *, kind: str,
                referenced: bool) -> bool:
        """After a failure at one source, whether the next candidate is tried."""
        if not referenced or self.mode is FallbackMode.RESILIENT:
            return True
        return self.may_fall_back(kind) and blob_fallback_trigger(outcome, code)

    def retries_same_source(self, outcome: Outcome, *, kind: str, referenced: bool) -> bool:
        """PR #845's `tryGetBlob`: one more try at the same source, a second later."""
        return (self.mode is FallbackMode.BLOB and referenced and kind == "blob"
                and outcome in (Outcome.SERVER_ERROR, Outcome.TIMEOUT))

    def message(self, attempts: Sequence[Attempt], *, referenced: bool) -> str:
        """The error a node reports when every tried source failed."""
        if referenced and self.mode is FallbackMode.BLOB:
            return fallback_error(list(attempts))
        return aggregate_error(list(attempts))

    def serves(self, attempts: Sequence[Attempt], *, kind: str, referenced: bool) -> bool:
        """Whether this mode would have served a request, given what each source did.

        A source that another mode skipped (cool-down) counts as failed: it was failing."""
        for index, attempt in enumerate(a for a in attempts if a.outcome != Outcome.BLOCKED):
            if attempt.outcome == Outcome.SERVED:
                return True
            if referenced and index == 0 and not self.may_fall_back(kind):
                return False
            outcome = Outcome.CONNECT if attempt.outcome in NOT_CONTACTED else attempt.outcome
            if not self.goes_on(outcome, attempt.code, kind=kind, referenced=referenced):
                return False
        return False

    def rescued(self, attempts: Sequence[Attempt], *, kind: str,
                referenced: bool) -> tuple[str, ...]:
        """The node modes that would have failed a request this mode served."""
        if self.mode in NODE_MODES:
            return ()
        return tuple(str(mode) for mode in NODE_MODES
                     if not Fallback(mode).serves(attempts, kind=kind, referenced=referenced))


def on_blob_failure(mode: FallbackMode, names: Sequence[str], index: int) -> str:
    """What a pull does when a blob fails at `names[index]`, the source that served its
    manifest (`names`: the usable sources of the plan, in order), in words."""
    later = list(names[index + 1:])
    others = [n for i, n in enumerate(names) if i != index]
    if mode is FallbackMode.STICKY:
        return "the pull fails"
    if mode is FallbackMode.BLOB:
        if not later:
            return "the pull fails (no later source)"
        return (f"5xx, timeout, BLOB_UNKNOWN or TOOMANYREQUESTS: tries {', '.join(later)}; "
                "anything else fails the pull")
    if not others:
        return "the pull fails (no other source)"
    return f"any failure: tries {', '.join(others)} (beyond every node)"
