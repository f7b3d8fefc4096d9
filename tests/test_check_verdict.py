"""`mirrorlab check` verdicts: what each walk outcome is called, its cause and its fix.

Walks are built by hand from real pull plans (`resolve_sources` over real registries.conf
files) and the `Attempt` records the attempt loop would have written; the wording is what
is under test. The fallback rules behind `failing_node_modes` are `proxy/fallback.py`'s.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest

from mirrorlab.proxy.check_inputs import ImageInput
from mirrorlab.proxy.check_report import format_json, format_summary, format_text, shorten
from mirrorlab.proxy.check_verdict import Cause, Judge, Status, Tally, Verdict
from mirrorlab.proxy.check_walk import Fetch, ImageWalk, Platform, PlatformCheck, Walker
from mirrorlab.proxy.explain import NodeConfig
from mirrorlab.proxy.fallback import Fallback, FallbackMode
from mirrorlab.proxy.outcomes import Attempt, Outcome
from mirrorlab.proxy.paths import NodeFiles
from mirrorlab.proxy.plan import resolve_sources
from mirrorlab.proxy.reference import parse_docker_reference
from mirrorlab.proxy.steps import Step
from mirrorlab.proxy.upstream import Upstreams

INDEX = "sha256:" + "1" * 64
IMAGE = "sha256:" + "2" * 64
LAYER = "sha256:" + "3" * 64
ARM = "sha256:" + "4" * 64

MIRRORED = """
[[registry]]
location = "quay.io/ns"
blocked = true
[[registry.mirror]]
location = "mirror.example.com/ns"
[[registry.mirror]]
location = "mirror2.example.com/ns"
"""
DIGEST_ONLY = """
[[registry]]
location = "quay.io/ns"
blocked = true
mirror-by-digest-only = true
[[registry.mirror]]
location = "mirror.example.com/ns"
"""
OPEN = """
[[registry]]
location = "quay.io/ns"
[[registry.mirror]]
location = "mirror.example.com/ns"
"""
BLOCKED_ONLY = """
[[registry]]
location = "quay.io/ns"
blocked = true
"""
SIGNED = {"default": [{"type": "insecureAcceptAnything"}], "transports": {"docker": {
    "quay.io/ns/signed": [{"type": "sigstoreSigned", "keyPath": "/etc/pki/key.pub"}],
    "quay.io/ns/rejected": [{"type": "reject"}]}}}

Answer = Outcome | tuple[Outcome, str]
"""What one source does: an outcome, or a failure with its OCI error code."""


@dataclass
class World:
    config: NodeConfig
    mode: FallbackMode = FallbackMode.STICKY
    disconnected: bool = False

    @property
    def walker(self) -> Walker:
        return Walker(self.config, cast(Upstreams, None), Fallback(self.mode),
                      disconnected=self.disconnected)

    def judge(self, walk: ImageWalk) -> Verdict:
        return Judge(self.config, self.mode, self.walker.down_because).judge(walk)


def world(tmp_path: Path, conf: str, *, auth: dict[str, object] | None = None,
          **kwargs: bool | FallbackMode) -> World:
    (tmp_path / "registries.conf").write_text(conf)
    (tmp_path / "drop-ins").mkdir(exist_ok=True)
    (tmp_path / "policy.json").write_text(json.dumps(SIGNED))
    (tmp_path / "auth.json").write_text(json.dumps({"auths": auth or {}}))
    files = NodeFiles(registries_conf=str(tmp_path / "registries.conf"),
                      registries_conf_dir=str(tmp_path / "drop-ins"),
                      policy=str(tmp_path / "policy.json"), certs_dir=str(tmp_path / "certs.d"),
                      auth_file=str(tmp_path / "auth.json"))
    return World(NodeConfig.load(files), **kwargs)  # type: ignore[arg-type]


def _fetch(what: str, steps: Sequence[Step], answers: Sequence[Answer], *,
           referenced: bool, home: Step | None = None, platform: Platform | None = None,
           down: World | None = None, mode: FallbackMode = FallbackMode.STICKY) -> Fetch:
    """The attempts the loop records over `steps`: blocked ones skipped, the others
    answering in order until one serves or the mode's rules stop the walk."""
    kind = "manifest" if "manifest" in what else "blob"
    fetch = Fetch(what, kind, referenced, steps[0].source.reference.digest if steps else None,
                  platform, home=home)
    fetch.steps = {str(s.source.reference): s for s in steps}
    queue = list(answers)
    walker = down.walker if down else None
    for step in steps:
        source = str(step.source.reference)
        if step.source.blocked:
            fetch.attempts.append(Attempt(source, Outcome.BLOCKED, "blocked"))
            continue
        if walker is not None and walker.down_because(step.source):
            fetch.attempts.append(Attempt(source, Outcome.CONNECT, "not contacted"))
            continue
        answer = queue.pop(0)
        outcome, code = answer if isinstance(answer, tuple) else (answer, None)
        detail = "x509: certificate signed by unknown authority" if outcome == Outcome.TLS \
            else f"{outcome}"
        fetch.attempts.append(Attempt(source, outcome, detail, code=code,
                                      fallback=referenced and home is not None
                                      and step.source_name != home.source_name))
        if outcome == Outcome.SERVED:
            fetch.served_by = step
            break
        if not Fallback(mode).goes_on(outcome, code, kind=kind, referenced=referenced):
            break
    return fetch


