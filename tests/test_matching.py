"""Prefix matching and rewriting vectors (containers/image
pkg/sysregistriesv2/system_registries_v2.go: refMatchingPrefix, refMatchingSubdomainPrefix,
Endpoint.rewriteReference)."""

from __future__ import annotations

import pytest

from mirrorlab.proxy.matching import RewriteError, prefix_match_length, rewrite_reference
from mirrorlab.proxy.reference import parse_docker_reference, parse_normalized

from .conftest import DIGEST

MATCHES = [
    # system_registries_v2_test.go: TestRefMatchingPrefix, TestRefMatchingSubdomainPrefix:
    # ref, prefix, matches
    ("docker.io", "docker.io", True),
    ("example.com:5000", "example.com:5000", True),
    ("example.com:50000", "example.com:5000", False),
    ("example.com:5000", "example.com", True),  # the port quirk
    ("docker.io/libraryy", "docker.io/library", False),
    ("docker.io/library/busybox", "docker.io/library", True),
    ("example.com/foo", "example.com/foo:bar", False),
    ("example.com/foo", "*", False),
    ("docker.io", "*.io", True),
    ("example.com/foo", "*.example.com", False),  # the apex is not a subdomain
    ("another.example.com/namespace.com/foo/bar/bbq:baz", "*.namespace.com", False),
    ("example.net/namespace-ends-in.com/foo", "*.com", False),
    ("yet.another.example.com/foo", "**.example.com", False),
    ("another.sub.example.com/foo/bar/bbq:baz", "*.sub.example.com", True),
    ("yet.another.example.com/foo/bar@" + DIGEST, "*.example.com", True),
    # derived
    ("x.example.com.example.com/a", "*.example.com", False),  # only the first occurrence counts
    ("a.example.comx/a", "*.example.com", False),
    ("Example.com/a", "example.com", False),  # case-sensitive
    ("example.com@x", "example.com", True),
    ("a.example.com:5000/x", "*.example.com", True),
]


@pytest.mark.parametrize(("ref", "prefix", "matches"), MATCHES)
def test_prefix_matching(ref: str, prefix: str, matches: bool) -> None:
    assert (prefix_match_length(ref, prefix) != -1) is matches


REWRITES = [
    # system_registries_v2_test.go: TestRewriteReferenceSuccess: input, prefix, location, result
    ("example.com/foo/image:latest", "example.com/foo", "example.com/path",
     "example.com/path/image:latest"),
    ("docker.io/library/image", "docker.io/library", "example.com", "example.com/image:latest"),
    ("docker.io/library/image", "docker.io", "example.com", "example.com/library/image:latest"),
    ("another.sub.example.io:5000/library/prefix/image:latest", "*.sub.example.io",
     "example.com", "example.com:5000/library/prefix/image:latest"),
    ("foo.bar.io/ns1/ns2/ns3/ns4", "*.bar.io", "omg.bbq.com/roflmao",
     "omg.bbq.com/roflmao/ns1/ns2/ns3/ns4:latest"),
    ("alien.vs.predator.foobar.io:5000/omg:bbq", "*.foobar.io", "",
     "alien.vs.predator.foobar.io:5000/omg:bbq"),
    ("quay.io/a/b@" + DIGEST, "quay.io/a", "mirror.local:5000/q",
     "mirror.local:5000/q/b@" + DIGEST),
]


@pytest.mark.parametrize(("text", "prefix", "location", "result"), REWRITES)
def test_rewrite(text: str, prefix: str, location: str, result: str) -> None:
    ref = parse_docker_reference(text)
    assert str(rewrite_reference(ref, prefix, location)) == result


REWRITE_ERRORS = [
    # system_registries_v2_test.go: TestRewriteReferenceFailedDuringParseNamed
    ("example.com/foo@" + DIGEST, "example.com/foo", "example.com"),
    ("example.com:5000/image:latest", "example.com", "example.com:5000"),
    ("example.com/foo/image", "example.com/f", "example.com/foo"),
    ("example.com:5000/image:latest", "example.com", ""),
    # a docker.io location that is not canonical
    ("foo.com/team/app:1", "foo.com/team", "docker.io"),
]


@pytest.mark.parametrize(("text", "prefix", "location"), REWRITE_ERRORS)
def test_rewrite_errors(text: str, prefix: str, location: str) -> None:
    with pytest.raises(RewriteError):
        rewrite_reference(parse_normalized(text), prefix, location)
