"""Image references, parsed and normalized exactly as containers/image does.

containers/image vendors an old copy of docker/distribution's `reference` package:
no IPv6 literals, hosts compared case-sensitively, `docker.io/library` expansion for
one-component names. Every other module works on `ImageReference` values built here.

The grammar is the upstream one with one change of form, not of meaning: upstream's
separator `(?:[._]|__|[-]*)` may be empty, which makes Python's backtracking `re`
exponential on a bad name; `-+` accepts the same strings because an empty separator
only joins two alphanumeric runs that `[a-z0-9]+` already covers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
NAME_TOTAL_LENGTH_MAX = 255

# Digest algorithms Go's crypto registers in containers/image, with their hex length.
DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_NAME_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
DOMAIN_PATTERN = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_PATH = rf"{_NAME_COMPONENT}(?:/{_NAME_COMPONENT})*"
_NAME = rf"(?:{DOMAIN_PATTERN}/)?{_PATH}"

_REFERENCE_RE = re.compile(rf"({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?", re.ASCII)
_ANCHORED_NAME_RE = re.compile(rf"(?:({DOMAIN_PATTERN})/)?({_PATH})", re.ASCII)
_ANCHORED_DOMAIN_RE = re.compile(DOMAIN_PATTERN, re.ASCII)
_ANCHORED_DIGEST_RE = re.compile(_DIGEST, re.ASCII)
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}")
TAG_PATTERN = re.compile(_TAG, re.ASCII)


class InvalidReference(ValueError):
    """A string that containers/image would not accept as an image reference."""


@dataclass(frozen=True, order=True)
class ImageReference:
    """A normalized docker reference: `domain/path[:tag][@digest]`."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """`Name()` upstream: the repository, without tag or digest.

        The domain can be empty: `a_b.c/x` looks like it names a registry to the domain
        split, but `a_b.c` is no valid host, so the grammar reads it all as a path.
        """
        return f"{self.domain}/{self.path}" if self.domain else self.path

    def __str__(self) -> str:
        text = self.name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    @property
    def is_digested(self) -> bool:
        return self.digest is not None

    @property
    def identity(self) -> str:
        """The tag or digest as it follows the name: `:tag` or `@digest` (digest first)."""
        if self.digest is not None:
            return f"@{self.digest}"
        if self.tag is not None:
            return f":{self.tag}"
        return ""

    @property
    def familiar(self) -> str:
        """The short form podman prints (`busybox:latest` for `docker.io/library/busybox`)."""
        text = str(self)
        if self.domain == DEFAULT_DOMAIN:
            text = text[len(DEFAULT_DOMAIN) + 1 :]
            if text.startswith(OFFICIAL_REPO_PREFIX) and "/" not in self.path[len("library/") :]:
                text = text[len(OFFICIAL_REPO_PREFIX) :]
        return text

    def with_digest(self, digest: str) -> ImageReference:
        validate_digest(digest)
        return ImageReference(self.domain, self.path, None, digest)


def validate_digest(digest: str) -> None:
    """Raise `InvalidReference` unless `digest` is one go-digest accepts."""
    colon = digest.find(":")
    if colon <= 0 or colon + 1 == len(digest):
        raise InvalidReference("invalid checksum digest format")
    algorithm, encoded = digest[:colon], digest[colon + 1 :]
    expected = DIGEST_HEX_LENGTHS.get(algorithm)
    if expected is None:
        if not _ANCHORED_DIGEST_RE.fullmatch(digest):
            raise InvalidReference("invalid checksum digest format")
        raise InvalidReference("unsupported digest algorithm")
    if len(encoded) != expected:
        raise InvalidReference("invalid checksum digest length")
    if not re.fullmatch(r"[a-f0-9]+", encoded):
        raise InvalidReference("invalid checksum digest format")


def is_valid_domain(text: str) -> bool:
    """True for a `host[:port]` that the reference grammar accepts as a registry."""
    return _ANCHORED_DOMAIN_RE.fullmatch(text) is not None


def parse_reference(text: str) -> ImageReference:
    """`reference.Parse`: no normalization; the domain is empty when the grammar finds none."""
    match = _REFERENCE_RE.fullmatch(text)
    if match is None:
        if text == "":
            raise InvalidReference("repository name must have at least one component")
        if _REFERENCE_RE.fullmatch(text.lower()) is not None:
            raise InvalidReference("invalid reference format: repository name must be lowercase")
        raise InvalidReference("invalid reference format")
    name, tag, digest = match.groups()
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReference(
            f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
        )
    name_match = _ANCHORED_NAME_RE.fullmatch(name)
    assert name_match is not None  # the reference grammar embeds the name grammar
    domain, path = name_match.group(1) or "", name_match.group(2)
    if digest is not None:
        validate_digest(digest)
    return ImageReference(domain, path, tag, digest)


def split_domain(text: str) -> tuple[str, str]:
    """Split off the registry as the old vendored `splitDockerDomain` does."""
    slash = text.find("/")
    first = text[:slash]
    if slash == -1 or ("." not in first and ":" not in first and first != "localhost"):
        domain, remainder = DEFAULT_DOMAIN, text
    else:
        domain, remainder = first, text[slash + 1 :]
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder


def parse_normalized(text: str) -> ImageReference:
    """`ParseNormalizedNamed`: accept familiar forms and expand them."""
    if _IDENTIFIER_RE.fullmatch(text):
        raise InvalidReference(
            f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings"
        )
    domain, remainder = split_domain(text)
    colon = remainder.find(":")
    remote_name = remainder[:colon] if colon > -1 else remainder
    if remote_name.lower() != remote_name:
        raise InvalidReference("invalid reference format: repository name must be lowercase")
    return parse_reference(f"{domain}/{remainder}")


def parse_canonical(text: str) -> ImageReference:
    """`ParseNamed`: succeed only when `text` is already in normalized form."""
    ref = parse_normalized(text)
    if str(ref) != text:
        raise InvalidReference("repository name must be canonical")
    return ref


def parse_docker_reference(text: str) -> ImageReference:
    """What `docker://TEXT` means to the docker transport: normalized, `:latest` added.

    The transport refuses a tag and a digest together, as containers/image does.
    """
    ref = parse_normalized(text.removeprefix("//"))
    if ref.tag is not None and ref.digest is not None:
        raise InvalidReference(
            "Docker references with both a tag and digest are currently not supported"
        )
    if ref.tag is None and ref.digest is None:
        ref = ImageReference(ref.domain, ref.path, "latest", None)
    return ref