def walk_of(w: World, text: str, answers: Sequence[Answer]) -> tuple[ImageWalk, list[Step]]:
    """An image whose top-level manifest went through the plan with these answers."""
    ref = parse_docker_reference(text)
    walk = ImageWalk(ref)
    w.walker.policy(walk)
    walk.plan = resolve_sources(w.config.registries, ref)
    steps = [Step(ref, source) for source in walk.plan.sources]
    walk.top = _fetch("manifest", steps, answers, referenced=False, down=w)
    if walk.top.served_by is not None:
        walk.digest = ref.digest or IMAGE
    return walk, steps


def with_blob(w: World, walk: ImageWalk, steps: list[Step], answers: Sequence[Answer]) -> None:
    """One layer, tried at the manifest's source and, as the mode allows, after it."""
    home = walk.top.served_by if walk.top else None
    assert home is not None
    plan = [s.for_identity(LAYER) for s in steps]
    candidates = Fallback(w.mode).candidates(plan, home.for_identity(LAYER), "blob")
    blob = _fetch("layer", candidates, answers, referenced=True,
                  home=home.for_identity(LAYER), mode=w.mode)
    walk.platforms.append(PlatformCheck(None, IMAGE, blobs=[blob]))


def test_policy_rejection_contacts_nothing(tmp_path: Path) -> None:
    w = world(tmp_path, MIRRORED)
    walk = ImageWalk(parse_docker_reference("quay.io/ns/rejected:1"))
    w.walker.policy(walk)
    verdict = w.judge(walk)
    assert (verdict.status, verdict.cause_kind) == (Status.FAILS, Cause.POLICY)
    assert verdict.cause == ("rejected by policy.json (scope 'quay.io/ns/rejected'): Running "
                             "image docker://quay.io/ns/rejected:1 is rejected by policy.; "
                             "nothing contacted")
    assert verdict.fixes[0].startswith("allow quay.io/ns/rejected in policy.json")


def test_signature_requirement_is_never_ok(tmp_path: Path) -> None:
    w = world(tmp_path, MIRRORED)
    walk, steps = walk_of(w, f"quay.io/ns/signed@{IMAGE}", [Outcome.SERVED])
    with_blob(w, walk, steps, [Outcome.SERVED])
    verdict = w.judge(walk)
    # Signatures were not read (this walk is made by hand): never `ok`.
    assert (verdict.status, verdict.cause_kind) == (Status.NOT_CHECKED,
                                                    Cause.SIGNATURE_UNCHECKED)
    assert verdict.cause is not None
    assert verdict.cause.startswith("signature requirement not checked: policy.json requires "
                                    "sigstoreSigned (scope 'quay.io/ns/signed')")
    assert verdict.served_by == "mirror.example.com/ns/signed"


