"""GPG simple signing through mirrors, differential against Debian's skopeo 1.9.3.

One image on two real registries (mirror1, mirror2), signed with a key generated in a
private GNUPGHOME by `skopeo copy --sign-by` (identity `quay.io/ns/app:v1`), the signature
written by skopeo itself to mirror1's `lookaside-staging`. registries.d gives each mirror
its own lookaside, keyed by the mirror's address (containers/image reads registries.d for
the *physical* source that served the manifest): mirror1's holds the signature, mirror2's
does not. A third store holds a good signature of another image under this image's digest
(made with `skopeo standalone-sign`); an HTTP server serves the stores for the http cases.
policy.json requires `signedBy` (`keyType: GPGKeys`, `keyPath`) for `quay.io/ns` and
`mirror.local/ns`.

Each case of `CASES` is answered three times with the same registries.conf, policy.json and
registries.d:

1. skopeo 1.9.3 copying `docker://quay.io/...` (or `mirror.local/...`) straight from the
   mirrors (quay.io itself is unreachable inside `unshare -n`; the mirrors serve first);
2. skopeo 1.9.3 copying through `mirrorlab serve --registries-d ...` (the client trusts
   anything: the proxy verifies; a refusal is a 403 whose OCI body skopeo prints as
   `denied: <message>`);
3. `mirrorlab check --json`.

The verdicts must agree. The texts must agree too, except for the named entries of
`KNOWN`, each pinned exactly: two are wordings where mirrorlab follows the current library
(go.podman.io/image v5.42) and its OpenPGP mechanism while Debian's skopeo is
containers/image 5.23 built with gpgme; the third (an unreachable lookaside) is
mirrorlab's own text and status, described at the entry.
Every case also checks that the mirror that did not serve the manifest was never asked
for anything: no other source is asked for the signature.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from string import Template
from typing import Any

import pytest

from mirrorlab.harness.images import Image, RegistryClient, make_image
from mirrorlab.harness.registry import RegistryProcess
from mirrorlab.proxy.signatures.gpg import gpg_available

from .lab import ProxyProcess

pytestmark = pytest.mark.differential

IDENTITY = "quay.io/ns/app:v1"
"""The identity every good signature carries (`--sign-identity`)."""
BUILT_IN_LOOKASIDE = "file:///var/lib/containers/sigstore"
"""What containers/image reads, as root, where registries.d gives no lookaside."""


# ---------------------------------------------------------------- the signed image


class _Lookaside(SimpleHTTPRequestHandler):
    """A lookaside store over HTTP: files under the work directory, requests remembered."""

    seen: list[str]

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        self.seen.append(f"{self.command} {self.path} {code}")

    def log_message(self, *args: Any) -> None:
        pass


@dataclass
class Signed:
    work: Path
    gnupg: Path
    mirror1: RegistryProcess
    mirror2: RegistryProcess
    image: Image
    signer: str
    """The signing key's fingerprint."""
    keys: dict[str, Path]
    """`signer` and `stranger`: exported public keys, for `keyPath`."""
    signature: bytes
    """What skopeo wrote to mirror1's lookaside: `signature-1` of the image."""
    other_digest: str
    """The manifest digest that the signature in the `lw` store signs."""
    http_port: int
    closed_port: int
    certs_d: Path
    http_seen: list[str] = field(default_factory=list)

    @property
    def resolve_args(self) -> list[str]:
        return ["--resolve", "quay.io=127.0.0.1:9", "--resolve", "mirror.local=127.0.0.1:9"]

    def mirror(self, name: str) -> RegistryProcess:
        return {"mirror1": self.mirror1, "mirror2": self.mirror2}[name]

    @property
    def hex(self) -> str:
        return self.image.digest.split(":", 1)[1]

    def values(self) -> dict[str, str]:
        """What the table's templates name."""
        url = (f"http://127.0.0.1:{self.closed_port}/sigs/ns/app@sha256={self.hex}"
               "/signature-1")
        return {"m1": self.mirror1.address, "m2": self.mirror2.address,
                "l1": f"file://{self.work}/l1", "l2": f"file://{self.work}/l2",
                "lw": f"file://{self.work}/lw", "http": f"http://127.0.0.1:{self.http_port}",
                "closed": f"http://127.0.0.1:{self.closed_port}/sigs", "url": url,
                "port": str(self.closed_port), "digest": self.image.digest, "hex": self.hex,
                "other_digest": self.other_digest,
                "signer": self.signer, "keyid": self.signer[-16:].lower().lstrip("0"),
                "builtin": BUILT_IN_LOOKASIDE}


