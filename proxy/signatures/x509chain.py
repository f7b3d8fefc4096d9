"""Certificate chains checked as Go's crypto/x509 `Certificate.Verify` checks them.

containers/image verifies Fulcio and PKI certificates with Go's verifier
(signature/fulcio_cert.go, pki_cert.go); the messages a user reads are Go's. This module
builds chains the same way (crypto/x509/verify.go: `isValid`, `buildChains`,
`checkChainForKeyUsage`; cert_pool.go: `findPotentialParents`) with `cryptography` doing
the signature checks, and words the failures as Go does:

- the leaf first: unhandled critical extensions, then its validity period at the given
  time (`current time T is after NOTAFTER`, RFC 3339 in UTC);
- parents are the pool certificates whose subject is the child's issuer, key-identifier
  matches first; a parent that cannot sign (basic constraints, key usage) or whose
  signature does not verify is a hint for `certificate signed by unknown authority`; a
  parent that is itself invalid (expired, not a CA) makes that the error;
- a chain is acceptable when every certificate that lists extended key usages allows code
  signing (or any usage).

Not modelled: name constraints and certificate policies (Fulcio and the PKIs of OpenShift
use neither), the 100-signature-check limit.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature as CryptoInvalidSignature
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID


class X509Error(ValueError):
    """A verification failure; the text is Go's."""


HANDLED_EXTENSIONS = frozenset({
    ExtensionOID.KEY_USAGE, ExtensionOID.BASIC_CONSTRAINTS, ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
    ExtensionOID.NAME_CONSTRAINTS, ExtensionOID.EXTENDED_KEY_USAGE,
    ExtensionOID.CERTIFICATE_POLICIES, ExtensionOID.SUBJECT_KEY_IDENTIFIER,
    ExtensionOID.AUTHORITY_KEY_IDENTIFIER, ExtensionOID.CRL_DISTRIBUTION_POINTS,
    ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
})
"""The extensions Go's parser understands; another one marked critical fails the check."""


def rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _extension(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> x509.Extension[
        x509.ExtensionType] | None:
    try:
        return cert.extensions.get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        return None


def _basic_constraints(cert: x509.Certificate) -> x509.BasicConstraints | None:
    ext = _extension(cert, ExtensionOID.BASIC_CONSTRAINTS)
    return ext.value if ext is not None and isinstance(ext.value, x509.BasicConstraints) else None


def _key_id(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> bytes:
    ext = _extension(cert, oid)
    if ext is None:
        return b""
    value = ext.value
    if isinstance(value, x509.SubjectKeyIdentifier):
        return value.digest
    if isinstance(value, x509.AuthorityKeyIdentifier):
        return value.key_identifier or b""
    return b""


def unhandled_critical(cert: x509.Certificate,
                       ignore: frozenset[x509.ObjectIdentifier] = frozenset()) -> bool:
    return any(ext.critical and ext.oid not in HANDLED_EXTENSIONS and ext.oid not in ignore
               for ext in cert.extensions)


LEAF, INTERMEDIATE, ROOT = 0, 1, 2


def _is_valid(cert: x509.Certificate, kind: int, chain: Sequence[x509.Certificate],
              now: datetime.datetime, ignore: frozenset[x509.ObjectIdentifier]) -> None:
    if unhandled_critical(cert, ignore if kind == LEAF else frozenset()):
        raise X509Error("x509: unhandled critical extension")
    if chain and chain[-1].issuer.public_bytes() != cert.subject.public_bytes():
        raise X509Error("x509: issuer name does not match subject from issuing certificate")
    if now < cert.not_valid_before_utc:
        raise X509Error("x509: certificate has expired or is not yet valid: current time "
                        f"{rfc3339(now)} is before {rfc3339(cert.not_valid_before_utc)}")
    if now > cert.not_valid_after_utc:
        raise X509Error("x509: certificate has expired or is not yet valid: current time "
                        f"{rfc3339(now)} is after {rfc3339(cert.not_valid_after_utc)}")
    constraints = _basic_constraints(cert)
    if kind == INTERMEDIATE and (constraints is None or not constraints.ca):
        raise X509Error("x509: certificate is not authorized to sign other certificates")
    if constraints is not None and constraints.path_length is not None and \
            len(chain) - 1 > constraints.path_length:
        raise X509Error("x509: too many intermediates for path length constraint")


def _check_signature_from(child: x509.Certificate, parent: x509.Certificate) -> None:
    """`CheckSignatureFrom`."""
    constraints = _basic_constraints(parent)
    if (parent.version == x509.Version.v3 and constraints is None) or (
            constraints is not None and not constraints.ca):
        raise X509Error("x509: invalid signature: parent certificate cannot sign this kind of "
                        "certificate")
    usage = _extension(parent, ExtensionOID.KEY_USAGE)
    if usage is not None and isinstance(usage.value, x509.KeyUsage) and \
            not usage.value.key_cert_sign:
        raise X509Error("x509: invalid signature: parent certificate cannot sign this kind of "
                        "certificate")
    try:
        child.verify_directly_issued_by(parent)
    except CryptoInvalidSignature:
        key = parent.public_key()
        if isinstance(key, rsa.RSAPublicKey):
            raise X509Error("crypto/rsa: verification error") from None
        if isinstance(key, ec.EllipticCurvePublicKey):
            raise X509Error("x509: ECDSA verification failure") from None
        if isinstance(key, ed25519.Ed25519PublicKey):
            raise X509Error("x509: Ed25519 verification failure") from None
        if isinstance(key, dsa.DSAPublicKey):
            raise X509Error("x509: cannot verify signature: algorithm unimplemented") from None
        raise X509Error("x509: signature verification failure") from None
    except (ValueError, TypeError) as error:
        raise X509Error(f"x509: cannot verify signature: {error}") from None


def _potential_parents(cert: x509.Certificate, pool: Sequence[x509.Certificate]
                       ) -> list[x509.Certificate]:
    issuer = cert.issuer.public_bytes()
    akid = _key_id(cert, ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
    matching: list[x509.Certificate] = []
    one: list[x509.Certificate] = []
    mismatch: list[x509.Certificate] = []
    seen: set[bytes] = set()
    for candidate in pool:
        raw = candidate.tbs_certificate_bytes + candidate.signature
        if candidate.subject.public_bytes() != issuer or raw in seen:
            continue
        seen.add(raw)
        skid = _key_id(candidate, ExtensionOID.SUBJECT_KEY_IDENTIFIER)
        if skid == akid:
            matching.append(candidate)
        elif bool(skid) != bool(akid):
            one.append(candidate)
        else:
            mismatch.append(candidate)
    return [*matching, *one, *mismatch]


def _common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if names and str(names[0].value):
        return str(names[0].value)
    orgs = cert.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)
    if orgs:
        return str(orgs[0].value)
    return f"serial:{cert.serial_number}"


def _already_in_chain(candidate: x509.Certificate, chain: Sequence[x509.Certificate]) -> bool:
    for cert in chain:
        if cert.subject == candidate.subject and cert.public_key() == candidate.public_key():
            return True
    return False


@dataclass
class _Search:
    roots: Sequence[x509.Certificate]
    intermediates: Sequence[x509.Certificate]
    now: datetime.datetime


def _build_chains(search: _Search, chain: list[x509.Certificate]
                  ) -> list[list[x509.Certificate]]:
    cert = chain[-1]
    chains: list[list[x509.Certificate]] = []
    error: X509Error | None = None
    hint: tuple[X509Error, x509.Certificate] | None = None
    for kind, pool in ((ROOT, search.roots), (INTERMEDIATE, search.intermediates)):
        for candidate in _potential_parents(cert, pool):
            if _already_in_chain(candidate, chain):
                continue
            try:
                _check_signature_from(cert, candidate)
            except X509Error as failure:
                hint = hint or (failure, candidate)
                continue
            try:
                _is_valid(candidate, kind, chain, search.now, frozenset())
                error = None
            except X509Error as failure:
                error = failure
                hint = hint or (failure, candidate)
                continue
            if kind == ROOT:
                chains.append([*chain, candidate])
            else:
                try:
                    chains.extend(_build_chains(search, [*chain, candidate]))
                    error = None
                except X509Error as failure:
                    error = failure
    if chains:
        return chains
    if error is not None:
        raise error
    message = "x509: certificate signed by unknown authority"
    if hint is not None:
        message += (f' (possibly because of "{hint[0]}" while trying to verify candidate '
                    f'authority certificate "{_common_name(hint[1])}")')
    raise X509Error(message)


def _allows_code_signing(chain: Sequence[x509.Certificate]) -> bool:
    for cert in reversed(chain):
        ext = _extension(cert, ExtensionOID.EXTENDED_KEY_USAGE)
        if ext is None or not isinstance(ext.value, x509.ExtendedKeyUsage):
            continue
        usages = list(ext.value)
        if not usages:
            continue
        if ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in usages:
            continue
        if ExtendedKeyUsageOID.CODE_SIGNING not in usages:
            return False
    return True


def verify_code_signing(leaf: x509.Certificate, roots: Sequence[x509.Certificate],
                        intermediates: Sequence[x509.Certificate], now: datetime.datetime,
                        ignore_critical: frozenset[x509.ObjectIdentifier] = frozenset()) -> None:
    """`leaf.Verify` with these roots and intermediates at `now`, key usage code
    signing; raises `X509Error` with Go's text."""
    _is_valid(leaf, LEAF, [], now, ignore_critical)
    leaf_raw = leaf.tbs_certificate_bytes + leaf.signature
    if any(root.tbs_certificate_bytes + root.signature == leaf_raw for root in roots):
        chains = [[leaf]]
    else:
        chains = _build_chains(_Search(roots, intermediates, now), [leaf])
    if not any(_allows_code_signing(chain) for chain in chains):
        raise X509Error("x509: certificate specifies an incompatible key usage")


def _san(cert: x509.Certificate) -> x509.SubjectAlternativeName | None:
    ext = _extension(cert, ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    if ext is None or not isinstance(ext.value, x509.SubjectAlternativeName):
        return None
    return ext.value


def email_addresses(cert: x509.Certificate) -> list[str]:
    """The certificate's `EmailAddresses` (rfc822Name entries of the SAN)."""
    san = _san(cert)
    return [] if san is None else [str(v) for v in san.get_values_for_type(x509.RFC822Name)]


def _split_host(host: str) -> list[str]:
    host = host.removesuffix(".")
    return host.split(".") if host else []


def _match_pattern(pattern: str, host_parts: list[str]) -> bool:
    parts = pattern.lower().removesuffix(".").split(".") if pattern else []
    if not parts or not host_parts or len(parts) != len(host_parts):
        return False
    return all((i == 0 and part == "*") or part == host_parts[i] for i, part in enumerate(parts))


def verify_hostname(cert: x509.Certificate, host: str) -> None:
    """`VerifyHostname` for a DNS name or an IP address; raises `X509Error` with Go's
    HostnameError text."""
    import ipaddress

    san = _san(cert)
    dns_names = [] if san is None else [str(v) for v in san.get_values_for_type(x509.DNSName)]
    ips = [] if san is None else list(san.get_values_for_type(x509.IPAddress))
    candidate = host[1:-1] if len(host) >= 3 and host[0] == "[" and host[-1] == "]" else host
    try:
        ip = ipaddress.ip_address(candidate)
    except ValueError:
        ip = None
    if ip is not None:
        if any(ip == other for other in ips):
            return
        if not ips:
            raise X509Error(f"x509: cannot validate certificate for {candidate} because it "
                            "doesn't contain any IP SANs")
        raise X509Error(f"x509: certificate is valid for {', '.join(str(i) for i in ips)}, "
                        f"not {candidate}")
    lowered = "".join(c.lower() if "A" <= c <= "Z" else c for c in host)
    parts = _split_host(lowered)
    for name in dns_names:
        if _match_pattern(name, parts) or name.lower() == lowered:
            return
    if san is None:
        names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        if names and _match_pattern(str(names[0].value), parts):
            raise X509Error("x509: certificate relies on legacy Common Name field, use SANs "
                            "instead")
    if not dns_names:
        raise X509Error(f"x509: certificate is not valid for any names, but wanted to match {host}")
    raise X509Error(f"x509: certificate is valid for {', '.join(dns_names)}, not {host}")
