"""certs.d: which directory holds the TLS material for a physical `host[:port]`, and what in it.

The directory key is the host exactly as written in the reference: `reg.example:443` and
`reg.example` are different directories. The first candidate directory that exists is
used alone; its `*.crt` files are CAs added to the system roots, and each `*.cert`
needs its `*.key` (and the reverse), else the source fails with upstream's message.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .errors import ConfigError


@dataclass(frozen=True)
class CertsDirSettings:
    """The knobs containers/image reads from its SystemContext."""

    home: str = ""
    root: str = ""
    """`RootForImplicitAbsolutePaths`: prefixed to the /etc candidates."""
    cert_dir: str | None = None
    """`DockerCertPath` (`--cert-dir`): one flat directory for every host."""
    per_host_dir: str | None = None
    """`DockerPerHostCertDirPath` (mirrorlab's `--certs-dir`): `<dir>/<host[:port]>`."""


def certs_dir_candidates(host: str, settings: CertsDirSettings) -> list[str]:
    """Directories in the order they are considered; the first existing one wins."""
    if settings.cert_dir is not None:
        return [settings.cert_dir]
    if settings.per_host_dir is not None:
        return [_join(settings.per_host_dir, host)]
    candidates = []
    if settings.home:
        candidates.append(_join(settings.home, ".config/containers/certs.d", host))
    for base in ("/etc/containers/certs.d", "/etc/docker/certs.d"):
        candidates.append(_join(settings.root or "/", base, host))
    return candidates


def _join(*parts: str) -> str:
    """Go's `filepath.Join`: joined and cleaned (an empty host adds nothing)."""
    return posixpath.normpath(posixpath.join(parts[0], *(p.lstrip("/") for p in parts[1:])))


def certs_dir_for(host: str, settings: CertsDirSettings,
                  is_dir: Callable[[str], bool] = os.path.isdir) -> str:
    """The directory used for `host`: the first that exists, else the last candidate."""
    candidates = certs_dir_candidates(host, settings)
    for candidate in candidates:
        if is_dir(candidate):
            return candidate
    return candidates[-1]


@dataclass(frozen=True)
class CertFiles:
    """What a certs.d directory contributes to a TLS client."""

    directory: str
    ca_files: tuple[str, ...] = ()
    client_pairs: tuple[tuple[str, str], ...] = ()
    """(certificate, key) paths."""


def classify_cert_files(directory: str, names: Iterable[str]) -> CertFiles:
    """Sort a directory listing into CAs and client pairs, failing on unpaired files."""
    present = set(names)
    cas, pairs = [], []
    for name in sorted(present):
        if name.endswith(".crt"):
            cas.append(os.path.join(directory, name))
        elif name.endswith(".cert"):
            key = name[: -len(".cert")] + ".key"
            if key not in present:
                raise ConfigError(
                    f"missing key {key} for client certificate {name}. Note that CA "
                    "certificates should use the extension .crt"
                )
            pairs.append((os.path.join(directory, name), os.path.join(directory, key)))
        elif name.endswith(".key"):
            cert = name[: -len(".key")] + ".cert"
            if cert not in present:
                raise ConfigError(f"missing client certificate {cert} for key {name}")
    return CertFiles(directory, tuple(cas), tuple(pairs))


def read_certs_dir(directory: str) -> CertFiles:
    """List `directory` (missing means empty) and classify what it holds."""
    try:
        names = [entry.name for entry in os.scandir(directory) if not entry.is_dir()]
    except FileNotFoundError:
        return CertFiles(directory)
    except OSError as error:
        raise ConfigError(
            f'reading certificates directory "{directory}": {error.strerror}'
        ) from None
    return classify_cert_files(directory, names)