def _gpg(home: Path, *args: str) -> bytes:
    return subprocess.run(["gpg", "--homedir", str(home), "--batch", "--yes", "--no-tty",
                           "--pinentry-mode", "loopback", "--passphrase", "", *args],
                          capture_output=True, check=True, timeout=120).stdout


def _fingerprint(home: Path, uid: str) -> str:
    listing = _gpg(home, "--with-colons", "--list-keys", uid).decode()
    return next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))


def _skopeo(*args: str, home: Path, gnupg: Path | None = None
            ) -> subprocess.CompletedProcess[str]:
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin"}
    if gnupg is not None:
        env["GNUPGHOME"] = str(gnupg)
    return subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120,
                          check=False, env=env)


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Signed]:
    if not gpg_available() or shutil.which("skopeo") is None:
        pytest.fail("gnupg and skopeo are installed by `make setup`", pytrace=False)
    work = tmp_path_factory.mktemp("gpgskopeo")
    gnupg = work / "gnupg"
    gnupg.mkdir(mode=0o700)
    mirrors = [RegistryProcess(work, "mirror1"), RegistryProcess(work, "mirror2")]
    started: list[RegistryProcess] = []
    server: ThreadingHTTPServer | None = None
    # A port bound but not listening: connections to it are refused, and no process of
    # the test (registry, proxy) can be given it while the module runs.
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    try:
        _gpg(gnupg, "--quick-gen-key", "Signer <signer@example.com>", "ed25519", "sign",
             "never")
        _gpg(gnupg, "--quick-gen-key", "Stranger <stranger@example.com>", "ed25519", "sign",
             "never")
        signer = _fingerprint(gnupg, "signer@example.com")
        keys = {"signer": work / "signer.gpg", "stranger": work / "stranger.gpg"}
        keys["signer"].write_bytes(_gpg(gnupg, "--export", signer))
        keys["stranger"].write_bytes(
            _gpg(gnupg, "--export", _fingerprint(gnupg, "stranger@example.com")))
        for registry in mirrors:
            started.append(registry.start())
        image = make_image("gpg-skopeo-signed")
        for registry in mirrors:
            for tag in ("v1", "v2"):
                RegistryClient(registry.url, None).push_image("ns/app", image, tag)
        # Sign as a mirroring job would: copy to mirror1 with --sign-by, the signature
        # going to mirror1's lookaside-staging.
        staging = work / "signing.d"
        staging.mkdir()
        (staging / "staging.yaml").write_text(
            f"docker:\n  {mirrors[0].address}:\n    lookaside-staging: file://{work}/l1\n")
        done = _skopeo("--registries.d", str(staging), "--insecure-policy", "copy",
                       "--retry-times", "0", "--src-tls-verify=false",
                       "--dest-tls-verify=false", "--sign-by", signer, "--sign-identity",
                       IDENTITY, f"docker://{mirrors[1].address}/ns/app:v1",
                       f"docker://{mirrors[0].address}/ns/app:v1", home=work, gnupg=gnupg)
        assert done.returncode == 0, done.stderr
        hexdigest = image.digest.split(":", 1)[1]
        written = work / "l1" / f"ns/app@sha256={hexdigest}" / "signature-1"
        assert written.is_file(), (done.stderr, sorted(str(p) for p in work.rglob("sig*")))
        # A good signature of another image, stored under this image's digest.
        other = make_image("gpg-skopeo-other")
        (work / "other-manifest.json").write_bytes(other.manifest.data)
        wrong = work / "lw" / f"ns/app@sha256={hexdigest}" / "signature-1"
        wrong.parent.mkdir(parents=True)
        done = _skopeo("standalone-sign", str(work / "other-manifest.json"), IDENTITY,
                       signer, "-o", str(wrong), home=work, gnupg=gnupg)
        assert done.returncode == 0, done.stderr
        (work / "l2").mkdir()
        (work / "certs.d").mkdir()
        seen: list[str] = []
        handler = type("Handler", (_Lookaside,), {"seen": seen})
        server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(work)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield Signed(work, gnupg, mirrors[0], mirrors[1], image, signer, keys,
                     written.read_bytes(), other.digest, server.server_address[1],
                     closed.getsockname()[1],
                     work / "certs.d", seen)
    finally:
        closed.close()
        if server is not None:
            server.shutdown()
            server.server_close()
        for registry in started:
            registry.stop()
        subprocess.run(["gpgconf", "--homedir", str(gnupg), "--kill", "all"], check=False,
                       capture_output=True)


