"""ClusterImagePolicy and ImagePolicy rendering, checked against the Machine Config Operator's
own tests of pkg/controller/container-runtime-config/helpers.go (policyItemFromSpec,
getValidScopePolicies, updatePolicyJSON, updateNamespacedPolicyJSONs,
validateImagePolicyWithAllowedBlockedRegistries, generateSigstoreRegistriesdConfig,
addScopeMirrorsSigstoreRegistriesdConfig, imagePolicyConfigFileList) and the CRD rules of
openshift/api config/v1 (types_cluster_image_policy.go, types_image_policy.go).

"U-..." vectors are helpers_test.go's (test function and case name beside them; its CRs are
clusterImagePolicyTestCRs/imagePolicyTestCRs, built here as the same Go structs, bypassing the
API server as the upstream test does). "D-..." cases are derived from reading the named
function. Byte layouts (field order, indentation) were checked by decoding the rendered files
with go.podman.io/image/v5's signature.NewPolicyFromBytes and encoding them again with Go's
json.MarshalIndent (policy.json), and by ghodss/yaml's JSON-then-yaml.v2 encoding
(sigstore-registries.yaml), which gave the same bytes."""

from __future__ import annotations

import base64
import dataclasses
import json
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from mirrorlab.proxy.errors import ConfigError
from mirrorlab.proxy.openshift.crs import (
    ICSP,
    IDMS,
    ITMS,
    ClusterCRs,
    MirrorEntry,
    MirrorSet,
    Origin,
    load_crs,
)
from mirrorlab.proxy.openshift.imagepolicies import (
    API_V1,
    API_V1ALPHA1,
    CIP,
    IP,
    SIGSTORE_REGISTRIES_D,
    ImagePolicyCR,
    SigstorePolicy,
    encode_sigstore_registries,
    namespaced_policies,
    requirement,
    scope_error,
    valid_scope_policies,
    validate_with_registries,
)
from mirrorlab.proxy.openshift.machineconfig import machine_config
from mirrorlab.proxy.openshift.policy import build_policy_object, policy_json
from mirrorlab.proxy.openshift.render import POLICY_JSON, RenderOptions, render

FULCIO = base64.b64decode("dGVzdC1jYS1kYXRhLWRhdGE=")
REKOR = base64.b64decode("dGVzdC1yZWtvci1rZXktZGF0YQ==")
KEY = base64.b64decode("dGVzdC1rZXktZGF0YQ==")
CERTS = base64.b64decode(
    "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJBVEE9Ci0tLS0tRU5EIENFUlRJRklDQVRFLS0tLS0=")
REMAP: dict[str, Any] = {"match_policy": "RemapIdentity", "remap_prefix": "test-remap-prefix",
         "remap_signed_prefix": "test-remap-signed-prefix"}
PKI = SigstorePolicy("PKI", ca_roots_data=CERTS, ca_intermediates_data=CERTS,
                     pki_email="test-user@example.com", pki_hostname="my-host.example.com")
PUBLIC = SigstorePolicy("PublicKey", key_data=KEY)


def cr(kind: str, name: str, scopes: list[str], policy: SigstorePolicy,
       namespace: str = "") -> ImagePolicyCR:
    return ImagePolicyCR(kind, API_V1, name, namespace, tuple(scopes), policy,
                         Origin("crs.yaml", kind, name))


# helpers_test.go: clusterImagePolicyTestCRs and imagePolicyTestCRs
CLUSTER = {
    "test-cr0": cr(CIP, "test-cr0", ["test0.com"], SigstorePolicy(
        "FulcioCAWithRekor", fulcio_ca_data=FULCIO, rekor_key_data=REKOR,
        oidc_issuer="https://OIDC.example.com", signed_email="test-user@example.com", **REMAP)),
    "test-cr1": cr(CIP, "test-cr1", ["test0.com", "test1.com"], SigstorePolicy(
        "PublicKey", key_data=KEY, rekor_key_data=REKOR, **REMAP)),
    "test-cr2": cr(CIP, "test-cr2", [
        "a.com/a1/a2", "a.com/a1/a2@sha256:" + "0" * 64, "*.example.com", "policy.scope",
        "foo.example.com/ns/repo"], SigstorePolicy("PublicKey", key_data=KEY,
                                                   rekor_key_data=REKOR)),
    "test-cr3": cr(CIP, "test-cr3", ["test3.com/ns/repo"], PKI),
}
NAMESPACED = {
    "test-cr0": cr(IP, "test-cr0", ["test0.com", "test2.com"], PUBLIC, "testnamespace"),
    "test-cr1": cr(IP, "test-cr1", list(CLUSTER["test-cr2"].scopes), PUBLIC, "testnamespace"),
    "test-cr3": cr(IP, "test-cr3", ["test3.com"], PUBLIC, "test-1-namespace"),
    "test-cr4": cr(IP, "test-cr4", ["test4.com/ns-policy/repo"], PKI, "testnamespace"),
}

