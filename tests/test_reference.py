"""Reference parsing vectors: docker/distribution's grammar as containers/image vendors it."""

from __future__ import annotations

import pytest

from mirrorlab.proxy.reference import (
    InvalidReference,
    parse_canonical,
    parse_docker_reference,
    parse_normalized,
)

from .conftest import DIGEST

NORMALIZED = [
    # input, docker-transport reference
    ("busybox", "docker.io/library/busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest"),
    ("docker.io/busybox", "docker.io/library/busybox:latest"),
    ("index.docker.io/busybox", "docker.io/library/busybox:latest"),
    ("index.docker.io/user/app:1", "docker.io/user/app:1"),
    ("notlocalhost/repo", "docker.io/notlocalhost/repo:latest"),
    ("localhost/repo", "localhost/repo:latest"),
    ("localhost:5000/repo", "localhost:5000/repo:latest"),
    ("quay.io/ns/app@" + DIGEST, "quay.io/ns/app@" + DIGEST),
    ("127.0.0.1:5000/quay.io/ns/app:v1", "127.0.0.1:5000/quay.io/ns/app:v1"),
    ("Registry.Example.COM/ns/app", "Registry.Example.COM/ns/app:latest"),  # hosts keep case
    ("registry-1.docker.io/x", "registry-1.docker.io/x:latest"),  # a distinct host
    ("a.b/c__d/e-f/g.h_i---j:T_1.x-Y", "a.b/c__d/e-f/g.h_i---j:T_1.x-Y"),
    ("example.com:5000", "docker.io/library/example.com:5000"),  # name plus tag
    ("ex.com/a@sha512:" + "c" * 128, "ex.com/a@sha512:" + "c" * 128),
    ("ex.com/a@sha384:" + "d" * 96, "ex.com/a@sha384:" + "d" * 96),
    ("//quay.io/a", "quay.io/a:latest"),  # docker:// with its slashes left on
]

INVALID = [
    ("", "invalid reference format"),  # skopeo: `docker://` is an invalid format
    ("Foo/bar", "repository name must be lowercase"),
    ("quay.io/Foo/bar", "repository name must be lowercase"),
    ("quay.io/a:b:c", "invalid reference format"),
    ("quay.io/a@sha256:abc", "invalid reference format"),
    ("quay.io/a@sha256:" + "A" * 64, "invalid checksum digest format"),
    ("quay.io/a@sha256:" + "a" * 63 + "aa", "invalid checksum digest length"),
    ("quay.io/a@md5:" + "a" * 32, "unsupported digest algorithm"),
    ("quay.io/a:" + "t" * 129, "invalid reference format"),
    ("quay.io/" + "a" * 250, "must not be more than 255 characters"),
    ("quay.io/a//b", "invalid reference format"),
    ("quay.io/-a", "invalid reference format"),
    ("quay.io/a-", "invalid reference format"),
    ("quay.io/a_-b", "invalid reference format"),
    ("quay.io/a___b", "invalid reference format"),
    ("[::1]:5000/a", "invalid reference format"),  # the vendored copy has no IPv6 literals
    ("a" * 64, "cannot specify 64-byte hexadecimal strings"),
    ("quay.io/ns/app:v1@" + DIGEST, "both a tag and digest"),
    ("quay.io/a/" + "a" * 40 + "!", "invalid reference format"),
]


@pytest.mark.parametrize(("text", "expected"), NORMALIZED)
def test_docker_reference_normalizes(text: str, expected: str) -> None:
    assert str(parse_docker_reference(text)) == expected


@pytest.mark.parametrize(("text", "message"), INVALID)
def test_invalid_references_are_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidReference, match=message.replace("(", r"\(")):
        parse_docker_reference(text)


def test_pathological_name_fails_fast() -> None:
    """Upstream's optional `-*` separator would backtrack exponentially in Python's re."""
    with pytest.raises(InvalidReference):
        parse_normalized("quay.io/" + "a" * 60 + "!")


CANONICAL = [
    ("docker.io/library/busybox:1", True),
    ("docker.io/busybox:1", False),
    ("busybox", False),
    ("mirror.local/ns/x", True),
    ("mirror.local/ns/x@" + DIGEST, True),
]


@pytest.mark.parametrize(("text", "canonical"), CANONICAL)
def test_canonical_parse(text: str, canonical: bool) -> None:
    if canonical:
        assert str(parse_canonical(text)) == text
    else:
        with pytest.raises(InvalidReference, match="canonical"):
            parse_canonical(text)


@pytest.mark.parametrize(
    ("text", "familiar"),
    [
        ("docker.io/library/busybox:latest", "busybox:latest"),
        ("docker.io/user/app:1", "user/app:1"),
        ("quay.io/a/b:1", "quay.io/a/b:1"),
    ],
)
def test_familiar_name(text: str, familiar: str) -> None:
    assert parse_docker_reference(text).familiar == familiar
