"""OpenPGP simple signing, verified with the real gnupg.

containers/image verifies a `signedBy` signature with an ephemeral keyring holding only
the policy's keys (signature/mechanism*.go: newEphemeralGPGSigningMechanism) and then
checks the signed payload (signature/simple.go: verifyAndExtractSignature). mirrorlab
runs Debian's `gpg` on a temporary home directory for the cryptography (no OpenPGP is
parsed here) and reads its machine-readable status lines.

The messages are those of the Go OpenPGP mechanism (the `containers_image_openpgp` build,
the one the Go oracle links), which names the failure precisely:

- `Key not found for key ID <id> in signature` when no trusted key made it (gpg's
  NO_PUBKEY; the key ID in lower-case hex without leading zeros);
- `signature error: openpgp: invalid signature: <algorithm> verification failure` for a
  signature that does not verify (BADSIG);
- `No public keys imported` when the key data holds no key.

The gpgme build (podman and CRI-O as distributions ship them) prints a Go structure dump
for the last two; the verdict is the same.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

from .payload import InvalidSignature

GPG = os.environ.get("MIRRORLAB_GPG", "gpg")
TIMEOUT = 30

_ALGORITHMS = {"1": "RSA", "2": "RSA", "3": "RSA", "17": "DSA", "19": "ECDSA", "22": "EdDSA",
               "27": "Ed25519"}
"""OpenPGP public-key algorithm numbers as go-crypto names them in its failures."""


class GPGUnavailable(RuntimeError):
    """gnupg is not installed (Debian package `gnupg`)."""


@dataclass(frozen=True)
class Verified:
    """A signature gpg verified: the signed content and the primary key's fingerprint
    (upper case, as gpgme and containers/image spell key identities)."""

    content: bytes
    fingerprint: str


def gpg_available() -> bool:
    return shutil.which(GPG) is not None


def _run(home: str, args: Sequence[str], data: bytes) -> tuple[int, bytes, list[list[str]]]:
    if not gpg_available():
        raise GPGUnavailable(f"{GPG} not found: install gnupg")
    read_fd, write_fd = os.pipe()
    try:
        process = subprocess.Popen(
            [GPG, "--homedir", home, "--batch", "--no-tty", "--quiet", "--no-auto-key-locate",
             "--no-auto-key-retrieve", "--no-autostart", "--status-fd", str(write_fd), *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            pass_fds=(write_fd,), env={"PATH": os.environ.get("PATH", ""), "LC_ALL": "C",
                                       "GNUPGHOME": home})
    finally:
        os.close(write_fd)
    with os.fdopen(read_fd, "rb") as status_pipe:
        try:
            stdout, _ = process.communicate(data, timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise
        status = status_pipe.read()
    lines = [line.split(" ")[1:] for line in status.decode("utf-8", "replace").splitlines()
             if line.startswith("[GNUPG:] ")]
    return process.returncode, stdout, lines


class Keyring:
    """An ephemeral keyring of the policy's keys; use as a context manager."""

    def __init__(self, key_blobs: Sequence[bytes]) -> None:
        self._home = tempfile.mkdtemp(prefix="mirrorlab-gpg-")
        os.chmod(self._home, 0o700)
        self.identities: list[str] = []
        self.algorithms: dict[str, str] = {}
        for blob in key_blobs:
            self._import(blob)

    def __enter__(self) -> Keyring:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        shutil.rmtree(self._home, ignore_errors=True)

    def _import(self, blob: bytes) -> None:
        if not blob:
            return
        _, _, status = _run(self._home, ["--import"], blob)
        imported = [fields[2].upper() for fields in status  # IMPORT_OK <reason> <fingerprint>
                    if fields and fields[0] == "IMPORT_OK" and len(fields) > 2]
        if not imported:
            # go-crypto reads the blob as binary packets, then as armor, and reports the
            # binary attempt's error when both fail.
            raise InvalidSignature(_keyring_error(blob))
        for fingerprint in imported:
            if fingerprint not in self.identities:
                self.identities.append(fingerprint)
        _, listing, _ = _run(self._home, ["--with-colons", "--fixed-list-mode", "--list-keys"],
                             b"")
        for line in listing.decode("utf-8", "replace").splitlines():
            fields = line.split(":")
            if fields[0] in ("pub", "sub") and len(fields) > 4:
                self.algorithms[fields[4].upper()] = _ALGORITHMS.get(fields[3], "RSA")

    def verify(self, signature: bytes) -> Verified:
        """The OpenPGP mechanism's `Verify`; raises `InvalidSignature` (or ValueError for
        a message that is no signature) with its text."""
        if not signature or not signature[0] & 0x80:
            raise ValueError("openpgp: invalid data: tag byte does not have MSB set")
        _, content, status = _run(self._home, ["--decrypt"], signature)
        by_kind: dict[str, list[str]] = {}
        for fields in status:
            if fields:
                by_kind.setdefault(fields[0], fields[1:])
        if "VALIDSIG" in by_kind and "GOODSIG" in by_kind:
            fingerprint = by_kind["VALIDSIG"][-1].upper()
            return Verified(content, fingerprint)
        if "EXPKEYSIG" in by_kind:
            raise ValueError("signature error: openpgp: key expired")
        if "EXPSIG" in by_kind:
            raise ValueError("signature error: openpgp: signature expired")
        if "REVKEYSIG" in by_kind:
            raise ValueError("signature error: openpgp: signature made by revoked key")
        if "BADSIG" in by_kind:
            key_id = by_kind["BADSIG"][0].upper()
            algorithm = self.algorithms.get(key_id, "RSA")
            raise ValueError("signature error: openpgp: invalid signature: "
                             f"{algorithm} verification failure")
        if "NO_PUBKEY" in by_kind:
            key_id = by_kind["NO_PUBKEY"][0].lower().lstrip("0") or "0"
            raise InvalidSignature(f"Key not found for key ID {key_id} in signature")
        if "ERRSIG" in by_kind:
            raise ValueError("openpgp: invalid signature: unable to check the signature")
        if "NODATA" in by_kind or "PLAINTEXT" not in by_kind:
            raise ValueError("openpgp: invalid data: no signature found")
        raise ValueError("not signed")


def _keyring_error(blob: bytes) -> str:
    if not blob[0] & 0x80:
        return "openpgp: invalid data: tag byte does not have MSB set"
    return "openpgp: invalid data: no valid keys found"


def verify_simple_signing(key_blobs: Sequence[bytes], signature: bytes) -> Verified:
    """Import the keys (none: `No public keys imported`) and verify one signature."""
    with Keyring(key_blobs) as keyring:
        if not keyring.identities:
            raise InvalidSignature("No public keys imported")
        verified = keyring.verify(signature)
        if verified.fingerprint not in keyring.identities:
            raise InvalidSignature(f"signature by key {verified.fingerprint} is not accepted")
        return verified
