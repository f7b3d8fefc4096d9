"""Ask the real skopeo which sources it tries, inside a private network namespace.

`skopeo --debug inspect` logs `Trying to access "REF"` per source, a `blocked` failure
without contact, an `http://` ping only for insecure sources, and the certs.d directory
it reads. In a namespace with only `lo`, every lookup fails at once and nothing leaves the
machine, so every source is tried and logged.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field

_TRYING = re.compile(r'Trying to access \\"([^"\\]*)\\"')
_BLOCKED = re.compile(r'Accessing \\"([^"\\]*)\\" failed: registry (\S+) is blocked')
_HTTP_PING = re.compile(r'msg="GET http://([^/]+)/v2/"')
_CERTS = re.compile(r'Looking for TLS certificates and private keys in (\S+)"')
_FATAL = re.compile(r'level=fatal msg="(.*)"$')

_SCRIPT = """
ip link set lo up
conf="$1"; shift
for ref in "$@"; do
  echo "@@@ $ref"
  skopeo --registries-conf "$conf" --debug inspect --no-tags --retry-times 0 "docker://$ref" 2>&1
done
"""


@dataclass
class TracedSource:
    """One `Trying to access` and what followed it."""

    reference: str
    blocked: bool = False
    http_ping: bool = False
    certs_dir: str | None = None


@dataclass
class SkopeoTrace:
    """What skopeo did for one reference."""

    sources: list[TracedSource] = field(default_factory=list)
    fatal: str = ""


def skopeo_traces(conf: str, refs: list[str], home: str) -> dict[str, SkopeoTrace]:
    """Run skopeo for each reference against `conf`; HOME isolates per-user files."""
    result = subprocess.run(
        ["unshare", "-n", "sh", "-c", _SCRIPT, "sh", conf, *refs],
        capture_output=True, text=True, timeout=300, env={"HOME": home, "PATH": _path()},
        check=False,
    )
    traces: dict[str, SkopeoTrace] = {}
    current: SkopeoTrace | None = None
    for line in result.stdout.splitlines():
        if line.startswith("@@@ "):
            current = traces.setdefault(line[4:], SkopeoTrace())
            continue
        if current is None:
            raise AssertionError(f"unexpected output before any reference: {line}")
        source = current.sources[-1] if current.sources else None
        if match := _TRYING.search(line):
            current.sources.append(TracedSource(match.group(1)))
        elif source and _BLOCKED.search(line):
            source.blocked = True
        elif source and _HTTP_PING.search(line):
            source.http_ping = True
        elif source and (match := _CERTS.search(line)):
            source.certs_dir = match.group(1)
        elif match := _FATAL.search(line):
            current.fatal = match.group(1)
    missing = [ref for ref in refs if ref not in traces]
    if missing:
        raise AssertionError(f"skopeo gave no output for {missing}: {result.stderr[-2000:]}")
    return traces


def _path() -> str:
    return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
