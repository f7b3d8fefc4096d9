"""OCI error responses: the one mapping from a failed chain or a refusal to what a client sees.

An upstream 401/403 is answered 403 DENIED, never 401, so that a client does not try to
authenticate against the proxy. The last failure decides the status: a registry's own
4xx kinds pass through as theirs, everything else (network, TLS, 5xx, digest) is a 502.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from .outcomes import Attempt, Outcome
from .steps import Refusal

API_VERSION = {"Docker-Distribution-API-Version": "registry/2.0"}

_FAILURE_STATUS = {
    Outcome.BLOCKED: (403, "DENIED"),
    Outcome.DENIED: (403, "DENIED"),
    Outcome.TOO_MANY_REQUESTS: (429, "TOOMANYREQUESTS"),
}


def oci_error(status: int, code: str, message: str, *, headers: dict[str, str] | None = None,
              detail: object = None) -> web.Response:
    error: dict[str, object] = {"code": code, "message": message}
    if detail is not None:
        error["detail"] = detail
    return web.json_response({"errors": [error]}, status=status,
                             headers={**API_VERSION, **(headers or {})})


def refusal_response(refusal: Refusal) -> web.Response:
    return oci_error(refusal.status, refusal.code, refusal.message, detail=refusal.detail)


def failure_response(attempts: Sequence[Attempt], message: str,
                     unknown_code: str) -> web.Response:
    """Every source failed (or none could be tried): `message` is the node's error text."""
    failures = [a for a in attempts if a.failed and a.outcome != Outcome.COOLDOWN] \
        or list(attempts)
    outcome = failures[-1].outcome if failures else Outcome.NOT_FOUND
    status, code = _FAILURE_STATUS.get(outcome, (502, "UNKNOWN"))
    if outcome == Outcome.NOT_FOUND:
        status, code = 404, unknown_code
    detail = [{"source": a.source, "outcome": str(a.outcome), "error": a.detail}
              for a in attempts]
    return oci_error(status, code, message, detail=detail)
