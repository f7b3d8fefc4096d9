"""`same_site`: which token services may receive a registry's credentials (issue 11, item 1).

The old rule compared the last two DNS labels, so `attacker.co.uk` was the site of
`registry.example.co.uk` and every IP address the site of every other one."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mirrorlab.proxy.sites import same_site

SITES = [
    # realm host, registry host, same site
    # one registrable domain
    ("auth.example.com", "registry.example.com", True),
    ("registry.example.com", "registry.example.com:5000", True),
    ("auth.docker.io", "registry-1.docker.io", True),
    ("example.com", "registry.example.com", True),
    ("evil.example.org", "registry.example.com", False),
    ("example.com.evil.org", "example.com", False),
    # multi-label public suffixes (ICANN)
    ("attacker.co.uk", "registry.example.co.uk", False),
    ("auth.example.co.uk", "registry.example.co.uk", True),
    ("co.uk", "registry.example.co.uk", False),
    ("evil.city.kawasaki.jp", "city.kawasaki.jp", True),  # !city.kawasaki.jp: an exception
    ("a.b.kawasaki.jp", "c.b.kawasaki.jp", False),  # *.kawasaki.jp: b.kawasaki.jp is public
    # private suffixes count as suffixes
    ("attacker.github.io", "registry.github.io", False),
    ("auth.team.github.io", "registry.team.github.io", True),
    ("github.io", "registry.github.io", False),
    ("evil.s3.amazonaws.com", "registry.s3.amazonaws.com", False),
    # a public suffix or a single label is the site of itself only
    ("github.io", "github.io:443", True),
    ("localhost", "localhost:5000", True),
    ("auth.localhost", "localhost:5000", False),
    ("registry", "registry:5000", True),
    ("auth", "registry", False),
    # an unlisted top-level label is taken as a suffix
    ("auth.corp.internal", "registry.corp.internal:5000", True),
    ("corp.internal", "other.internal", False),
    # case, a final dot, IDNA
    ("AUTH.Example.COM", "registry.example.com", True),
    ("auth.example.com.", "Registry.Example.Com.:443", True),
    ("auth.bücher.example", "registry.xn--bcher-kva.example", True),
    ("a.рф", "b.рф", False),
    # IPv4: an address is a site of its own, ports never matter
    ("192.168.0.1", "10.0.0.1:5000", False),
    ("127.0.0.1", "127.0.0.2", False),
    ("127.0.0.1", "127.0.0.1:5000", True),
    ("10.0.0.1", "10.0.0.1", True),
    ("127.1", "127.0.0.1:5000", True),  # what getaddrinfo dials for 127.1
    ("0.0.1", "1.0.0.1", False),
    # IPv6: bare, bracketed, with ports, other spellings of one address
    ("::1", "[::1]:5000", True),
    ("[::1]", "[0:0:0:0:0:0:0:1]:443", True),
    ("[2001:db8::1]", "[2001:db8::2]:5000", False),
    ("::ffff:10.0.0.1", "10.0.0.1:5000", True),
    ("fe80::1", "fe80::2", False),
    # an address and a name are never one site
    ("127.0.0.1", "localhost:5000", False),
    ("localhost", "127.0.0.1", False),
    ("registry.example.com", "[::1]:5000", False),
    # no host, or not a host: never
    ("", "", False),
    ("", "registry.example.com", False),
    ("registry.example.com", "", False),
    ("[::1", "[::1]", False),
    ("[example.com]", "example.com", False),
    ("example.com:port", "example.com", False),
    ("a..example.com", "b.example.com", False),
    (" auth.example.com", "registry.example.com", False),
    ("1.2.3", "4.2.3", False),  # address-like: 1.2.3 is 1.2.0.3 to a resolver
    ("1.2.3.4.5", "9.2.3.4.5", False),  # numeric last label, yet no address
    ("*.example.com", "registry.example.com", False),
]


@pytest.mark.parametrize(("realm", "registry", "same"), SITES)
def test_same_site(realm: str, registry: str, same: bool) -> None:
    assert same_site(realm, registry) is same


@pytest.mark.parametrize(("realm", "registry", "same"), SITES)
def test_same_site_is_symmetric(realm: str, registry: str, same: bool) -> None:
    assert same_site(registry, realm) is same


def test_the_list_is_shipped_not_fetched() -> None:
    """The list is the package's own copy: answering opens no socket and asks no resolver."""
    code = ("import socket\n"
            "def refuse(*a, **k): raise AssertionError('network used')\n"
            "socket.socket = socket.getaddrinfo = socket.create_connection = refuse\n"
            "from mirrorlab.proxy.sites import same_site\n"
            "assert not same_site('attacker.co.uk', 'registry.example.co.uk')\n"
            "assert same_site('auth.example.co.uk', 'registry.example.co.uk')\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