# (registries.conf, reference, answers of the unblocked sources in plan order, fallback
#  mode, --disconnected, expected cause kind, cause, fixes)
TOP_CASES = [
    pytest.param(
        MIRRORED, f"quay.io/ns/app@{IMAGE}", [Outcome.NOT_FOUND, Outcome.NOT_FOUND], False,
        Cause.MISSING_ON_MIRROR,
        "manifest unknown on every source: mirror.example.com/ns/app (404), "
        "mirror2.example.com/ns/app (404), quay.io/ns blocked",
        (f"mirror quay.io/ns/app@{IMAGE} to mirror.example.com/ns/app",
         f"mirror quay.io/ns/app@{IMAGE} to mirror2.example.com/ns/app"), id="missing"),
    pytest.param(
        DIGEST_ONLY, "quay.io/ns/app:v1", [], False, Cause.TAG_NEEDS_ITMS,
        "a tag pull, and every mirror of quay.io/ns is for digest pulls only "
        "(ImageDigestMirrorSet): no source may be contacted: quay.io/ns blocked",
        ("add an ImageTagMirrorSet for tag pulls of quay.io/ns",
         "pull by digest: quay.io/ns/app@sha256:..."), id="tag-behind-digest-mirrors"),
    pytest.param(
        MIRRORED, "quay.io/ns/app:v1", [Outcome.TLS, Outcome.NOT_FOUND], False, Cause.TLS,
        "no source serves the manifest: mirror.example.com (TLS: certificate not trusted), "
        "mirror2.example.com/ns/app (404), quay.io/ns blocked",
        ("add the CA of mirror.example.com to the image config's additionalTrustedCA (on a "
         "node: {certs}/mirror.example.com/ca.crt)",
         "mirror quay.io/ns/app:v1 to mirror2.example.com/ns/app"), id="tls"),
    pytest.param(
        MIRRORED, "quay.io/ns/app:v1", [(Outcome.DENIED, "UNAUTHORIZED"), Outcome.CONNECT],
        False, Cause.CREDENTIALS,
        "no source serves the manifest: mirror.example.com (denied: no credentials in "
        "auth.json), mirror2.example.com (unreachable), quay.io/ns blocked",
        ("add credentials for mirror.example.com to the pull secret (the node's auth.json)",
         "make mirror2.example.com reachable from the nodes"), id="credentials"),
    pytest.param(
        OPEN, "quay.io/ns/app:v1", [Outcome.NOT_FOUND], True, Cause.MISSING_ON_MIRROR,
        "manifest unknown on every source: mirror.example.com/ns/app (404), quay.io (not "
        "contacted: --disconnected)",
        ("mirror quay.io/ns/app:v1 to mirror.example.com/ns/app",), id="disconnected"),
    pytest.param(
        OPEN, "quay.io/ns/gone:v1", [Outcome.NOT_FOUND, Outcome.NOT_FOUND], False,
        Cause.MISSING_AT_SOURCE,
        "manifest unknown on every source: mirror.example.com/ns/gone (404), "
        "quay.io/ns/gone (404)",
        ("check the reference: quay.io/ns/gone:v1 does not exist at quay.io/ns/gone",),
        id="missing-everywhere"),
    pytest.param(
        BLOCKED_ONLY, f"quay.io/ns/app@{IMAGE}", [], False, Cause.NO_MIRROR,
        "no mirror for quay.io/ns/app and its source is NeverContactSource: no source may "
        "be contacted: quay.io/ns blocked",
        ("add an ImageDigestMirrorSet for quay.io/ns (and an ImageTagMirrorSet for tag "
         "pulls) with a mirror that holds it",), id="blocked-without-mirror"),
]


