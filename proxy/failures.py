"""Exceptions raised while talking to a source, as outcomes: the I/O half of the mapping.

An exception `outcome_of_error` does not know is a bug in mirrorlab: it is not mapped, so
it surfaces as a 500 with a log line instead of passing for a failover.
"""

from __future__ import annotations

import asyncio
import os
import re
import ssl

import aiohttp

from .errors import ConfigError
from .outcomes import Outcome, SourceFailure


def outcome_of_error(error: BaseException) -> Outcome | None:
    """The outcome of an exception raised while talking to a source; None: a bug."""
    if isinstance(error, SourceFailure):
        return error.outcome
    if isinstance(error, ConfigError):
        return Outcome.CERTS
    if isinstance(error, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError
                  | ssl.SSLError):
        return Outcome.TLS
    if isinstance(error, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return Outcome.TIMEOUT
    if isinstance(error, aiohttp.ClientConnectorError):
        return Outcome.CONNECT
    if isinstance(error, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError
                  | aiohttp.ClientOSError | ConnectionError):
        return Outcome.INTERRUPTED
    if isinstance(error, aiohttp.ClientResponseError | aiohttp.InvalidURL):
        return Outcome.BAD_RESPONSE
    if isinstance(error, OSError):
        return Outcome.CONNECT
    return None


_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-f]+>")


def describe(error: BaseException | None) -> str:
    """An exception as one line for a message: no object reprs, no line breaks."""
    if error is None:
        return "unknown error"
    if isinstance(error, asyncio.TimeoutError):
        return "timeout"
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        text = f"certificate of {error.host}: {error.certificate_error}"
    elif isinstance(error, aiohttp.ClientConnectorError):
        # Go's words (`dial tcp H:P: connect: connection refused`), from the errno: asyncio's
        # own strerror reads "Connect call failed ('H', P)".
        errno = error.os_error.errno
        reason = os.strerror(errno).lower() if errno else (
            str(error.os_error) or type(error.os_error).__name__)
        text = f"dial tcp {error.host}:{error.port}: connect: {reason}"
    else:
        text = str(error) or type(error).__name__
    text = _OBJECT_REPR.sub("", text).replace("ssl:default", "").replace("ssl:True", "")
    return " ".join(text.replace("[]", "").split())


def source_failure(error: Exception, what: str) -> SourceFailure:
    """An exception raised talking to a source, as the failure it stands for (`what:
    reason`). One no outcome names is a bug: it is raised again, never a failover."""
    outcome = outcome_of_error(error)
    if outcome is None:
        raise error
    return SourceFailure(outcome, f"{what}: {describe(error)}")


def redacted(url: str) -> str:
    """A URL for a message: a password in it becomes `***`, as Go's net/http writes it."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname or ''}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))
