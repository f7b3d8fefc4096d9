"""Map registry names to loopback addresses without DNS, like curl's `--resolve`.

`--resolve quay.io=127.0.0.1:15443` sends connections for `quay.io` (any port) to that
address while TLS still checks `quay.io`'s certificate; `quay.io:5000=...` maps only that
port. With `offline` set, a name missing from the table fails at once, never reaching DNS.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from .errors import MirrorlabError


class UnresolvableName(OSError):
    """A name that offline mode refuses to look up."""


@dataclass(frozen=True)
class ResolveTable:
    entries: dict[str, tuple[str, int]] = field(default_factory=dict)
    offline: bool = False

    @classmethod
    def parse(cls, specs: list[str], *, offline: bool = False) -> ResolveTable:
        entries = {}
        for spec in specs:
            name, sep, target = spec.partition("=")
            address, colon, port = target.rpartition(":")
            address = address.strip("[]")
            if not sep or not name or not colon or not port.isdigit():
                raise MirrorlabError(f"--resolve {spec!r}: expected HOST[:PORT]=ADDRESS:PORT")
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise MirrorlabError(
                    f"--resolve {spec!r}: {address!r} is not an IP address") from None
            entries[name] = (address, int(port))
        return cls(entries, offline)

    def lookup(self, host: str, port: int) -> tuple[str, int] | None:
        return self.entries.get(f"{host}:{port}") or self.entries.get(host)

    def resolver(self) -> TableResolver:
        return TableResolver(self)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class TableResolver(AbstractResolver):
    """aiohttp resolver: the table first, IP literals as they are, DNS only if allowed."""

    def __init__(self, table: ResolveTable) -> None:
        self.table = table
        self._dns: AbstractResolver | None = None

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        target = self.table.lookup(host, port)
        if target is None and _is_ip(host):
            target = (host, port)
        if target is not None:
            address, target_port = target
            return [ResolveResult(
                hostname=host, host=address, port=target_port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0, flags=socket.AI_NUMERICHOST,
            )]
        if self.table.offline:
            raise UnresolvableName(f"{host}: not in the resolve table (offline names)")
        if self._dns is None:
            self._dns = DefaultResolver()
        return await self._dns.resolve(host, port, family)

    async def close(self, *args: Any) -> None:
        if self._dns is not None:
            await self._dns.close()
