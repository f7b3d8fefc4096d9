"""Small network helpers for the lab: free loopback ports and client TLS contexts."""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable


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


def _poll(ready: Callable[[], bool], process: subprocess.Popen[bytes] | None, what: str,
          log: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode}: {log}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not become ready in {timeout:g}s: {log}")
        time.sleep(0.05)


def wait_for_http(url: str, process: subprocess.Popen[bytes] | None, *, what: str,
                  log: str = "", timeout: float = 15.0,
                  context: ssl.SSLContext | None = None) -> None:
    """Poll `url` until it answers (any HTTP status counts) while `process` lives."""

    def answers() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1, context=context):
                return True
        except urllib.error.HTTPError:
            return True  # e.g. 401 from a registry with auth: it is up
        except OSError:
            return False

    _poll(answers, process, what, log, timeout)


def wait_for_port(host: str, port: int, process: subprocess.Popen[bytes] | None, *, what: str,
                  log: str = "", timeout: float = 15.0) -> None:
    """Poll until `host:port` accepts connections (for servers that need client certs)."""

    def accepts() -> bool:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            sock.settimeout(1)
            return sock.connect_ex((host, port)) == 0

    _poll(accepts, process, what, log, timeout)


def run_until_terminated(stop: Callable[[], None], message: str) -> int:
    """For the lab's helper processes: print `message`, wait for SIGTERM or SIGINT, stop."""
    import signal
    import threading

    stopped = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopped.set())
    print(message, flush=True)
    stopped.wait()
    stop()
    return 0