IA = {"type": "insecureAcceptAnything"}
FULCIO_REQ = {"type": "sigstoreSigned",
              "fulcio": {"caData": "dGVzdC1jYS1kYXRhLWRhdGE=",
                         "oidcIssuer": "https://OIDC.example.com",
                         "subjectEmail": "test-user@example.com"},
              "rekorPublicKeyData": "dGVzdC1yZWtvci1rZXktZGF0YQ==",
              "signedIdentity": {"type": "remapIdentity", "prefix": "test-remap-prefix",
                                 "signedPrefix": "test-remap-signed-prefix"}}
KEY_REKOR_REQ = {"type": "sigstoreSigned", "keyData": "dGVzdC1rZXktZGF0YQ==",
                 "rekorPublicKeyData": "dGVzdC1yZWtvci1rZXktZGF0YQ==",
                 "signedIdentity": {"type": "remapIdentity", "prefix": "test-remap-prefix",
                                    "signedPrefix": "test-remap-signed-prefix"}}
KEY_REQ = {"type": "sigstoreSigned", "keyData": "dGVzdC1rZXktZGF0YQ==",
           "signedIdentity": {"type": "matchRepoDigestOrExact"}}
PKI_REQ = {"type": "sigstoreSigned",
           "pki": {"caRootsData": base64.b64encode(CERTS).decode(),
                   "caIntermediatesData": base64.b64encode(CERTS).decode(),
                   "subjectEmail": "test-user@example.com",
                   "subjectHostname": "my-host.example.com"},
           "signedIdentity": {"type": "matchRepoDigestOrExact"}}


def cluster_scopes(policies: Any) -> dict[str, list[dict[str, Any]]]:
    return {s: [i.requirement for i in items] for s, items in policies.cluster.items()}


def test_policy_item_from_spec_field_order() -> None:
    """D: policyItemFromSpec; Go writes prSigstoreSigned's fields in declaration order."""
    assert list(requirement(CLUSTER["test-cr0"].policy)) == [
        "type", "fulcio", "rekorPublicKeyData", "signedIdentity"]
    assert list(requirement(PKI)["pki"]) == [
        "caRootsData", "caIntermediatesData", "subjectEmail", "subjectHostname"]
    assert requirement(SigstorePolicy("PublicKey", key_data=KEY, match_policy="ExactRepository",
                                      exact_repository="quay.io/x"))["signedIdentity"] == {
        "type": "exactRepository", "dockerRepository": "quay.io/x"}
    assert requirement(SigstorePolicy("PublicKey", key_data=KEY,
                                      match_policy="MatchRepository"))["signedIdentity"] == {
        "type": "matchRepository"}


def test_get_valid_scope_policies() -> None:
    """U: TestGetValidScopePolicies, "cluster CRs contain the same scope" and "cluster and
    namespace CRs contains the same scope"."""
    found = valid_scope_policies([CLUSTER["test-cr0"], CLUSTER["test-cr1"]], [])
    assert cluster_scopes(found) == {"test0.com": [FULCIO_REQ, KEY_REKOR_REQ],
                                     "test1.com": [KEY_REKOR_REQ]}
    assert found.namespaced == {}
    found = valid_scope_policies([CLUSTER["test-cr0"], CLUSTER["test-cr1"]],
                                 [NAMESPACED["test-cr0"]])
    assert cluster_scopes(found) == {"test0.com": [FULCIO_REQ, KEY_REKOR_REQ],
                                     "test1.com": [KEY_REKOR_REQ]}
    assert {s: {n: [i.requirement for i in v] for n, v in ns.items()}
            for s, ns in found.namespaced.items()} == {"test2.com": {"testnamespace": [KEY_REQ]}}
    assert found.conflicts == [
        'crs.yaml: ImagePolicy testnamespace/test-cr0: condition Pending, reason '
        'ConflictScopes: has conflicting scope(s) ["test0.com"] that equal to or nest inside '
        "existing clusterimagepolicy, only policy from clusterimagepolicy scope(s) will be "
        "applied"]


