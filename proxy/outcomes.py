"""What happened at one source: the outcome type, the one mapping to it, and attempt records.

Every way a source can fail has one name here; `outcome_of_status` turns an HTTP status
into it, and `failures.outcome_of_error` an exception (that one knows aiohttp, so it sits
at the I/O edge, and this module stays pure).

When every source fails, the message has containers/image's shape
(`docker/docker_image_src.go: newImageSource`):
`(Mirrors also failed: [m1: e1]\\n[m2: e2]): src: e`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Outcome(StrEnum):
    SERVED = "served"
    BLOCKED = "blocked"
    """Not contacted: registries.conf blocks the physical source."""
    COOLDOWN = "cooldown"
    """Not contacted: the host failed repeatedly (resilient mode only)."""
    NOT_FOUND = "not_found"
    """404, or an OCI `*_UNKNOWN` code: the source lacks this content."""
    DENIED = "denied"
    """401 or 403: the source refuses these credentials."""
    TOO_MANY_REQUESTS = "toomanyrequests"
    CLIENT_ERROR = "client_error"
    """Any other 4xx."""
    SERVER_ERROR = "server_error"
    """5xx."""
    CONNECT = "connect"
    TLS = "tls"
    TIMEOUT = "timeout"
    AUTH = "auth"
    """The token service failed."""
    CERTS = "certs"
    """The host's certs.d files cannot be used."""
    INTERRUPTED = "interrupted"
    """The body stopped mid-stream (reset, closed early)."""
    TRUNCATED = "truncated"
    """The body ended cleanly but short of its length."""
    DIGEST = "digest"
    """The content does not match its digest."""
    TOO_LARGE = "too_large"
    BAD_RESPONSE = "bad_response"
    """An answer that cannot be used: no length, a wrong size or Content-Range."""


NOT_CONTACTED = frozenset({Outcome.BLOCKED, Outcome.COOLDOWN})
HOST_FAILURES = frozenset({Outcome.CONNECT, Outcome.TLS, Outcome.TIMEOUT,
                           Outcome.SERVER_ERROR})
"""Outcomes that say a host is unwell, rather than that it lacks this content."""


class SourceFailure(Exception):
    """One source failing, with its outcome and a containers/image-like message."""

    def __init__(self, outcome: Outcome, message: str, *, status: int | None = None,
                 code: str | None = None, final: bool = False) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.status = status
        self.code = code
        self.final = final
        """No other source may be tried after this one (bytes already went out)."""


def outcome_of_status(status: int) -> Outcome:
    """The outcome of an HTTP status that is not a success."""
    if status == 404:
        return Outcome.NOT_FOUND
    if status in (401, 403):
        return Outcome.DENIED
    if status == 429:
        return Outcome.TOO_MANY_REQUESTS
    if status >= 500:
        return Outcome.SERVER_ERROR
    return Outcome.CLIENT_ERROR


@dataclass(frozen=True)
class Attempt:
    """One source tried (or skipped) for one request."""

    source: str
    outcome: Outcome
    detail: str = ""
    elapsed_ms: float = 0.0
    fallback: bool = False
    """True when a node in sticky mode would not have tried this source here."""
    code: str | None = None
    """The OCI error code of a failure (`BLOB_UNKNOWN`, ...), when the body had one."""
    rescued: tuple[str, ...] = ()
    """On a served attempt: the node modes (`sticky`, `blob`) that fail this request."""

    @property
    def failed(self) -> bool:
        return self.outcome != Outcome.SERVED


def aggregate_error(attempts: list[Attempt]) -> str:
    """containers/image's shape: one error unchanged, or mirrors listed before the last."""
    failures = [a for a in attempts if a.failed]
    if not failures:
        return "no source to try"
    last = failures[-1]
    if len(failures) == 1:
        return last.detail
    mirrors = "\n".join(f"[{a.source}: {a.detail}]" for a in failures[:-1])
    return f"(Mirrors also failed: {mirrors}): {last.source}: {last.detail}"


def fallback_error(attempts: list[Attempt]) -> str:
    """PR #845's `formatFallbackError`: the first source's error, after the later ones."""
    failures = [a for a in attempts if a.failed]
    if not failures:
        return "no source to try"
    first = failures[0]
    if len(failures) == 1:
        return first.detail
    extras = "\n".join(f"[{a.source}: {a.detail}]" for a in failures[1:])
    return f"(Fallback sources also failed: {extras}): {first.detail}"
