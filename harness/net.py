"""Small network helpers for the lab: free loopback ports and client TLS contexts."""

from __future__ import annotations

import socket
import ssl


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on `host` right now (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """A verifying client context that trusts `ca_file` (and the system roots)."""
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(ca_file)
    return context