# ---------------------------------------------------------------- the table

STORAGES: dict[str, tuple[str, str]] = {
    # name: (registries.d, the lookaside base registries.d gives the *first* mirror)
    "per-mirror": ("docker:\n  $m1:\n    lookaside: $l1\n    lookaside-staging: $l1\n"
                   "  $m2:\n    lookaside: $l2\n", "$l1"),
    "per-mirror, mirror2 first": ("docker:\n  $m1:\n    lookaside: $l1\n"
                                  "  $m2:\n    lookaside: $l2\n", "$l2"),
    "another image's signature": ("docker:\n  $m1:\n    lookaside: $lw\n"
                                  "  $m2:\n    lookaside: $l2\n", "$lw"),
    "http": ("docker:\n  $m1:\n    lookaside: $http/l1\n  $m2:\n    lookaside: $http/l2\n",
             "$http/l1"),
    "http, mirror2 first": ("docker:\n  $m1:\n    lookaside: $http/l1\n"
                            "  $m2:\n    lookaside: $http/l2\n", "$http/l2"),
    "closed port": ("docker:\n  $m1:\n    lookaside: $closed\n  $m2:\n    lookaside: $l2\n",
                    "$closed"),
    # lookaside-staging is where signatures are written, never read.
    "staging only": ("docker:\n  $m1:\n    lookaside-staging: $l1\n", "$builtin"),
    # Keyed by the logical name: not the source that serves, so not read.
    "logical name": ("docker:\n  quay.io:\n    lookaside: $l1\n"
                     "  mirror.local:\n    lookaside: $l1\n", "$builtin"),
    # A narrower section without `lookaside` leaves its parent's in force.
    "narrower section": ("docker:\n  $m1:\n    lookaside: $l1\n"
                         "  $m1/ns/app:\n    lookaside-staging: $l2\n", "$l1"),
    # The older spelling of `lookaside`.
    "sigstore key": ("docker:\n  $m1:\n    sigstore: $l1\n", "$l1"),
    # One store for every registry: mirror2 reads the same files.
    "default-docker, mirror2 first": ("default-docker:\n  lookaside: $l1\n", "$l1"),
}


@dataclass(frozen=True)
class Known:
    """A text that skopeo 1.9.3 words otherwise than mirrorlab, for the same verdict.
    `node`: what skopeo prints after `Source image rejected: ` (a regular expression,
    `$name` placeholders filled with escaped values); `client`: what skopeo prints for the
    proxy's answer, when that is not `denied: Source image rejected: <mirrorlab's text>`."""

    node: str
    client: str | None = None


KNOWN = {
    # containers/image 5.23 formats the signed identity with %s, v5.42 with %q
    # (signature/policy_eval_signedby.go); mirrorlab follows v5.42.
    "identity unquoted": Known(r"Signature for identity quay\.io/ns/app:v1 is not accepted"),
    # Debian builds skopeo with gpgme: a signature by a key outside the policy's keyring is
    # a Go %#v dump of gpgme.Signature (Status err 0x9 is GPG_ERR_NO_PUBKEY; PubkeyAlgo
    # 303 EdDSA, HashAlgo 8 SHA-256; the timestamp is the signing time). mirrorlab words it
    # as the OpenPGP mechanism does ("Key not found for key ID <the signer's> in
    # signature"); the dump names the same key, by its full fingerprint.
    "gpgme dump": Known(
        r'Invalid GPG signature: gpgme\.Signature\{Summary:128, Fingerprint:"$signer", '
        r"Status:gpgme\.Error\{err:0x9\}, Timestamp:time\.Date\(\d{4}, time\.\w+, "
        r"\d+, \d+, \d+, \d+, 0, time\.Local\), ExpTimestamp:time\.Date\(1970, "
        r"time\.January, 1, 0, 0, 0, 0, time\.Local\), WrongKeyUsage:false, PKATrust:0x0, "
        r"ChainModel:false, Validity:0, ValidityReason:error\(nil\), PubkeyAlgo:303, "
        r"HashAlgo:8\}"),
}