def test_generate_policy_json() -> None:
    """U: TestGeneratePolicyJSON (CIPs test-cr0 and test-cr3, no allowed or blocked)."""
    found = valid_scope_policies([CLUSTER["test-cr0"], CLUSTER["test-cr3"]], [])
    policy = build_policy_object([], [], "release-reg.io/image/release", cluster_scopes(found))
    assert policy is not None
    scopes = {"test0.com": [FULCIO_REQ], "test3.com/ns/repo": [PKI_REQ]}
    assert json.loads(policy_json(policy)) == {
        "default": [IA],
        "transports": {"atomic": scopes, "docker": scopes, "docker-daemon": {"": [IA]}}}


CLUSTER_EXPECTED = {"test0.com": [FULCIO_REQ, KEY_REKOR_REQ], "test1.com": [KEY_REKOR_REQ]}


def test_update_namespaced_policy_jsons() -> None:
    """U: TestUpdateNamespacedPolicyJSONs: the cluster policy, then testnamespace (test0.com
    dropped as a conflict, test4.com/ns-policy/repo with its 2 slashes also in atomic) and
    test-1-namespace."""
    found = valid_scope_policies(
        [CLUSTER["test-cr0"], CLUSTER["test-cr1"]],
        [NAMESPACED["test-cr0"], NAMESPACED["test-cr3"], NAMESPACED["test-cr4"]])
    cluster = build_policy_object([], [], "release-reg.io/image/release", cluster_scopes(found))
    assert cluster is not None
    assert json.loads(policy_json(cluster))["transports"] == {
        "atomic": CLUSTER_EXPECTED, "docker": CLUSTER_EXPECTED, "docker-daemon": {"": [IA]}}
    got = {ns: json.loads(policy_json(doc)) for ns, doc in namespaced_policies(
        cluster, found).items()}
    test_ns = {**CLUSTER_EXPECTED, "test2.com": [KEY_REQ], "test4.com/ns-policy/repo": [PKI_REQ]}
    other_ns = {**CLUSTER_EXPECTED, "test3.com": [KEY_REQ]}
    assert got == {
        "testnamespace": {"default": [IA], "transports": {
            "atomic": test_ns, "docker": test_ns, "docker-daemon": {"": [IA]}}},
        "test-1-namespace": {"default": [IA], "transports": {
            "atomic": other_ns, "docker": other_ns, "docker-daemon": {"": [IA]}}},
    }
    # U: TestUpdateNamespacedPolicyJSONs, "empty namespacePolicies": nothing
    assert namespaced_policies(cluster, valid_scope_policies([], [])) == {}


def _scopes(*names: str) -> Any:
    return valid_scope_policies([cr(CIP, "c", list(names), PUBLIC)], [])


@pytest.mark.parametrize(("name", "allowed", "blocked", "cluster", "namespaced", "error"), [
    # U: TestValidateClusterImagePolicyWithAllowedBlockedRegistries, by case name
    ("allowed and blocked registries are not set", [], [],
     ["example.com", "test.registries.com"], ["exaple.app.com", "testapp.registries.com"], None),
    ("success test allowed registries set", ["example.com", "allowed.io/namespace1"], [],
     ["allowed.io/namespace1/policysigned", "example.com"],
     ["allowed.io/namespace1/app/policysigned"], None),
    ("failure test allowed registries set", ["allowed.io/namespace1/namespace2"], [],
     ["allowed.io/policysigned"], [],
     "clusterimagePolicy configured for the scope allowed.io/policysigned is not nested inside "
     "allowedRegistries"),
    ("success test blocked registries set",
     [], ["blocked.io/namespace1/namespace2", "blocked.example.com/namespace1/namespace2"],
     ["allowed.io/policysigned", "blocked.io"],
     ["allowed.io/namespace1/app/policysigned", "blocked.example.com/app/policysigned"], None),
    ("failure test blocked registries set", [], ["blocked.io", "blocker-reg.com/namespace1"],
     ["blocker-reg.com/namespace1/policysigned", "blocked.io"], [],
     "clusterimagePolicy configured for the scope blocked.io is nested inside "
     "blockedRegistries"),
    ("imagepolicy failure test allowed registries set", ["allowed.io/namespace1/namespace2"],
     [], [], ["allowed.io/app/policysigned"],
     "imagePolicy configured for the scope allowed.io/app/policysigned is not nested inside "
     "allowedRegistries"),
    ("imagepolicy failure test blocked registries set", [],
     ["blocked.io", "blocker-reg.com/namespace1"], [],
     ["blocker-reg.com/namespace1/policysigned", "blocked.io"],
     "imagePolicy configured for the scope blocked.io is nested inside blockedRegistries"),
])
def test_validate_with_allowed_blocked(name: str, allowed: list[str], blocked: list[str],
                                       cluster: list[str], namespaced: list[str],
                                       error: str | None) -> None:
    policies = valid_scope_policies(
        [cr(CIP, "c", cluster, PUBLIC)] if cluster else [],
        [cr(IP, "n", namespaced, PUBLIC, "ns")] if namespaced else [])
    if error is None:
        validate_with_registries(policies, allowed, blocked)
        return
    with pytest.raises(ConfigError) as raised:
        validate_with_registries(policies, allowed, blocked)
    assert str(raised.value) == error


