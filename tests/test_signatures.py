"""Signature verification (mirrorlab.proxy.signatures) against the real library.

Every vector is built at test time: keys with `cryptography` (ECDSA P-256 and P-384, RSA,
Ed25519), a fake Fulcio (a root CA, an intermediate, short-lived leaf certificates with
the OIDC issuer extensions and an e-mail SAN), a Rekor key signing SETs over hashedrekord
entries, a PKI (root, intermediate, leaves with e-mail or host names). Each vector is
evaluated by `evaluate_requirements` and by the Go oracle's `verify`
(go.podman.io/image/v5: signature.PolicyContext.IsRunningImageAllowed on a docker
reference served from a loopback registry with a `sha256-<hex>.sig` attachment and a
lookaside store): verdict and reason must be the same text. The upstream code each case
follows is named on its table (signature/policy_eval_sigstore.go, policy_eval_signedby.go,
policy_reference_match.go, internal/sigstore_payload.go, internal/rekor_set.go,
fulcio_cert.go, pki_cert.go); cases taken from upstream's own tests say which.
GPG simple signing is in test_signatures_gpg.py.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mirrorlab.proxy.errors import ConfigError
from mirrorlab.proxy.policy import parse_policy, requirements_for
from mirrorlab.proxy.reference import parse_docker_reference
from mirrorlab.proxy.signatures import (
    Signature,
    SigstoreSignature,
    SimpleSigning,
    Verdict,
    evaluate_requirements,
    identity_matches,
    signature_from_blob,
)
from mirrorlab.proxy.signatures.sigstore import canonical_json

from .go_oracle import GoOracle, go_oracle

__all__ = ["go_oracle"]  # the fixture, imported for the tests below

MEDIA = "application/vnd.dev.cosign.simplesigning.v1+json"
SIG = "dev.cosignproject.cosign/signature"
CERT = "dev.sigstore.cosign/certificate"
CHAIN = "dev.sigstore.cosign/chain"
BUNDLE = "dev.sigstore.cosign/bundle"
ISSUER = "https://oidc.example.com"
EMAIL = "builder@example.com"
NOW = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
SIGNED_AT = NOW - datetime.timedelta(days=2)
"""When the Fulcio leaves were issued and the SETs integrated (valid 10 minutes)."""

MANIFEST = (b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
            b'"config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":2,'
            b'"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},'
            b'"layers":[]}')
DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
OTHER_DIGEST = "sha256:" + hashlib.sha256(b"another manifest").hexdigest()
REF = "a.io/ns/app:v1"

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


# ---------------------------------------------------------------- building blocks


def pem_of(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def raw_sign(key: PrivateKey, data: bytes) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(data)


def payload(reference: str = REF, digest: str = DIGEST, *,
            kind: str = "cosign container image signature", optional: Any = None,
            critical_extra: dict[str, Any] | None = None) -> bytes:
    critical: dict[str, Any] = {"identity": {"docker-reference": reference},
                                "image": {"docker-manifest-digest": digest}, "type": kind}
    critical.update(critical_extra or {})
    return json.dumps({"critical": critical, "optional": optional}).encode()


@dataclass
class Keys:
    """Everything a vector can sign with, made once per session."""

    ec256: ec.EllipticCurvePrivateKey
    ec384: ec.EllipticCurvePrivateKey
    rsa: rsa.RSAPrivateKey
    ed: ed25519.Ed25519PrivateKey
    other: ec.EllipticCurvePrivateKey
    rekor: ec.EllipticCurvePrivateKey
    other_rekor: ec.EllipticCurvePrivateKey
    fulcio_root: tuple[ec.EllipticCurvePrivateKey, x509.Certificate]
    fulcio_mid: tuple[ec.EllipticCurvePrivateKey, x509.Certificate]
    fake_root: tuple[ec.EllipticCurvePrivateKey, x509.Certificate]
    pki_root: tuple[ec.EllipticCurvePrivateKey, x509.Certificate]
    pki_mid: tuple[ec.EllipticCurvePrivateKey, x509.Certificate]


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mirrorlab tests")])


def ca_cert(common: str, key: ec.EllipticCurvePrivateKey,
            issuer: tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None = None,
            *, not_before: datetime.datetime | None = None,
            not_after: datetime.datetime | None = None) -> x509.Certificate:
    signer_key, signer_name = (key, _name(common)) if issuer is None else (
        issuer[0], issuer[1].subject)
    builder = (x509.CertificateBuilder().subject_name(_name(common)).issuer_name(signer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before or NOW - datetime.timedelta(days=365))
               .not_valid_after(not_after or NOW + datetime.timedelta(days=365))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                            False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False))
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[0].public_key()),
            critical=False)
    return builder.sign(signer_key, hashes.SHA256())


def leaf_cert(key: PrivateKey, issuer: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], *,
              emails: Sequence[str] = (EMAIL,), dns: Sequence[str] = (),
              oidc_v1: str | None = ISSUER, oidc_v2: str | None = None,
              eku: Sequence[x509.ObjectIdentifier] = (ExtendedKeyUsageOID.CODE_SIGNING,),
              not_before: datetime.datetime = SIGNED_AT - datetime.timedelta(minutes=1),
              lifetime: datetime.timedelta = datetime.timedelta(minutes=10)
              ) -> x509.Certificate:
    sans: list[x509.GeneralName] = [x509.RFC822Name(e) for e in emails]
    sans += [x509.DNSName(d) for d in dns]
    builder = (x509.CertificateBuilder().subject_name(x509.Name([]))
               .issuer_name(issuer[1].subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(not_before)
               .not_valid_after(not_before + lifetime)
               .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False,
                                            False), critical=True)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   issuer[0].public_key()), critical=False))
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=True)
    if oidc_v1 is not None:
        builder = builder.add_extension(x509.UnrecognizedExtension(
            x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1"), oidc_v1.encode()), critical=False)
    if oidc_v2 is not None:
        raw = oidc_v2.encode()
        builder = builder.add_extension(x509.UnrecognizedExtension(
            x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8"), bytes([0x0C, len(raw)]) + raw),
            critical=False)
    return builder.sign(issuer[0], hashes.SHA256())


def cert_pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def rekor_set(rekor: ec.EllipticCurvePrivateKey, key_or_cert_pem: bytes, signature: bytes,
              signed_payload: bytes, *, integrated: datetime.datetime = SIGNED_AT,
              body_edit: Callable[[dict[str, Any]], None] | None = None) -> str:
    """A cosign bundle: the SET over the canonical form of its Payload."""
    body: dict[str, Any] = {
        "apiVersion": "0.0.1", "kind": "hashedrekord",
        "spec": {"data": {"hash": {"algorithm": "sha256",
                                   "value": hashlib.sha256(signed_payload).hexdigest()}},
                 "signature": {"content": b64(signature),
                               "publicKey": {"content": b64(key_or_cert_pem)}}}}
    if body_edit is not None:
        body_edit(body)
    entry = {"body": b64(json.dumps(body).encode()),
             "integratedTime": int(integrated.timestamp()), "logIndex": 7,
             "logID": "c0d23d6ad406973f9559f3ba2d1ca01f84147d8ffc5b8445c224f98b9591801d"}
    from mirrorlab.proxy.gojson import decode as loads

    digest = hashlib.sha256(canonical_json(loads(json.dumps(entry)))).digest()
    set_signature = rekor.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    return json.dumps({"SignedEntryTimestamp": b64(set_signature), "Payload": entry})


@pytest.fixture(scope="session")
def keys() -> Keys:
    fulcio_root_key = ec.generate_private_key(ec.SECP256R1())
    fulcio_root = (fulcio_root_key, ca_cert("Fake Fulcio Root", fulcio_root_key))
    mid_key = ec.generate_private_key(ec.SECP256R1())
    fulcio_mid = (mid_key, ca_cert("Fake Fulcio Intermediate", mid_key, fulcio_root))
    fake_key = ec.generate_private_key(ec.SECP256R1())
    pki_key = ec.generate_private_key(ec.SECP384R1())
    pki_root = (pki_key, ca_cert("Lab PKI Root", pki_key))
    pki_mid_key = ec.generate_private_key(ec.SECP256R1())
    return Keys(
        ec256=ec.generate_private_key(ec.SECP256R1()),
        ec384=ec.generate_private_key(ec.SECP384R1()),
        rsa=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ed=ed25519.Ed25519PrivateKey.generate(),
        other=ec.generate_private_key(ec.SECP256R1()),
        rekor=ec.generate_private_key(ec.SECP256R1()),
        other_rekor=ec.generate_private_key(ec.SECP256R1()),
        fulcio_root=fulcio_root, fulcio_mid=fulcio_mid,
        fake_root=(fake_key, ca_cert("Somebody Else's CA", fake_key)),
        pki_root=pki_root, pki_mid=(pki_mid_key, ca_cert("Lab PKI Issuing", pki_mid_key,
                                                         pki_root)),
    )


# ---------------------------------------------------------------- vectors


@dataclass
class Case:
    """A requirement list, the logical reference pulled, and the signatures served."""

    name: str
    requirements: list[dict[str, Any]]
    signatures: list[Signature] = field(default_factory=list)
    reference: str = REF
    manifest: bytes = MANIFEST
    attachment: bool | None = None
    """Serve the `.sig` attachment even with no sigstore layer (None: when there are some)."""
    message: bool = True
    """Compare the reason's text (False: the verdict only, where a parser's own words are
    not reproduced)."""


def key_req(*pems: bytes, **extra: Any) -> dict[str, Any]:
    req: dict[str, Any] = {"type": "sigstoreSigned"}
    if len(pems) == 1:
        req["keyData"] = b64(pems[0])
    else:
        req["keyDatas"] = [b64(p) for p in pems]
    req.update(extra)
    return req


def signed(key: PrivateKey, data: bytes | None = None, **annotations: str) -> SigstoreSignature:
    data = payload() if data is None else data
    return SigstoreSignature(data, {SIG: b64(raw_sign(key, data)), **annotations})


def fulcio_signature(keys: Keys, *, data: bytes | None = None, chain: bool = True,
                     leaf_key: PrivateKey | None = None, rekor: ec.EllipticCurvePrivateKey | None
                     = None, integrated: datetime.datetime = SIGNED_AT, issuer: str = "mid",
                     **leaf_options: Any) -> SigstoreSignature:
    data = payload() if data is None else data
    key = leaf_key or ec.generate_private_key(ec.SECP256R1())
    parent = {"mid": keys.fulcio_mid, "root": keys.fulcio_root, "fake": keys.fake_root}[issuer]
    leaf = leaf_cert(key, parent, **leaf_options)
    signature = raw_sign(key, data)
    annotations = {SIG: b64(signature), CERT: cert_pem(leaf).decode(),
                   BUNDLE: rekor_set(rekor or keys.rekor, cert_pem(leaf), signature, data,
                                     integrated=integrated)}
    if chain:
        annotations[CHAIN] = cert_pem(keys.fulcio_mid[1], keys.fulcio_root[1]).decode()
    return SigstoreSignature(data, annotations)


def fulcio_req(keys: Keys, *, email: str = EMAIL, issuer: str = ISSUER,
               ca: x509.Certificate | None = None, rekor: PrivateKey | None = None
               ) -> dict[str, Any]:
    return {"type": "sigstoreSigned",
            "fulcio": {"caData": b64(cert_pem(ca or keys.fulcio_root[1])), "oidcIssuer": issuer,
                       "subjectEmail": email},
            "rekorPublicKeyData": b64(pem_of(rekor or keys.rekor))}


def pki_signature(keys: Keys, *, data: bytes | None = None, chain: bool = True,
                  issuer: tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None = None,
                  **leaf_options: Any) -> SigstoreSignature:
    data = payload() if data is None else data
    key = ec.generate_private_key(ec.SECP256R1())
    leaf_options.setdefault("not_before", NOW - datetime.timedelta(days=1))
    leaf_options.setdefault("lifetime", datetime.timedelta(days=30))
    leaf_options.setdefault("oidc_v1", None)
    leaf = leaf_cert(key, issuer or keys.pki_mid, **leaf_options)
    annotations = {SIG: b64(raw_sign(key, data)), CERT: cert_pem(leaf).decode()}
    if chain:
        annotations[CHAIN] = cert_pem(keys.pki_mid[1], keys.pki_root[1]).decode()
    return SigstoreSignature(data, annotations)


def pki_req(keys: Keys, **pki: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"caRootsData": b64(cert_pem(keys.pki_root[1]))}
    spec.update(pki)
    return {"type": "sigstoreSigned", "pki": spec}


def key_cases(k: Keys) -> list[Case]:
    """signature/policy_eval_sigstore.go (isSignatureAccepted with public keys,
    isRunningImageAllowed), internal/sigstore_payload.go (VerifySigstorePayload)."""
    ec256 = pem_of(k.ec256)
    good = signed(k.ec256)
    other_image = SigstoreSignature(b"{}", {}, "application/vnd.dsse.envelope.v1+json")
    return [
        Case("ecdsa p-256", [key_req(ec256)], [good]),
        Case("ecdsa p-384", [key_req(pem_of(k.ec384))], [signed(k.ec384)]),
        Case("rsa pkcs1v15", [key_req(pem_of(k.rsa))], [signed(k.rsa)]),
        Case("ed25519", [key_req(pem_of(k.ed))], [signed(k.ed)]),
        Case("no signature", [key_req(ec256)], []),
        Case("attachment with no layer", [key_req(ec256)], [], attachment=True),
        Case("wrong ecdsa key", [key_req(pem_of(k.other))], [good]),
        Case("wrong rsa key", [key_req(pem_of(k.rsa))], [signed(k.ec256)]),
        Case("wrong ed25519 key", [key_req(pem_of(k.ed))], [good]),
        Case("keyDatas: the second key verifies", [key_req(pem_of(k.other), ec256)], [good]),
        Case("keyDatas: no key verifies", [key_req(pem_of(k.other), pem_of(k.rsa))], [good]),
        Case("a bad signature, then a good one", [key_req(ec256)], [signed(k.other), good]),
        Case("two bad signatures", [key_req(ec256)], [signed(k.other), signed(k.rsa)]),
        Case("IEEE P1363 signature", [key_req(ec256)], [SigstoreSignature(payload(), {
            SIG: b64(_p1363(k.ec256, payload()))})]),
        Case("odd-length non-ASN.1 signature", [key_req(ec256)],
             [SigstoreSignature(payload(), {SIG: b64(b"abc")})]),
        # upstream fixture dir-img-cosign-other-attachment: a non-signature layer only
        Case("only a non-signature attachment", [key_req(ec256)], [other_image]),
        Case("simple signing only, sigstore required", [key_req(ec256)],
             [SimpleSigning(b"\xa3\x01garbage")]),
        Case("missing signature annotation", [key_req(ec256)],
             [SigstoreSignature(payload(), {})]),
        Case("signature annotation not base64", [key_req(ec256)],
             [SigstoreSignature(payload(), {SIG: "not base64!"})]),
        # upstream fixture dir-img-cosign-modified-manifest: signed for another manifest
        Case("signed for another digest", [key_req(ec256)],
             [signed(k.ec256, payload(digest=OTHER_DIGEST))]),
        Case("signed for another tag", [key_req(ec256)],
             [signed(k.ec256, payload("a.io/ns/app:v2"))]),
        Case("signed for another repository", [key_req(ec256)],
             [signed(k.ec256, payload("b.io/ns/app:v1"))]),
        Case("digest pull, repository signature", [key_req(ec256)], [good],
             reference=f"a.io/ns/app@{DIGEST}"),
        Case("digest pull, digest signature", [key_req(ec256)],
             [signed(k.ec256, payload(f"a.io/ns/app@{DIGEST}"))],
             reference=f"a.io/ns/app@{DIGEST}"),
        Case("key file missing", [{"type": "sigstoreSigned", "keyPath": "/nonexistent/key.pub"}],
             [good]),
        Case("key file missing, no signatures",
             [{"type": "sigstoreSigned", "keyPath": "/nonexistent/key.pub"}], []),
        Case("key data not PEM", [key_req(b"not a key")], [good]),
        Case("key data a certificate", [key_req(cert_pem(k.fulcio_root[1]))], [good]),
        Case("both requirements, one key each", [key_req(ec256), key_req(pem_of(k.rsa))],
             [good, signed(k.rsa)]),
        Case("both requirements, second unmet", [key_req(ec256), key_req(pem_of(k.rsa))], [good]),
        Case("accept anything, then sigstore", [{"type": "insecureAcceptAnything"},
                                                key_req(ec256)], [good]),
        Case("sigstore, then reject", [key_req(ec256), {"type": "reject"}], [good]),
        Case("reject, familiar name", [{"type": "reject"}], [],
             reference="docker.io/library/busybox:latest"),
        Case("signedBaseLayer", [{"type": "signedBaseLayer",
                                  "baseLayerIdentity": {"type": "matchRepository"}}], [good]),
    ]


def _p1363(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def payload_cases(k: Keys) -> list[Case]:
    """The payload is parsed only after the signature verifies
    (internal/sigstore_payload.go: UntrustedSigstorePayload.strictUnmarshalJSON)."""
    req = [key_req(pem_of(k.ec256))]

    def with_payload(data: bytes, message: bool = True) -> Case:
        return Case(f"payload {data[:60]!r}", req, [signed(k.ec256, data)], message=message)

    critical = {"identity": {"docker-reference": REF}, "image": {"docker-manifest-digest": DIGEST},
                "type": "cosign container image signature"}
    return [
        with_payload(payload(optional={"creator": "me", "timestamp": 1700000000, "x": [1]})),
        with_payload(payload(optional={})),
        with_payload(payload(optional={"timestamp": 1.5})),
        with_payload(payload(optional={"creator": 7})),
        with_payload(payload(optional=[])),
        with_payload(payload(kind="atomic container signature")),
        with_payload(payload(critical_extra={"extra": 1})),
        with_payload(payload(digest="sha256:abc")),
        with_payload(payload(digest="md5:" + "0" * 32)),
        with_payload(payload(digest="")),
        with_payload(json.dumps({"critical": critical}).encode()),
        with_payload(json.dumps({"critical": critical, "optional": None, "x": 1}).encode()),
        with_payload(json.dumps({"critical": {**critical, "image": None},
                                 "optional": None}).encode()),
        with_payload(json.dumps({"critical": {**critical, "identity": {}},
                                 "optional": None}).encode()),
        with_payload(json.dumps({"critical": {**critical, "type": 1},
                                 "optional": None}).encode()),
        with_payload(b'{"critical": {}, "critical": {}, "optional": null}'),
        with_payload(b"[]"),
        with_payload(b'{"optional": null, "critical": "text"}'),
        with_payload(payload() + b" trailing"),
        with_payload(b"not json"),
    ]


def identity_cases(k: Keys) -> list[Case]:
    """signedIdentity on the logical reference (policy_reference_match.go), in the spirit
    of policy_reference_match_test.go's tables: each signature names `signed`, the user
    pulled `pulled`."""
    table: list[tuple[dict[str, Any], str, str]] = []
    tagged, digested = "a.io/ns/app:v1", f"a.io/ns/app@{DIGEST}"
    for kind in ("matchExact", "matchRepoDigestOrExact", "matchRepository"):
        for pulled in (tagged, digested, "docker.io/library/busybox:latest"):
            for signed_ref in (tagged, digested, "a.io/ns/app:v2", "a.io/ns/app",
                               f"a.io/ns/app:v1@{DIGEST}", "b.io/ns/app:v1", "busybox:latest",
                               "library/busybox", "docker.io/library/busybox:latest",
                               "A.io/ns/app:v1", "a.io/ns/app@sha256:123"):
                table.append(({"type": kind}, pulled, signed_ref))
    extra = [
        ({"type": "exactReference", "dockerReference": "a.io/ns/app:v1"}, "m.io/x:y", tagged),
        ({"type": "exactReference", "dockerReference": "a.io/ns/app:v1"}, tagged, "a.io/ns/app:v2"),
        ({"type": "exactReference", "dockerReference": digested}, tagged, digested),
        ({"type": "exactRepository", "dockerRepository": "a.io/ns/app"}, "m.io/x:y",
         "a.io/ns/app:any"),
        ({"type": "exactRepository", "dockerRepository": "a.io/ns/app"}, tagged,
         "a.io/ns/other:v1"),
        ({"type": "exactRepository", "dockerRepository": "busybox"}, tagged,
         "docker.io/library/busybox:1"),
        ({"type": "remapIdentity", "prefix": "mirror.local/ns", "signedPrefix": "a.io/ns"},
         "mirror.local/ns/app:v1", tagged),
        ({"type": "remapIdentity", "prefix": "mirror.local/ns", "signedPrefix": "a.io/ns"},
         "mirror.local/nsx/app:v1", tagged),
        ({"type": "remapIdentity", "prefix": "mirror.local/ns", "signedPrefix": "a.io/ns"},
         "mirror.local/ns/app:v1", "a.io/ns/app:v2"),
        ({"type": "remapIdentity", "prefix": "mirror.local", "signedPrefix": "a.io"},
         f"mirror.local/ns/app@{DIGEST}", "a.io/ns/app:whatever"),
        ({"type": "remapIdentity", "prefix": "mirror.local/ns/app", "signedPrefix": "a.io/ns/app"},
         "mirror.local/ns/app:v1", tagged),
        ({"type": "remapIdentity", "prefix": "docker.io", "signedPrefix": "a.io"},
         "busybox:latest", "a.io/library/busybox:latest"),
        ({"type": "remapIdentity", "prefix": "m.io/ns", "signedPrefix": "a.io/UP"},
         "m.io/ns/app:v1", "a.io/UP/app:v1"),
        ({"type": "remapIdentity", "prefix": "m.io/ns", "signedPrefix": "a.io/ns"},
         "x.io/m.io/ns/app:v1", tagged),
        ({"type": "matchRepoDigestOrExact"}, tagged, "A.io/ns/app:v1"),
    ]
    table += extra
    return [Case(f"identity {identity['type']} pulled {pulled} signed {signed_ref}",
                 [key_req(pem_of(k.ec256), signedIdentity=identity)],
                 [signed(k.ec256, payload(signed_ref))], reference=pulled)
            for identity, pulled, signed_ref in table]


def rekor_cases(k: Keys) -> list[Case]:
    """Public keys with a Rekor key (policy_eval_sigstore.go, internal/rekor_set.go)."""
    ec256 = pem_of(k.ec256)
    data = payload()
    signature = raw_sign(k.ec256, data)

    def with_set(bundle: str | None) -> SigstoreSignature:
        annotations = {SIG: b64(signature)}
        if bundle is not None:
            annotations[BUNDLE] = bundle
        return SigstoreSignature(data, annotations)

    req = [key_req(ec256, rekorPublicKeyData=b64(pem_of(k.rekor)))]

    def edit(path: Sequence[str], value: Any) -> Callable[[dict[str, Any]], None]:
        def apply(body: dict[str, Any]) -> None:
            target = body
            for step in path[:-1]:
                target = target[step]
            if value is ...:
                del target[path[-1]]
            else:
                target[path[-1]] = value
        return apply

    def set_with(edit_fn: Callable[[dict[str, Any]], None]) -> str:
        return rekor_set(k.rekor, ec256, signature, data, body_edit=edit_fn)

    return [
        Case("rekor: good SET", req, [with_set(rekor_set(k.rekor, ec256, signature, data))]),
        Case("rekor: SET missing", req, [with_set(None)]),
        Case("rekor: SET by another Rekor key", req,
             [with_set(rekor_set(k.other_rekor, ec256, signature, data))]),
        Case("rekor: SET for another payload", req,
             [with_set(rekor_set(k.rekor, ec256, signature, payload("x.io/a:1")))]),
        Case("rekor: SET names another key", req,
             [with_set(rekor_set(k.rekor, pem_of(k.other), signature, data))]),
        Case("rekor: SET for another signature", req,
             [with_set(rekor_set(k.rekor, ec256, b"other signature", data))]),
        Case("rekor: SET not JSON", req, [with_set("nope")]),
        Case("rekor: SET with an extra key", req, [with_set('{"a": 1}')]),
        Case("rekor: kind", req, [with_set(set_with(edit(["kind"], "intoto")))]),
        Case("rekor: apiVersion missing", req, [with_set(set_with(edit(["apiVersion"], ...)))]),
        Case("rekor: hash algorithm", req,
             [with_set(set_with(edit(["spec", "data", "hash", "algorithm"], "sha512")))]),
        Case("rekor: hash not hex", req,
             [with_set(set_with(edit(["spec", "data", "hash", "value"], "zz")))]),
        Case("rekor: signature missing", req,
             [with_set(set_with(edit(["spec", "signature"], ...)))]),
        Case("rekor: public key not PEM", req, [with_set(set_with(
            edit(["spec", "signature", "publicKey", "content"], b64(b"plain"))))]),
        Case("rekor: data missing", req, [with_set(set_with(edit(["spec", "data"], ...)))]),
        Case("rekor: two keys, the second in the SET",
             [key_req(pem_of(k.other), ec256, rekorPublicKeyData=b64(pem_of(k.rekor)))],
             [with_set(rekor_set(k.rekor, ec256, signature, data))]),
        Case("rekor: the Rekor key is RSA", [key_req(ec256, rekorPublicKeyData=b64(pem_of(k.rsa)))],
             [with_set(rekor_set(k.rekor, ec256, signature, data))]),
        Case("rekor: rekorPublicKeyDatas, second key",
             [key_req(ec256, rekorPublicKeyDatas=[b64(pem_of(k.other_rekor)),
                                                  b64(pem_of(k.rekor))])],
             [with_set(rekor_set(k.rekor, ec256, signature, data))]),
    ]


def fulcio_cases(k: Keys) -> list[Case]:
    """Fulcio with Rekor (fulcio_cert.go: verifyRekorFulcio, the chain at the SET's
    integrated time, the OIDC issuer, the e-mail)."""
    req = [fulcio_req(k)]
    late = SIGNED_AT + datetime.timedelta(hours=1)
    return [
        Case("fulcio: good, with chain", req, [fulcio_signature(k)]),
        Case("fulcio: leaf issued by the root, no chain", req,
             [fulcio_signature(k, issuer="root", chain=False)]),
        Case("fulcio: intermediate missing from the chain", req,
             [fulcio_signature(k, chain=False)]),
        Case("fulcio: another CA", req, [fulcio_signature(k, issuer="fake", chain=False)]),
        Case("fulcio: policy trusts another CA", [fulcio_req(k, ca=k.fake_root[1])],
             [fulcio_signature(k)]),
        Case("fulcio: SET after the certificate expired", req,
             [fulcio_signature(k, integrated=late)]),
        Case("fulcio: SET before the certificate", req,
             [fulcio_signature(k, integrated=SIGNED_AT - datetime.timedelta(hours=1))]),
        Case("fulcio: another e-mail", [fulcio_req(k, email="someone@example.com")],
             [fulcio_signature(k)]),
        Case("fulcio: no e-mail in the certificate", req, [fulcio_signature(k, emails=())]),
        Case("fulcio: two e-mails", req,
             [fulcio_signature(k, emails=("a@example.com", EMAIL))]),
        Case("fulcio: another issuer", [fulcio_req(k, issuer="https://other")],
             [fulcio_signature(k)]),
        Case("fulcio: issuer v2 extension only", req,
             [fulcio_signature(k, oidc_v1=None, oidc_v2=ISSUER)]),
        Case("fulcio: issuer v1 and v2 agree", req,
             [fulcio_signature(k, oidc_v2=ISSUER)]),
        Case("fulcio: issuer v1 and v2 differ", req,
             [fulcio_signature(k, oidc_v2="https://v2.example.com")]),
        Case("fulcio: issuer extension missing", req, [fulcio_signature(k, oidc_v1=None)]),
        Case("fulcio: leaf for server auth only", req,
             [fulcio_signature(k, eku=(ExtendedKeyUsageOID.SERVER_AUTH,))]),
        Case("fulcio: leaf without extended key usage", req, [fulcio_signature(k, eku=())]),
        Case("fulcio: SET by another Rekor key", req,
             [fulcio_signature(k, rekor=k.other_rekor)]),
        Case("fulcio: certificate annotation missing", req, [_without(fulcio_signature(k), CERT)]),
        Case("fulcio: bundle annotation missing", req, [_without(fulcio_signature(k), BUNDLE)]),
        Case("fulcio: signed for another tag", req,
             [fulcio_signature(k, data=payload("a.io/ns/app:v9"))]),
        Case("fulcio: CA data not a certificate", [{**fulcio_req(k), "fulcio": {
            "caData": b64(b"junk"), "oidcIssuer": ISSUER, "subjectEmail": EMAIL}}],
            [fulcio_signature(k)]),
    ]


def _without(signature: SigstoreSignature, annotation: str) -> SigstoreSignature:
    return SigstoreSignature(signature.payload, {key: value for key, value in
                                                 signature.annotations.items()
                                                 if key != annotation})


def pki_cases(k: Keys) -> list[Case]:
    """The PKI root of trust (pki_cert.go: verifyPKI; go.podman.io/image v5.42)."""
    return [
        Case("pki: e-mail", [pki_req(k, subjectEmail=EMAIL)], [pki_signature(k)]),
        Case("pki: another e-mail", [pki_req(k, subjectEmail="x@example.com")],
             [pki_signature(k)]),
        Case("pki: host name", [pki_req(k, subjectHostname="build.example.com")],
             [pki_signature(k, dns=("build.example.com",))]),
        Case("pki: wildcard host name", [pki_req(k, subjectHostname="build.example.com")],
             [pki_signature(k, dns=("*.example.com",))]),
        Case("pki: another host name", [pki_req(k, subjectHostname="evil.example.com")],
             [pki_signature(k, dns=("build.example.com", "ci.example.com"))]),
        Case("pki: no host names", [pki_req(k, subjectHostname="build.example.com")],
             [pki_signature(k)]),
        Case("pki: intermediate from the policy",
             [pki_req(k, subjectEmail=EMAIL, caIntermediatesData=b64(cert_pem(k.pki_mid[1])))],
             [pki_signature(k, chain=False)]),
        Case("pki: no intermediate", [pki_req(k, subjectEmail=EMAIL)],
             [pki_signature(k, chain=False)]),
        Case("pki: another root", [pki_req(k, subjectEmail=EMAIL)],
             [pki_signature(k, issuer=k.fake_root, chain=False)]),
        Case("pki: leaf expired", [pki_req(k, subjectEmail=EMAIL)],
             [pki_signature(k, not_before=NOW - datetime.timedelta(days=40))]),
        Case("pki: certificate missing", [pki_req(k, subjectEmail=EMAIL)],
             [_without(pki_signature(k), CERT)]),
    ]



# ---------------------------------------------------------------- evaluation


def ours(case: Case) -> Verdict:
    policy = parse_policy(json.dumps({"default": case.requirements}))
    _, requirements = requirements_for(policy, [""])
    return evaluate_requirements(requirements, parse_docker_reference(case.reference),
                                 case.manifest, case.signatures)


def theirs(oracle: GoOracle, case: Case) -> dict[str, Any]:
    simple = [s.blob for s in case.signatures if isinstance(s, SimpleSigning)]
    layers = [{"media_type": s.media_type, "payload": s.payload, "annotations": s.annotations}
              for s in case.signatures if isinstance(s, SigstoreSignature)]
    attach = case.attachment if case.attachment is not None else bool(layers)
    return oracle.verify(json.dumps({"default": case.requirements}), case.reference,
                         case.manifest, simple=simple, sigstore=layers if attach else None)


def _clock(reason: str) -> str:
    """PKI certificates are checked at the time of the check: the second may differ."""
    return re.sub(r"current time \S+ is (after|before)", r"current time NOW is \1", reason)


def compare(oracle: GoOracle, cases: Sequence[Case]) -> tuple[int, list[str]]:
    """How many cases were compared, and a line per disagreement."""
    failures = []
    for case in cases:
        answer = theirs(oracle, case)
        try:
            mine = ours(case)
        except ConfigError as error:
            if answer.get("parse_error") is None:
                failures.append(f"{case.name}: policy refused by mirrorlab only: {error}")
            continue
        if "allowed" not in answer:
            failures.append(f"{case.name}: the oracle refused the case: {answer}")
            continue
        if mine.allowed != answer["allowed"]:
            failures.append(f"{case.name}: mirrorlab {mine.allowed} ({mine.reason!r}), "
                            f"library {answer['allowed']} ({answer['reason']!r})")
        elif case.message and _clock(mine.reason) != _clock(answer["reason"]):
            failures.append(f"{case.name}: reasons differ\n  mirrorlab: {mine.reason}\n"
                            f"  library:   {answer['reason']}")
    return len(cases), failures


TABLES: dict[str, Callable[[Keys], list[Case]]] = {
    "keys": key_cases, "payloads": payload_cases, "identities": identity_cases,
    "rekor": rekor_cases, "fulcio": fulcio_cases, "pki": pki_cases,
}


@pytest.mark.parametrize("table", list(TABLES))
def test_sigstore_matches_library(table: str, keys: Keys, go_oracle: GoOracle,
                                  record_property: Callable[[str, object], None]) -> None:
    """Each vector: the same verdict and the same reason as IsRunningImageAllowed (Go's
    JSON syntax texts included, now that one module reads JSON as Go does)."""
    compared, failures = compare(go_oracle, TABLES[table](keys))
    record_property("compared", compared)
    assert not failures, f"{len(failures)} of {compared} disagree:\n" + "\n".join(failures)


# ---------------------------------------------------------------- unit checks


def test_unsigned_verdict_of_evaluate_policy_is_the_librarys(go_oracle: GoOracle,
                                                             keys: Keys) -> None:
    """evaluate_policy without signatures says what IsRunningImageAllowed says for an
    image without any, and flags that the verdict needs them."""
    from mirrorlab.proxy.policy import evaluate_policy

    for requirements in ([key_req(pem_of(keys.ec256))],
                         [{"type": "insecureAcceptAnything"}, fulcio_req(keys)],
                         [key_req(pem_of(keys.ec256)), {"type": "reject"}]):
        text = json.dumps({"default": requirements})
        decision = evaluate_policy(parse_policy(text), parse_docker_reference(REF))
        answer = go_oracle.verify(text, REF, MANIFEST)
        assert (decision.allowed, decision.reason) == (answer["allowed"], answer["reason"])
        assert decision.needs_signatures is (requirements[-1]["type"] != "reject")


def test_signature_from_blob() -> None:
    """internal/signature/signature.go FromBlob: OpenPGP first bytes, the 0x00 format
    prefix, and the refusals."""
    assert signature_from_blob(b"\xa3\x01xyz") == SimpleSigning(b"\xa3\x01xyz")
    assert signature_from_blob(b"\x00simple-signing\n\x90abc") == SimpleSigning(b"\x90abc")
    stored = json.dumps({"mimeType": MEDIA, "payload": b64(b"p"),
                         "annotations": {SIG: "c2ln"}}).encode()
    assert signature_from_blob(b"\x00sigstore-json\n" + stored) == SigstoreSignature(
        b"p", {SIG: "c2ln"}, MEDIA)
    for blob, message in [(b"", "empty signature blob"),
                          (b"-----BEGIN PGP", "starting with binary 0x2d"),
                          (b"\x00nonewline", "missing newline"),
                          (b"\x00x\x01\n", "non-ASCII byte 0x1"),
                          (b"\x00other\nabc", 'unrecognized signature format "other"')]:
        with pytest.raises(ValueError, match=message):
            signature_from_blob(blob)


def test_identity_matching_is_on_the_logical_reference() -> None:
    """A signature for the source's name is accepted when the user pulled the source's
    name, whichever mirror served it; remapIdentity accepts a mirror's own name."""
    pulled = parse_docker_reference("registry.example.com/ns/app:v1")
    assert identity_matches({"type": "matchRepoDigestOrExact"}, pulled,
                            "registry.example.com/ns/app:v1")
    assert not identity_matches({"type": "matchRepoDigestOrExact"}, pulled,
                                "mirror.local/ns/app:v1")
    mirror = parse_docker_reference("mirror.local/ns/app:v1")
    assert identity_matches({"type": "remapIdentity", "prefix": "mirror.local",
                             "signedPrefix": "registry.example.com"}, mirror,
                            "registry.example.com/ns/app:v1")