@dataclass(frozen=True)
class Case:
    name: str
    pull: str
    """The logical reference pulled (`$digest` for the image's)."""
    storage: str
    refused: str | None = None
    """None: the pull is allowed. Else mirrorlab's reason (serve and check)."""
    identity: dict[str, str] | None = None
    key: str = "signer"
    known: str | None = None
    """The name of a `KNOWN` difference skopeo 1.9.3 shows for this case."""
    unreadable: bool = False
    """The signatures cannot be read: a failure before any verdict on them."""

    @property
    def first(self) -> str:
        return "mirror2" if "mirror2 first" in self.storage else "mirror1"


NONE = "A signature was required, but no signature exists"
REJECTED_IDENTITY = 'Signature for identity "quay.io/ns/app:v1" is not accepted'
V1, V2, BY_DIGEST = "quay.io/ns/app:v1", "quay.io/ns/app:v2", "quay.io/ns/app@$digest"
MIRROR_LOCAL = "mirror.local/ns/app:v1"
REMAP = "remapIdentity"


def _remap(signed_prefix: str) -> dict[str, str]:
    return {"type": REMAP, "prefix": "mirror.local/ns", "signedPrefix": signed_prefix}


CASES = [
    # Where the signature is.
    Case("serving mirror holds it", V1, "per-mirror"),
    Case("only the other mirror holds it", V1, "per-mirror, mirror2 first", NONE),
    Case("http lookaside holds it", V1, "http"),
    Case("http lookaside of the serving mirror lacks it", V1, "http, mirror2 first", NONE),
    Case("lookaside-staging only", V1, "staging only", NONE),
    Case("registries.d keyed by the logical name", V1, "logical name", NONE),
    Case("narrower section inherits lookaside", V1, "narrower section"),
    Case("sigstore: key", V1, "sigstore key"),
    Case("default-docker store for both", V1, "default-docker, mirror2 first"),
    # What the signature says.
    Case("wrong key", V1, "per-mirror", "Key not found for key ID $keyid in signature",
         key="stranger", known="gpgme dump"),
    Case("signature of another image", V1, "another image's signature",
         "Signature for digest $other_digest does not match"),
    # signedIdentity, on the logical reference.
    Case("default: the signed tag", V1, "per-mirror"),
    Case("default: another tag", V2, "per-mirror", REJECTED_IDENTITY,
         known="identity unquoted"),
    Case("default: by digest", BY_DIGEST, "per-mirror"),
    Case("matchExact: the signed tag", V1, "per-mirror", identity={"type": "matchExact"}),
    Case("matchExact: by digest", BY_DIGEST, "per-mirror", REJECTED_IDENTITY,
         identity={"type": "matchExact"}, known="identity unquoted"),
    Case("matchExact: another tag", V2, "per-mirror", REJECTED_IDENTITY,
         identity={"type": "matchExact"}, known="identity unquoted"),
    Case("matchRepository: another tag", V2, "per-mirror",
         identity={"type": "matchRepository"}),
    Case("exactReference: the signed one, pulling another tag", V2, "per-mirror",
         identity={"type": "exactReference", "dockerReference": IDENTITY}),
    Case("exactReference: another repository", V1, "per-mirror", REJECTED_IDENTITY,
         identity={"type": "exactReference", "dockerReference": "quay.io/other/app:v1"},
         known="identity unquoted"),
    Case("exactRepository: the signed one", V2, "per-mirror",
         identity={"type": "exactRepository", "dockerRepository": "quay.io/ns/app"}),
    Case("exactRepository: another repository", V1, "per-mirror", REJECTED_IDENTITY,
         identity={"type": "exactRepository", "dockerRepository": "quay.io/other/app"},
         known="identity unquoted"),
    Case("remapIdentity: mirror.local to the signed prefix", MIRROR_LOCAL, "per-mirror",
         identity=_remap("quay.io/ns")),
    Case("remapIdentity: to another prefix", MIRROR_LOCAL, "per-mirror", REJECTED_IDENTITY,
         identity=_remap("quay.io/other"), known="identity unquoted"),
    Case("remapIdentity: prefix not matching, default rule", V1, "per-mirror",
         identity=_remap("quay.io/other")),
    # Reading fails.
    # Reading fails: the pull fails on both sides, in Go's words (url.Error) on both.
    Case("lookaside unreachable", V1, "closed port",
         'Get "$url": dial tcp 127.0.0.1:$port: connect: connection refused',
         unreadable=True),
]
assert {c.known for c in CASES if c.known} == set(KNOWN)
assert {c.storage for c in CASES} == set(STORAGES)