Entries = Sequence[Sequence[dict[str, Any]]]


def crs_with(policies: list[ImagePolicyCR], *, idms: Entries = (), icsp: Entries = (),
             itms: Entries = ()) -> ClusterCRs:
    sets = []
    for kind, objects in ((IDMS, idms), (ICSP, icsp), (ITMS, itms)):
        for number, entries in enumerate(objects):
            origin = Origin("crs.yaml", kind, f"{kind.lower()}-{number}")
            sets.append(MirrorSet(kind, tuple(
                MirrorEntry(e["source"], tuple(e["mirrors"]), None, origin,
                            f"spec.entries[{i}]") for i, e in enumerate(entries)), origin))
    return ClusterCRs(None, tuple(sets), image_policies=tuple(policies))


def sigstore_keys(node_crs: ClusterCRs, version: tuple[int, int] = (4, 21)) -> list[str]:
    if version < (4, 20):  # v1alpha1 behind TechPreviewNoUpgrade
        node_crs = dataclasses.replace(node_crs, image_policies=tuple(
            dataclasses.replace(p, api_version=API_V1ALPHA1) for p in node_crs.image_policies))
    node = render(node_crs, RenderOptions(ocp_version=version,
                                          feature_set="TechPreviewNoUpgrade"))
    return sorted(yaml.safe_load(node.files[SIGSTORE_REGISTRIES_D])["docker"])


BASE = ["*.example.com", "a.com/a1/a2", "a.com/a1/a2@sha256:" + "0" * 64,
        "foo.example.com/ns/repo", "policy.scope"]