# ---------------------------------------------------------------- strict parsing


_KEY = b64(b"-----BEGIN PUBLIC KEY-----\nAA==\n-----END PUBLIC KEY-----\n")
SIGSTORE_OPTIONS: dict[str, list[Any]] = {
    "keyPath": ["/k.pub", "", None, 3],
    "keyPaths": [["/a.pub"], [], None, ["/a", None], "x"],
    "keyData": [_KEY, "", None, "not base64!", 1],
    "keyDatas": [[_KEY], [], None, [None], [_KEY, "!!"]],
    "fulcio": [{"caData": _KEY, "oidcIssuer": ISSUER, "subjectEmail": EMAIL},
               {"caPath": "/ca.pem", "oidcIssuer": ISSUER, "subjectEmail": EMAIL},
               {"caPath": "/ca.pem", "caData": _KEY, "oidcIssuer": ISSUER, "subjectEmail": EMAIL},
               {"caData": _KEY, "subjectEmail": EMAIL}, {"caData": _KEY, "oidcIssuer": ISSUER},
               {"oidcIssuer": ISSUER, "subjectEmail": EMAIL},
               {"caData": _KEY, "oidcIssuer": ISSUER, "subjectEmail": EMAIL, "x": 1}, None, {}],
    "pki": [{"caRootsData": _KEY, "subjectEmail": EMAIL},
            {"caRootsPath": "/r.pem", "subjectHostname": "h.example.com"},
            {"caRootsPath": "/r.pem", "caRootsData": _KEY, "subjectEmail": EMAIL},
            {"caRootsData": _KEY}, {"subjectEmail": EMAIL},
            {"caRootsData": _KEY, "subjectEmail": EMAIL, "caIntermediatesPath": "/i",
             "caIntermediatesData": _KEY},
            {"caRootsData": _KEY, "subjectEmail": EMAIL, "caIntermediatesData": _KEY}, None],
    "rekorPublicKeyPath": ["/rekor.pub", "", None],
    "rekorPublicKeyPaths": [["/r.pub"], [], None],
    "rekorPublicKeyData": [_KEY, None, "%%"],
    "rekorPublicKeyDatas": [[_KEY], [], None],
    "signedIdentity": [{"type": "matchRepository"}, {"type": "exactReference",
                                                     "dockerReference": "a.io/b"},
                       {"type": "remapIdentity", "prefix": "a.io", "signedPrefix": "b.io/c"},
                       {"type": "remapIdentity", "prefix": "a.io/", "signedPrefix": "b.io"},
                       {"type": "remapIdentity", "prefix": "ns/repo", "signedPrefix": "b.io"},
                       {"type": "remapIdentity", "prefix": "a.io:5000", "signedPrefix": "B.io"},
                       None],
}
SIGNED_BY_OPTIONS: dict[str, list[Any]] = {
    "keyType": ["GPGKeys", "X509Certificates", "signedByGPGKeys", "RSA", None],
    "keyPath": ["/k.gpg", "", None],
    "keyPaths": [["/k.gpg"], [], None, ["/a", 1]],
    "keyData": ["QUJD", "", None, "QUJD!"],
    "signedIdentity": SIGSTORE_OPTIONS["signedIdentity"],
}