# ---------------------------------------------------------------- the three answers


@dataclass(frozen=True)
class Answer:
    allowed: bool
    text: str
    """Empty when allowed; else the reason (skopeo: after `Source image rejected: `, or
    what it printed for the proxy's answer)."""


_FATAL = re.compile(r'level=fatal msg="((?:[^"\\]|\\.)*)"')
_THROUGH = re.compile(r"initializing source docker://\S+: reading manifest \S+ in \S+: (.*)",
                      re.DOTALL)


def _fatal(stderr: str) -> str:
    found = _FATAL.search(stderr)
    assert found is not None, stderr
    text: str = json.loads(f'"{found.group(1)}"')
    return text


def _files(signed: Signed, case: Case, tmp_path: Path) -> tuple[Path, Path, Path]:
    values = signed.values()
    first = signed.mirror(case.first)
    second = signed.mirror("mirror2" if case.first == "mirror1" else "mirror1")
    mirrors = "".join(f'[[registry.mirror]]\nlocation = "{r.address}/ns"\ninsecure = true\n'
                      for r in (first, second))
    conf = tmp_path / "registries.conf"
    conf.write_text(f'[[registry]]\nlocation = "quay.io/ns"\n{mirrors}'
                    f'[[registry]]\nlocation = "mirror.local/ns"\n{mirrors}')
    requirement: dict[str, object] = {"type": "signedBy", "keyType": "GPGKeys",
                                      "keyPath": str(signed.keys[case.key])}
    if case.identity is not None:
        requirement["signedIdentity"] = case.identity
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}],
                                  "transports": {"docker": {"quay.io/ns": [requirement],
                                                            "mirror.local/ns": [requirement]}}}))
    registries_d = tmp_path / "registries.d"
    registries_d.mkdir()
    (registries_d / "mirrors.yaml").write_text(
        Template(STORAGES[case.storage][0]).substitute(values))
    return conf, policy, registries_d


def _node(signed: Signed, ref: str, conf: Path, policy: Path, registries_d: Path,
          out: Path) -> Answer:
    """skopeo 1.9.3 straight from the mirrors."""
    result = _skopeo("--registries-conf", str(conf), "--registries.d", str(registries_d),
                     "--policy", str(policy), "copy", "--retry-times", "0",
                     f"docker://{ref}", f"dir:{out}", home=out.parent)
    if result.returncode == 0:
        # The signature it read is the one it copied.
        assert (out / "signature-1").read_bytes() == signed.signature
        return Answer(True, "")
    message = _fatal(result.stderr)
    prefix = "Source image rejected: "
    assert message.startswith(prefix), message
    return Answer(False, message[len(prefix):])


def _through_proxy(signed: Signed, ref: str, conf: Path, policy: Path, registries_d: Path,
                   tmp_path: Path) -> tuple[Answer, list[dict[str, object]]]:
    """skopeo 1.9.3 trusting anything, through `mirrorlab serve`, which verifies."""
    proxy = ProxyProcess(tmp_path / "proxy", conf.read_text(), signed,
                         policy=policy.read_text(),
                         extra=("--registries-d", str(registries_d)))
    try:
        (tmp_path / "client.conf").write_text("")
        (tmp_path / "client.d").mkdir()
        out = tmp_path / "through"
        result = _skopeo("--registries-conf", str(tmp_path / "client.conf"), "--registries.d",
                         str(tmp_path / "client.d"), "--insecure-policy", "copy",
                         "--retry-times", "0", "--src-tls-verify=false",
                         f"docker://{proxy.address}/{ref}", f"dir:{out}", home=tmp_path)
        events = proxy.events("signatures")
    finally:
        proxy.stop()
    if result.returncode == 0:
        manifest = (out / "manifest.json").read_bytes()
        assert manifest == signed.image.manifest.data
        return Answer(True, ""), events
    message = _fatal(result.stderr)
    through = _THROUGH.fullmatch(message)
    assert through is not None, message
    return Answer(False, through.group(1)), events