SIGSTORE_CASES = [
    # U: TestGenerateSigstoreRegistriesConfig, by case name
    ("cip objects exist, icsp/idms/itms are empty", [CLUSTER["test-cr2"]], {}, BASE),
    ("cip has no revelant registries mirrors", [CLUSTER["test-cr2"]], {
        "icsp": [[{"source": "x.com/x1/x2", "mirrors": ["x-x1-x2.mirror/x1/x2"]}]],
        "idms": [[{"source": "y.com/y1/y2", "mirrors": ["y-y1-y2.mirror/y1/y2"]}]],
        "itms": [[{"source": "z.com/z1/z2", "mirrors": ["z-z1-z2.mirror/z1/z2"]}]]}, BASE),
    ("cip scope a.com/a1/a2 is super scope of registries sources", [CLUSTER["test-cr2"]], {
        "idms": [[{"source": "a.com/a1/a2", "mirrors": ["a-a1-a2.mirror/a1/a2"]},
                  {"source": "a.com/a1/a2/a3", "mirrors": ["a-a1-a2-a3.mirror/m1/m2/m3"]},
                  {"source": "a.com/a1/a2/a3-1", "mirrors": ["a-a1-a2-a3-1.mirror/m1/m2/m3"]},
                  {"source": "x.com/x1/x2", "mirrors": ["x-x1-x2.mirror/m1/m2"]}]]},
     [*BASE, "a-a1-a2-a3-1.mirror/m1/m2/m3", "a-a1-a2-a3.mirror/m1/m2/m3",
      "a-a1-a2.mirror/a1/a2", "a.com/a1/a2/a3", "a.com/a1/a2/a3-1"]),
    ("cip scope a.com/a1/a2 nested in registries sources", [CLUSTER["test-cr2"]], {
        "idms": [[{"source": "a.com", "mirrors": ["a.mirror"]},
                  {"source": "a.com/a1", "mirrors": ["a-a1.mirror/a1"]},
                  {"source": "x.com/x1/x2", "mirrors": ["x-x1-x2.mirror/x1/x2"]}]]},
     [*BASE, "a-a1.mirror/a1/a2"]),
    ("cip wildcard scope *.example.com is the mirror source", [CLUSTER["test-cr2"]], {
        "idms": [[{"source": "*.example.com", "mirrors": ["our.mirror/example"]}]]},
     [*BASE, "our.mirror/example/ns/repo", "our.mirror/example"]),
    ("cip scope *.example.com and mirror source have wildcard matching", [CLUSTER["test-cr2"]], {
        "idms": [[{"source": "a.example.com", "mirrors": ["a-example.mirror"]},
                  {"source": "*.x.example.com",
                   "mirrors": ["matched.example.mirror", "star-x.example.mirror"]},
                  {"source": "*.scope", "mirrors": ["start-scope.mirror"]},
                  {"source": "x/x1/x2", "mirrors": ["x-x1-x2.mirror/x1/x2"]}]]},
     [*BASE, "a-example.mirror", "a.example.com", "star-x.example.mirror",
      "matched.example.mirror", "start-scope.mirror"]),
    ("imagepolicy objects exist, icsp/idms/itms are empty", [NAMESPACED["test-cr1"]], {}, BASE),
    ("cip and imagepolicy objects exist, icsp/idms/itms are empty",
     [CLUSTER["test-cr2"], NAMESPACED["test-cr0"]], {}, [*BASE, "test0.com", "test2.com"]),
]


@pytest.mark.parametrize(("name", "policies", "mirrors", "keys"), SIGSTORE_CASES,
                         ids=[c[0] for c in SIGSTORE_CASES])
def test_generate_sigstore_registries_config(name: str, policies: list[ImagePolicyCR],
                                             mirrors: dict[str, Entries],
                                             keys: list[str]) -> None:
    assert sigstore_keys(crs_with(policies, **mirrors)) == sorted(keys)


def test_sigstore_registries_by_version() -> None:
    """D: generateSigstoreRegistriesdConfig before OCPBUGS-36344 (4.16: policy scopes only)
    and before ImagePolicy (4.17: cluster scopes only)."""
    crs = crs_with([CLUSTER["test-cr2"]], idms=[[{"source": "*.example.com",
                                                  "mirrors": ["our.mirror/example"]}]])
    assert sigstore_keys(crs, (4, 16)) == sorted(BASE)
    assert "our.mirror/example" in sigstore_keys(crs, (4, 17))


def test_sigstore_registries_yaml_bytes() -> None:
    """D: ghodss/yaml over yaml.v2: keys in keyList.Less order (numbers by value, a letter
    after a non-letter), `*.` keys single-quoted, numbers double-quoted, over 128 bytes `?`."""
    long_key = "d" * 125 + ".com"
    assert encode_sigstore_registries(
        ["a10.com", "*.example.com", "a9.com", "1.2e3", "A.com", long_key, "a-b.com",
         "x:443", "x:5000"]).decode() == textwrap.dedent(f"""\
        docker:
          '*.example.com':
            use-sigstore-attachments: true
          "1.2e3":
            use-sigstore-attachments: true
          A.com:
            use-sigstore-attachments: true
          a-b.com:
            use-sigstore-attachments: true
          a9.com:
            use-sigstore-attachments: true
          a10.com:
            use-sigstore-attachments: true
          ? {long_key}
          : use-sigstore-attachments: true
          x:443:
            use-sigstore-attachments: true
          x:5000:
            use-sigstore-attachments: true
        """)


# ---------------------------------------------------------------- from YAML to node files