def random_requirement(rng: Any) -> dict[str, Any]:
    kind, options = rng.choice([("sigstoreSigned", SIGSTORE_OPTIONS),
                                ("signedBy", SIGNED_BY_OPTIONS)])
    requirement: dict[str, Any] = {"type": kind}
    for key in rng.sample(sorted(options), rng.randint(1, 3)):
        requirement[key] = rng.choice(options[key])
    if kind == "signedBy" and "keyType" not in requirement and rng.random() < 0.8:
        requirement["keyType"] = "GPGKeys"
    return requirement


def test_signature_requirements_parse_as_the_library(go_oracle: GoOracle) -> None:
    """signedBy and sigstoreSigned option combinations (policy_config.go,
    policy_config_sigstore.go: newPRSignedBy, newPRSigstoreSigned, the fulcio and pki
    objects, remapIdentity prefixes): refused by both or by neither."""
    import random

    from mirrorlab.proxy.errors import ConfigError as Refused

    rng = random.Random(13)
    failures = []
    cases = 3000
    for _ in range(cases):
        text = json.dumps({"default": [random_requirement(rng)]})
        answer = go_oracle.policy(text, [], evaluate=False)
        try:
            parse_policy(text)
            ours_error = None
        except Refused as error:
            ours_error = str(error)
        if (ours_error is None) != (answer["parse_error"] is None):
            failures.append(f"{text}\n  mirrorlab: {ours_error}\n  library:   "
                            f"{answer['parse_error']}")
    assert not failures, f"{len(failures)} of {cases} disagree:\n" + "\n".join(failures[:10])