def _check(signed: Signed, ref: str, conf: Path, policy: Path, registries_d: Path,
           tmp_path: Path) -> tuple[Answer, dict[str, Any]]:
    (tmp_path / "conf.d").mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "mirrorlab", "check", "--json", ref, "--registries-conf",
         str(conf), "--registries-conf-dir", str(tmp_path / "conf.d"), "--policy",
         str(policy), "--registries-d", str(registries_d), "--certs-dir",
         str(signed.certs_d), "--offline-names", *signed.resolve_args],
        capture_output=True, text=True, timeout=60, check=False)
    verdict: dict[str, Any] = json.loads(result.stdout.splitlines()[0])
    assert result.returncode == (0 if verdict["verdict"] == "ok" else 1), result.stderr
    if verdict["verdict"] == "ok":
        return Answer(True, ""), verdict
    assert verdict["verdict"] == "fails", verdict
    served = verdict["served_by"]
    for prefix in (f"{served} serves the image but its signatures do not satisfy "
                   "policy.json: ", f"reading the signatures from {served} failed: "):
        if verdict["cause"].startswith(prefix):
            return Answer(False, verdict["cause"][len(prefix):]), verdict
    raise AssertionError(verdict)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_skopeo_direct_through_serve_and_check_agree(signed: Signed, tmp_path: Path,
                                                     case: Case) -> None:
    values = signed.values()
    ref = Template(case.pull).substitute(values)
    conf, policy, registries_d = _files(signed, case, tmp_path)
    serving = signed.mirror(case.first)
    other = signed.mirror("mirror2" if case.first == "mirror1" else "mirror1")
    before = len(other.requests_seen())
    http_before = len(signed.http_seen)

    node = _node(signed, ref, conf, policy, registries_d, tmp_path / "direct")
    client, events = _through_proxy(signed, ref, conf, policy, registries_d, tmp_path)
    check, verdict = _check(signed, ref, conf, policy, registries_d, tmp_path)
    answers = {"skopeo 1.9.3": node, "skopeo through serve": client, "check": check}

    # The mirror that did not serve the manifest was asked nothing, by anyone.
    assert len(other.requests_seen()) == before, other.requests_seen()[before:]
    # serve read the signatures of the source that served, where registries.d says.
    lookaside = Template(STORAGES[case.storage][1]).substitute(values) + "/ns/app"
    assert events, answers
    for event in events:
        assert str(event["source"]).startswith(serving.address + "/ns/app"), event
        if not case.unreadable:
            assert event["lookaside"] == lookaside, event
    assert verdict["served_by"] == f"{serving.address}/ns/app", verdict
    if case.storage.startswith("http"):
        # All three read the serving mirror's store over HTTP, and only that one.
        # signature-1, -2, ... until one is missing: each reader, one after the other.
        store = f"GET /{'l1' if case.first == 'mirror1' else 'l2'}/ns/app@sha256={signed.hex}"
        reads = ([f"{store}/signature-1 404"] if case.refused else
                 [f"{store}/signature-1 200", f"{store}/signature-2 404"])
        assert signed.http_seen[http_before:] == reads * 3, signed.http_seen[http_before:]

    allowed = case.refused is None
    assert {name: a.allowed for name, a in answers.items()} == dict.fromkeys(
        answers, allowed), answers
    if allowed:
        assert all(e["ok"] is True and e["signatures"] == 1 for e in events), events
        assert any(note.startswith("signatures verified: 1 read from")
                   for note in verdict["notes"]), verdict
        return
    assert case.refused is not None
    reason = Template(case.refused).substitute(values)
    # mirrorlab's two commands give the same reason, and serve logs it.
    assert check.text == reason, (check.text, reason)
    for event in events:
        assert event["ok"] is False
        assert event.get("error" if case.unreadable else "reason") == reason, event
    known = KNOWN[case.known] if case.known is not None else None
    escaped = {k: re.escape(v) for k, v in values.items()}
    if known is None:
        assert node.text == reason, answers
    else:
        assert node.text != reason, (case.known, "is no longer a difference", answers)
        assert re.fullmatch(Template(known.node).substitute(escaped), node.text), answers
    if known is None or known.client is None:
        assert client.text == f"denied: Source image rejected: {reason}", answers
    else:
        assert re.fullmatch(Template(known.client).substitute(escaped), client.text), answers
