"""Lab certificate authorities (trustme), written where registries and clients read them.

A registry's certificate carries its *name* from the configuration (`quay.io`,
`mirror.example.net`) plus the loopback addresses it really listens on, so TLS verifies
the name even though the connection goes to 127.0.0.1 through a resolve table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class IssuedCert:
    cert: Path
    key: Path
    ca: Path
    """The CA certificate that signed `cert`: what a client must trust."""


class LabCA:
    """One CA; `issue()` writes a leaf certificate and key for the given names."""

    def __init__(self, name: str, directory: Path) -> None:
        self.name = name
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self._ca = trustme.CA(organization_name=f"mirrorlab {name}")
        self.ca_path = directory / f"{name}-ca.crt"
        self._ca.cert_pem.write_to_path(str(self.ca_path))

    @property
    def pem(self) -> bytes:
        return self._ca.cert_pem.bytes()

    def issue(self, label: str, *names: str) -> IssuedCert:
        """A server certificate for `names` and the loopback addresses, as `<label>.crt`."""
        leaf = self._ca.issue_cert(*names, "127.0.0.1", "::1", "localhost")
        return self._write(leaf, self.directory / f"{label}.crt", self.directory / f"{label}.key")

    def issue_client(self, label: str, identity: str) -> IssuedCert:
        """A client certificate, as `<label>.cert`/`<label>.key` (the certs.d pair names)."""
        leaf = self._ca.issue_cert(identity)
        return self._write(leaf, self.directory / f"{label}.cert",
                           self.directory / f"{label}.key")

    def _write(self, leaf: trustme.LeafCert, cert: Path, key: Path) -> IssuedCert:
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        leaf.private_key_pem.write_to_path(str(key))
        return IssuedCert(cert, key, self.ca_path)

    def trust_in(self, certs_root: Path, host: str) -> Path:
        """Write this CA as `<certs_root>/<host[:port]>/ca.crt`; returns the directory."""
        directory = certs_root / host
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "ca.crt").write_bytes(self.pem)
        return directory
