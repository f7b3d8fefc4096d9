"""Which hosts are one site: may a token service receive the credentials of a registry?

A site is what browsers and distribution's pull-through proxy call one: the registrable
domain of a name (one label below its public suffix, by the Public Suffix List with its
private part, so `alice.github.io` and `bob.github.io` are two sites, as are
`registry.example.co.uk` and `attacker.co.uk`), or a single IP address. The list is the
copy shipped in the `publicsuffixlist` package; nothing is fetched at run time.

Pure: no I/O, no DNS.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket

from publicsuffixlist import PublicSuffixList

_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?")
_NUMERIC = re.compile(r"[0-9]+|0x[0-9a-f]*")
"""A last label that makes a host an IPv4 address to resolvers (`127.1`, `0x7f.1`)."""

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@functools.cache
def _suffixes() -> PublicSuffixList:
    return PublicSuffixList()  # the list the package ships (ICANN and private suffixes)


def _split(text: str) -> tuple[str, bool] | None:
    """`host[:port]`, `[v6][:port]` or a bare IPv6 address -> (host, is bracketed); the port
    is dropped. None when it is no host at all."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not (rest == "" or (rest[:1] == ":" and rest[1:].isdigit())):
            return None
        return host, True
    if text.count(":") > 1:
        return text, True  # a bare IPv6 address: it cannot carry a port
    host, colon, port = text.partition(":")
    if colon and not (port.isascii() and port.isdigit()):
        return None
    return host, False


def _address(host: str, bracketed: bool) -> Address | None:
    """The IP address `host` stands for, if it is one (IPv4-mapped IPv6 is its IPv4)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if bracketed:
            return None
        try:  # the forms inet_aton (and so getaddrinfo) reads: 127.1, 0x7f.0.0.1, 2130706433
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _name(host: str) -> str | None:
    """A DNS name in the form it is compared in: lower case, ASCII (IDNA), no final dot."""
    host = host.lower()
    host = host[:-1] if host.endswith(".") else host
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    labels = host.split(".")
    if not all(_LABEL.fullmatch(label) for label in labels):
        return None
    return host


def _identify(text: str) -> tuple[str, Address | str] | None:
    """("address", IP) or ("name", normalized name); None for something that is no host."""
    split = _split(text) if text == text.strip() else None
    if split is None or not split[0]:
        return None
    host, bracketed = split
    address = _address(host, bracketed)
    if address is not None:
        return "address", address
    if bracketed:
        return None
    name = _name(host)
    if name is None:
        return None
    if _NUMERIC.fullmatch(name.rsplit(".", 1)[-1]):
        return None  # looks like an address to a resolver but is none: trust nothing
    return "name", name


def same_site(realm_host: str, registry_host: str) -> bool:
    """True when credentials for `registry_host` may go to a token service on `realm_host`.

    Both are hosts as written in a URL or an image reference, with or without a port:
    `name`, `name:port`, an IPv4 address, `[IPv6]`, `[IPv6]:port` or a bare IPv6 address.
    Ports never matter. Names compare case-insensitively, in IDNA form, without a final
    dot. True when:

    - both are IP addresses and the same address (an address is a site of its own;
      `::ffff:10.0.0.1` is `10.0.0.1`, and `127.1` is `127.0.0.1` as resolvers read it);
    - both are names and the same name (so a single-label host such as `localhost` or a
      public suffix such as `github.io` is the site of itself only);
    - both are names with the same registrable domain under the Public Suffix List,
      private suffixes included (`a.github.io` is not `b.github.io`); a name under an
      unlisted top-level label counts that label as its suffix (`auth.corp.internal`
      and `registry.corp.internal` share `corp.internal`).

    False for anything else, and for an empty, malformed or address-like-but-invalid host.
    """
    realm, registry = _identify(realm_host), _identify(registry_host)
    if realm is None or registry is None or realm[0] != registry[0]:
        return False
    if realm[1] == registry[1]:
        return True
    if realm[0] == "address":
        return False
    domains = _suffixes()
    realm_site = domains.privatesuffix(str(realm[1]))
    return realm_site is not None and realm_site == domains.privatesuffix(str(registry[1]))