@pytest.mark.parametrize(("conf", "text", "answers", "disconnected", "kind", "cause", "fixes"),
                         TOP_CASES)
def test_top_level_failures(tmp_path: Path, conf: str, text: str, answers: list[Answer],
                            disconnected: bool, kind: Cause, cause: str,
                            fixes: tuple[str, ...]) -> None:
    w = world(tmp_path, conf, disconnected=disconnected)
    walk, _ = walk_of(w, text, answers)
    verdict = w.judge(walk)
    assert (verdict.status, verdict.cause_kind) == (Status.FAILS, kind)
    assert verdict.cause == cause
    assert verdict.fixes == tuple(f.format(certs=tmp_path / "certs.d") for f in fixes)
    assert verdict.served_by is None


def test_refused_credentials_name_the_entry(tmp_path: Path) -> None:
    w = world(tmp_path, MIRRORED, auth={"mirror.example.com": {"auth": "dTpw"}})
    walk, _ = walk_of(w, "quay.io/ns/app:v1", [Outcome.DENIED, Outcome.NOT_FOUND])
    verdict = w.judge(walk)
    assert verdict.cause_kind == Cause.CREDENTIALS
    assert "mirror.example.com (denied with the credentials of 'mirror.example.com')" in \
        str(verdict.cause)
    assert verdict.fixes[0] == (f"renew the credentials of 'mirror.example.com' in "
                                f"{tmp_path / 'auth.json'}: mirror.example.com refuses them")


# mode, layer answers, status, cause (or None), note fragments
BLOB_CASES = [
    pytest.param(
        FallbackMode.STICKY, [(Outcome.NOT_FOUND, "BLOB_UNKNOWN")], Status.FAILS,
        f"layer {LAYER} missing on mirror.example.com/ns/app (404 BLOB_UNKNOWN)",
        ["an OCP 4.22 node (blob fallback) would try mirror2.example.com/ns/app next"],
        id="sticky-blob-unknown"),
    pytest.param(
        FallbackMode.STICKY, [Outcome.NOT_FOUND], Status.FAILS,
        f"layer {LAYER} missing on mirror.example.com/ns/app (bare 404)",
        ["blob fallback (OCP 4.22) would not help"], id="sticky-bare-404"),
    pytest.param(
        FallbackMode.BLOB, [(Outcome.NOT_FOUND, "BLOB_UNKNOWN"), Outcome.SERVED], Status.OK,
        None,
        [f"a node before OCP 4.22 fails this: layer {LAYER} missing on "
         "mirror.example.com/ns/app (404 BLOB_UNKNOWN); served by mirror2.example.com/ns/app"],
        id="blob-rescued"),
    pytest.param(
        FallbackMode.BLOB, [Outcome.NOT_FOUND], Status.FAILS,
        f"layer {LAYER} missing on mirror.example.com/ns/app (bare 404)",
        ["blob fallback (OCP 4.22) would not help: it moves on for BLOB_UNKNOWN, 5xx and "
         "timeouts only"], id="blob-bare-404"),
    pytest.param(
        FallbackMode.BLOB, [(Outcome.NOT_FOUND, "BLOB_UNKNOWN"),
                            (Outcome.NOT_FOUND, "BLOB_UNKNOWN")], Status.FAILS,
        f"layer {LAYER} missing on mirror.example.com/ns/app (404 BLOB_UNKNOWN); then "
        "mirror2.example.com/ns/app (404 BLOB_UNKNOWN)", [], id="blob-missing-everywhere"),
    pytest.param(
        FallbackMode.RESILIENT, [Outcome.NOT_FOUND, Outcome.SERVED], Status.OK, None,
        [f"every node (OCP up to 4.22) fails this: layer {LAYER} missing on "
         "mirror.example.com/ns/app (bare 404); served by mirror2.example.com/ns/app"],
        id="resilient-rescued"),
]