PEM_B64 = (
    "LS0tLS1CRUdJTiBQVUJMSUMgS0VZLS0tLS0KTUZrd0V3WUhLb1pJemowQ0FRWUlLb1pJemowREFRY0RRZ0FFSnUv"
    "T3ZRN3A0MHBta1lmaGl6cVJJckwzTTVSYgpaSnpKK2ZraDZmbmEyQktRSTR2ZW5NZTdNdzBWREdkd1RkSmE1d1ZT"
    "QlhSTGJ6Ry9RSEIwV0hMUTVnPT0KLS0tLS1FTkQgUFVCTElDIEtFWS0tLS0tCg==")
GOLDEN = Path(__file__).parent / "golden" / "imagepolicy"
CRS_YAML = f"""\
apiVersion: config.openshift.io/v1
kind: ClusterImagePolicy
metadata:
  name: release
spec:
  scopes:
  - quay.io/openshift-release-dev/ocp-release
  - quay.io/openshift-release-dev/ocp-v4.0-art-dev
  policy:
    rootOfTrust:
      policyType: PublicKey
      publicKey:
        keyData: {PEM_B64}
---
apiVersion: config.openshift.io/v1
kind: ImagePolicy
metadata:
  name: apps
  namespace: team-a
spec:
  scopes:
  - registry.example.com/team-a
  policy:
    rootOfTrust:
      policyType: PublicKey
      publicKey:
        keyData: {PEM_B64}
    signedIdentity:
      matchPolicy: MatchRepository
---
apiVersion: config.openshift.io/v1
kind: ImageDigestMirrorSet
metadata:
  name: release
spec:
  imageDigestMirrors:
  - source: quay.io/openshift-release-dev
    mirrors:
    - mirror.local:5000/ocp
---
apiVersion: config.openshift.io/v1
kind: ImageTagMirrorSet
metadata:
  name: team
spec:
  imageTagMirrors:
  - source: registry.example.com/team-a
    mirrors:
    - mirror.local:5000/team-a
"""


@pytest.fixture
def rendered(tmp_path: Path) -> Any:
    (tmp_path / "crs.yaml").write_text(CRS_YAML)
    return render(load_crs([str(tmp_path / "crs.yaml")]), RenderOptions(ocp_version=(4, 21)))


@pytest.mark.parametrize("path", [
    "etc/containers/policy.json",
    "etc/containers/registries.d/sigstore-registries.yaml",
    "etc/crio/policies/team-a.json",
])
def test_golden_node_files(rendered: Any, path: str) -> None:
    """D: the whole policy block of registriesConfigIgnition for a release CIP, an
    ImagePolicy and mirrors of both (golden bytes, checked as the module docstring says)."""
    golden = GOLDEN / Path(path).name
    assert rendered.files[path] == golden.read_bytes()


def test_report_names_the_fields(rendered: Any) -> None:
    report = "\n".join(rendered.report)
    assert ("etc/containers/policy.json: docker and atomic quay.io/openshift-release-dev/"
            "ocp-release: sigstoreSigned from ") in report
    assert "ClusterImagePolicy/release: spec.scopes[0]" in report
    assert ("etc/crio/policies/team-a.json: docker registry.example.com/team-a: sigstoreSigned "
            "from ") in report and "ImagePolicy/apps: spec.scopes[0]" in report
    assert ("sigstore-registries.yaml: mirror.local:5000/ocp/ocp-release: "
            "use-sigstore-attachments (endpoint of quay.io/openshift-release-dev/ocp-release in "
            "registries.conf)") in report


def test_machineconfig_file_order(rendered: Any) -> None:
    """D: registriesConfigIgnition's list: registries.conf, policy.json,
    sigstore-registries.yaml, the namespaced policies (sorted), the search drop-in."""
    files = machine_config(rendered, "worker")["spec"]["config"]["storage"]["files"]
    assert [f["path"] for f in files] == [
        "/etc/containers/registries.conf", "/etc/containers/policy.json",
        "/etc/containers/registries.d/sigstore-registries.yaml",
        "/etc/crio/policies/team-a.json"]