# ---------------------------------------------------------------- bad input


def _mutations(rng: Any, text: str) -> str:
    choice = rng.randrange(5)
    if choice == 0 or not text:
        return "".join(chr(rng.randrange(32, 127)) for _ in range(rng.randrange(0, 40)))
    position = rng.randrange(len(text))
    if choice == 1:
        return text[:position]
    if choice == 2:
        return text[:position] + chr(rng.randrange(0, 0x250)) + text[position + 1:]
    if choice == 3:
        return text[:position] + text[position:] * 2
    return text.replace("\n", "\r\n", 1)


def test_malformed_signatures_are_judged_as_the_library(
        keys: Keys, go_oracle: GoOracle, record_property: Callable[[str, object], None]) -> None:
    """Annotations, certificates, chains, SETs and payloads cut, doubled or corrupted:
    each evaluation ends on a verdict (never an exception), the library's verdict; a
    refusal always has a reason. The reasons are counted, not required to match (Go's
    JSON, PEM and ASN.1 parsers word their errors their own way)."""
    import random

    rng = random.Random(2026)
    compared = same_reason = 0
    requirements = {
        "key": [key_req(pem_of(keys.ec256))],
        "rekor": [key_req(pem_of(keys.ec256), rekorPublicKeyData=b64(pem_of(keys.rekor)))],
        "fulcio": [fulcio_req(keys)],
        "pki": [pki_req(keys, subjectEmail=EMAIL, subjectHostname="build.example.com")],
    }
    data = payload()
    ec_signature = raw_sign(keys.ec256, data)
    sources = {
        "key": SigstoreSignature(data, {SIG: b64(ec_signature)}),
        "rekor": SigstoreSignature(data, {SIG: b64(ec_signature), BUNDLE: rekor_set(
            keys.rekor, pem_of(keys.ec256), ec_signature, data)}),
        "fulcio": fulcio_signature(keys),
        "pki": pki_signature(keys, dns=("build.example.com",)),
    }
    for _ in range(400):
        kind = rng.choice(sorted(sources))
        original = sources[kind]
        annotations = dict(original.annotations)
        mutated_payload = original.payload
        target = rng.choice([*sorted(annotations), "payload"])
        if target == "payload":
            mutated_payload = _mutations(rng, data.decode()).encode("utf-8", "surrogatepass")
        else:
            annotations[target] = _mutations(rng, annotations[target])
        if mutated_payload == original.payload and annotations == original.annotations:
            continue
        case = Case(f"{kind} {target}", requirements[kind],
                    [SigstoreSignature(mutated_payload, annotations)])
        verdict = ours(case)
        answer = theirs(go_oracle, case)
        compared += 1
        assert verdict.allowed == answer["allowed"], (case, verdict, answer)
        assert verdict.allowed or verdict.reason
        same_reason += _clock(verdict.reason) == _clock(answer["reason"])
    record_property("compared", compared)
    record_property("same_reason", same_reason)
    assert compared > 300