@pytest.mark.parametrize(("mode", "answers", "status", "cause", "notes"), BLOB_CASES)
def test_missing_layer(tmp_path: Path, mode: FallbackMode, answers: list[Answer],
                       status: Status, cause: str | None, notes: list[str]) -> None:
    w = world(tmp_path, MIRRORED, mode=mode)
    walk, steps = walk_of(w, f"quay.io/ns/app@{IMAGE}", [Outcome.SERVED])
    with_blob(w, walk, steps, answers)
    verdict = w.judge(walk)
    assert verdict.status == status
    assert verdict.cause == cause
    for fragment, note in zip(notes, verdict.notes, strict=True):
        assert note.startswith(fragment), note
    assert verdict.fixes == (f"mirror quay.io/ns/app@{IMAGE} to mirror.example.com/ns/app "
                             "again: its copy lacks this layer",)


def test_missing_platform_of_an_index(tmp_path: Path) -> None:
    w = world(tmp_path, MIRRORED)
    walk, _ = walk_of(w, "quay.io/ns/multi:v1", [Outcome.SERVED])
    walk.index, walk.digest = True, INDEX
    home = walk.top.served_by if walk.top else None
    assert home is not None
    amd, arm = Platform("linux", "amd64"), Platform("linux", "arm64")
    walk.available = [amd, arm]
    walk.platforms = [
        PlatformCheck(amd, IMAGE, _fetch("platform manifest", [home.for_identity(IMAGE)],
                                         [Outcome.SERVED], referenced=True,
                                         home=home.for_identity(IMAGE), platform=amd)),
        PlatformCheck(arm, ARM, _fetch("platform manifest", [home.for_identity(ARM)],
                                       [Outcome.NOT_FOUND], referenced=True,
                                       home=home.for_identity(ARM), platform=arm))]
    verdict = w.judge(walk)
    assert (verdict.status, verdict.cause_kind) == (Status.FAILS, Cause.MISSING_PLATFORM)
    assert verdict.cause == (f"platform linux/arm64 ({ARM}) of the index missing on "
                             "mirror.example.com/ns/multi (404)")
    assert verdict.fixes == (
        f"mirror every platform of quay.io/ns/multi@{INDEX} to mirror.example.com/ns/multi",
        "if the nodes run one platform only, check just that one with --platform")
    assert verdict.summary == "linux/amd64, linux/arm64; 0 blobs"


def test_platform_not_in_the_index(tmp_path: Path) -> None:
    w = world(tmp_path, MIRRORED)
    walk, _ = walk_of(w, "quay.io/ns/multi:v1", [Outcome.SERVED])
    walk.index, walk.wanted = True, Platform("linux", "s390x")
    walk.available = [Platform("linux", "amd64"), Platform("linux", "arm64", "v8")]
    verdict = w.judge(walk)
    assert (verdict.status, verdict.cause_kind) == (Status.FAILS, Cause.ABSENT_PLATFORM)
    assert verdict.cause == ("the index has no linux/s390x manifest (it has linux/amd64, "
                             "linux/arm64/v8)")


def test_served_by_the_source_is_ok_with_a_note(tmp_path: Path) -> None:
    w = world(tmp_path, OPEN)
    walk, steps = walk_of(w, "quay.io/ns/app:v1", [Outcome.NOT_FOUND, Outcome.SERVED])
    with_blob(w, walk, steps, [Outcome.SERVED])
    verdict = w.judge(walk)
    assert (verdict.status, verdict.served_by) == (Status.OK, "quay.io/ns/app")
    assert verdict.notes == ("served by the source, not a mirror: mirror.example.com/ns/app "
                             "(404); air-gapped this fails (check with --disconnected)",)
    assert verdict.cause is None and verdict.fixes == ()
    assert verdict.summary == "1 blob"


@pytest.mark.parametrize(("text", "expected"), [
    (f"a@{LAYER} b", f"a@sha256:{'3' * 12}... b"),
    ("sha256:" + "f" * 63, "sha256:" + "f" * 63),  # not a digest: kept
    ("sha512:" + "a" * 128, "sha512:" + "a" * 12 + "..."),
])
def test_shorten(text: str, expected: str) -> None:
    assert shorten(text) == expected