def test_policy_json_compact_before_417(tmp_path: Path) -> None:
    """D: updatePolicyJSON used json.Marshal until MCO "Format policy.json" (4.17)."""
    (tmp_path / "crs.yaml").write_text(CRS_YAML.replace(
        f"{API_V1}\nkind: ClusterImagePolicy", f"{API_V1ALPHA1}\nkind: ClusterImagePolicy").replace(
        f"{API_V1}\nkind: ImagePolicy", f"{API_V1ALPHA1}\nkind: ImagePolicy"))
    node = render(load_crs([str(tmp_path / "crs.yaml")]),
                  RenderOptions(ocp_version=(4, 16), feature_set="TechPreviewNoUpgrade"))
    assert b"\n" not in node.files[POLICY_JSON]
    assert json.loads(node.files[POLICY_JSON])["transports"]["docker"][
        "quay.io/openshift-release-dev/ocp-release"][0]["keyData"] == PEM_B64
    assert not any(p.startswith("etc/crio/") for p in node.files)  # ImagePolicy: 4.18+
    assert any("reads ImagePolicy from 4.18 on" in line for line in node.report)


def test_feature_gate_off_renders_nothing(tmp_path: Path) -> None:
    (tmp_path / "crs.yaml").write_text(CRS_YAML)
    node = render(load_crs([str(tmp_path / "crs.yaml")]), RenderOptions(ocp_version=(4, 19)))
    assert SIGSTORE_REGISTRIES_D not in node.files
    assert any("SigstoreImageVerification feature gate is off in OCP 4.19 (Default)" in line
               for line in node.report)


def test_api_version_must_be_served(tmp_path: Path) -> None:
    (tmp_path / "crs.yaml").write_text(CRS_YAML)
    with pytest.raises(ConfigError, match=r'no matches for kind "ClusterImagePolicy" in '
                       r'version "config.openshift.io/v1": OCP 4.19 \(TechPreviewNoUpgrade\) '
                       r"serves config.openshift.io/v1alpha1"):
        render(load_crs([str(tmp_path / "crs.yaml")]),
               RenderOptions(ocp_version=(4, 19), feature_set="TechPreviewNoUpgrade"))


def test_scope_in_blocked_registries_fails(tmp_path: Path) -> None:
    """D: updatePolicyJSON's validateImagePolicyWithAllowedBlockedRegistries, with the CR field
    named."""
    image = ("apiVersion: config.openshift.io/v1\nkind: Image\nmetadata:\n  name: cluster\n"
             "spec:\n  registrySources:\n    blockedRegistries: [quay.io]\n")
    (tmp_path / "crs.yaml").write_text(CRS_YAML + "---\n" + image)
    with pytest.raises(ConfigError) as raised:
        render(load_crs([str(tmp_path / "crs.yaml")]), RenderOptions(ocp_version=(4, 21)))
    assert str(raised.value).endswith(
        "ClusterImagePolicy/release: spec.scopes[0]: clusterimagePolicy configured for the "
        "scope quay.io/openshift-release-dev/ocp-release is nested inside blockedRegistries")


def test_allowed_registry_that_is_a_policy_scope(tmp_path: Path) -> None:
    """D: updatePolicyJSON skips insecureAcceptAnything for an allowed registry with a CIP."""
    image = ("apiVersion: config.openshift.io/v1\nkind: Image\nmetadata:\n  name: cluster\n"
             "spec:\n  registrySources:\n    allowedRegistries:\n"
             "    - quay.io/openshift-release-dev/ocp-release\n    - quay.io\n"
             "    - registry.example.com\n")
    (tmp_path / "crs.yaml").write_text(CRS_YAML + "---\n" + image)
    node = render(load_crs([str(tmp_path / "crs.yaml")]), RenderOptions(ocp_version=(4, 21)))
    docker = json.loads(node.files[POLICY_JSON])["transports"]["docker"]
    assert [r["type"] for r in docker["quay.io/openshift-release-dev/ocp-release"]] == [
        "sigstoreSigned"]
    assert docker["quay.io"] == [IA]


@pytest.mark.parametrize(("scope", "problem"), [
    # D: the ImageScope CEL rules of types_image_policy.go
    ("quay.io", None),
    ("localhost:5000/ns", None),
    ("quay.io/ns/repo:tag", None),
    ("quay.io/ns/repo@sha256:" + "a" * 64, None),
    ("*.example.com", None),
    ("quay", "fully qualified domain name or 'localhost'"),
    ("*.example.com/ns", "a wildcard can only be at the start"),
    ("example.*.com", "a wildcard can only be at the start"),
    ("quay.io/MyRepo", "invalid repository namespace or image specification"),
    ("quay.io/" + "a-" * 30 + "!", "invalid repository namespace or image specification"),
])
def test_scope_rules(scope: str, problem: str | None) -> None:
    found = scope_error(scope)
    assert (found is None) if problem is None else (found is not None and problem in found)


CR_ERRORS = [
    ("spec:\n  scopes: [quay.io]\n", "spec.policy: Required value"),
    ("spec:\n  scopes: [quay]\n  policy: {}\n", "spec.scopes[0]: Invalid value: 'quay': invalid "
     "image scope format"),
    ("spec:\n  scopes: [a.io, a.io]\n  policy: {}\n", 'spec.scopes[1]: Duplicate value: "a.io"'),
    ("spec:\n  scopes: [a.io]\n  policy:\n    rootOfTrust:\n      policyType: Other\n",
     'spec.policy.rootOfTrust.policyType: Unsupported value: "Other": supported values: '
     '"PublicKey", "FulcioCAWithRekor", "PKI"'),
    ("spec:\n  scopes: [a.io]\n  policy:\n    rootOfTrust:\n      policyType: PublicKey\n",
     "spec.policy.rootOfTrust: Invalid value: publicKey is required when policyType is "
     "PublicKey, and forbidden otherwise"),
    ("spec:\n  scopes: [a.io]\n  policy:\n    rootOfTrust:\n      policyType: PublicKey\n"
     "      publicKey:\n        keyData: " + base64.b64encode(b"x" * 60).decode() + "\n",
     "spec.policy.rootOfTrust.publicKey.keyData: Invalid value: the keyData must start with "
     "base64 encoding of '-----BEGIN PUBLIC KEY-----'."),
    ("spec:\n  scopes: [a.io]\n  policy:\n    rootOfTrust:\n      policyType: PublicKey\n"
     "      publicKey:\n        keyData: '%%%'\n",
     "spec.policy.rootOfTrust.publicKey.keyData: Invalid value: should be at least 68 chars"),
    ("spec:\n  scopes: [a.io]\n  policy:\n    rootOfTrust:\n      policyType: PublicKey\n"
     f"      publicKey:\n        keyData: {PEM_B64}\n    signedIdentity:\n"
     "      matchPolicy: RemapIdentity\n",
     "spec.policy.signedIdentity: Invalid value: remapIdentity is required when matchPolicy is "
     "RemapIdentity, and forbidden otherwise"),
    ("spec:\n  scopes: [a.io]\n  policy:\n    rootOfTrust:\n      policyType: PublicKey\n"
     f"      publicKey:\n        keyData: {PEM_B64}\n    signedIdentity:\n"
     "      matchPolicy: ExactRepository\n      exactRepository:\n"
     "        repository: quay.io/x:tag\n",
     "spec.policy.signedIdentity.exactRepository.repository: Invalid value: 'quay.io/x:tag': "
     "invalid repository or prefix in the signedIdentity, should not include the tag or "
     "digest"),
    ("spec:\n  scopes: [a.io]\n  policy:\n    rootOfTrust:\n      policyType: FulcioCAWithRekor\n"
     "      fulcioCAWithRekor:\n        fulcioCAData: "
     + base64.b64encode(b"-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n").decode()
     + "\n        rekorKeyData: " + PEM_B64 + "\n        fulcioSubject:\n"
     "          oidcIssuer: not a url\n          signedEmail: a@b\n",
     "fulcioSubject.oidcIssuer: Invalid value: 'not a url': oidcIssuer must be a valid URL"),
]


@pytest.mark.parametrize(("spec", "message"), CR_ERRORS)
def test_crd_validation(tmp_path: Path, spec: str, message: str) -> None:
    """D: the CRD's schema and CEL rules (config/v1 zz_generated.crd-manifests), one line
    naming the file, the object and the field."""
    path = tmp_path / "cip.yaml"
    path.write_text("apiVersion: config.openshift.io/v1\nkind: ClusterImagePolicy\n"
                    "metadata:\n  name: p\n" + spec)
    with pytest.raises(ConfigError) as raised:
        load_crs([str(path)])
    assert str(raised.value).startswith(f"{path}: ClusterImagePolicy/p: ")
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_image_policy_needs_a_namespace(tmp_path: Path) -> None:
    path = tmp_path / "ip.yaml"
    path.write_text("apiVersion: config.openshift.io/v1\nkind: ImagePolicy\nmetadata:\n"
                    "  name: p\nspec: {}\n")
    with pytest.raises(ConfigError, match=r"metadata\.namespace: Required value"):
        load_crs([str(path)])