def test_text_fits_80_columns_and_json_keeps_digests(tmp_path: Path) -> None:
    w = world(tmp_path, MIRRORED.replace("quay.io/ns", "quay.io/openshift-release-dev"))
    long_name = "quay.io/openshift-release-dev/ocp-v4.0-art-dev-with-a-very-long-name"
    walk, _ = walk_of(w, f"{long_name}@{IMAGE}", [Outcome.NOT_FOUND, Outcome.NOT_FOUND])
    verdict = w.judge(walk)
    named = [ImageInput(f"{long_name}@{IMAGE}", "pods.json: Pod openshift-etcd/etcd-master-0 "
                        "container etcd-metrics-with-a-long-name",
                        parse_docker_reference(f"{long_name}@{IMAGE}"))]
    text = format_text(verdict, named, 80)
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines), text
    assert lines[0].startswith("fails        quay.io/openshift-release-dev/")
    assert IMAGE not in text and f"sha256:{'2' * 12}..." in text
    assert lines[1].strip().endswith("@sha256:222222222222...")  # cut before the digest
    assert lines[2].strip().startswith("in pods.json: Pod openshift-etcd/etcd-master-0")
    assert any(line.lstrip().startswith("cause: manifest unknown on every source")
               for line in lines)
    assert any(line.lstrip().startswith("or: mirror ") for line in lines)
    data = json.loads(format_json(verdict, named, walk))
    assert data["verdict"] == "fails" and data["cause_kind"] == "missing_on_mirror"
    assert data["image"] == f"{long_name}@{IMAGE}"
    assert data["fixes"][0] == (f"mirror {long_name}@{IMAGE} to "
                                "mirror.example.com/ns/ocp-v4.0-art-dev-with-a-very-long-name")
    assert [a["outcome"] for a in data["attempts"]] == ["not_found", "not_found", "blocked"]


def test_summary_groups_by_cause() -> None:
    tally = Tally()
    for text, status, kind in [("quay.io/a:1", Status.OK, None),
                               ("quay.io/b:1", Status.FAILS, Cause.MISSING_ON_MIRROR),
                               ("quay.io/c:1", Status.FAILS, Cause.MISSING_ON_MIRROR),
                               ("quay.io/d:1", Status.FAILS, Cause.TLS),
                               ("quay.io/e:1", Status.NOT_CHECKED, Cause.SIGNATURE_UNCHECKED)]:
        tally.add(Verdict(parse_docker_reference(text), status, cause_kind=kind))
    assert not tally.all_ok
    assert format_summary(tally, "sticky").splitlines() == [
        "5 images checked (sticky mode): 1 ok, 3 fails, 1 not checked",
        "  image missing on the mirror: 2 (quay.io/b:1 and 1 more)",
        "  TLS: the registry's CA is not trusted: 1 (quay.io/d:1)",
        "  signature requirement not checked: 1 (quay.io/e:1)",
    ]


def test_ca_path_is_the_nodes_under_a_root(tmp_path: Path) -> None:
    """With --root (or --crs, rendered into a temporary root) the fix names the node's own
    path, not where the tree happens to be."""
    root = tmp_path / "root"
    (root / "etc/containers").mkdir(parents=True)
    (root / "etc/containers/registries.conf").write_text(MIRRORED)
    (root / "etc/containers/policy.json").write_text(json.dumps(SIGNED))
    w = World(NodeConfig.load(NodeFiles(root=str(root))))
    walk, _ = walk_of(w, "quay.io/ns/app:v1", [Outcome.TLS, Outcome.TLS])
    verdict = w.judge(walk)
    assert verdict.fixes[0] == ("add the CA of mirror.example.com to the image config's "
                                "additionalTrustedCA (on a node: "
                                "/etc/docker/certs.d/mirror.example.com/ca.crt)")
