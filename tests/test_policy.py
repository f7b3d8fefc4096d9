"""policy.json: strict parsing and scope lookup (containers/image
signature/policy_config.go: NewPolicyFromBytes, signature/policy_eval.go:
PolicyContext.requirementsForImageRef, docker/policyconfiguration/naming.go)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mirrorlab.proxy.errors import ConfigError
from mirrorlab.proxy.policy import evaluate_policy, load_policy, parse_policy, policy_scopes
from mirrorlab.proxy.reference import parse_docker_reference

from .conftest import DIGEST

ACCEPT = [{"type": "insecureAcceptAnything"}]
DEEP_SCOPES = ["", "unmatched", "deep.com", "*.very.deep.com", "*.deep.com", "deep.com/n1",
               "deep.com/n1/n2", "deep.com/n1/n2/n3", "deep.com/n1/n2/n3/repo",
               "deep.com/n1/n2/n3/repo:tag2"]
DEEP = parse_policy(json.dumps({
    "default": [{"type": "reject"}],
    "transports": {
        "docker": {scope: ACCEPT for scope in DEEP_SCOPES},
        "atomic": {"unmatched": ACCEPT},
    },
}))

SCOPES = [
    # signature/policy_eval_test.go: TestPolicyContextRequirementsForImageRef (docker transport),
    # and a digest pull under a tag scope (derived)
    ("deep.com/n1/n2/n3/repo:tag2", "deep.com/n1/n2/n3/repo:tag2"),
    ("deep.com/n1/n2/n3/repo:nottag2", "deep.com/n1/n2/n3/repo"),
    ("deep.com/n1/n2/n3/notrepo:tag2", "deep.com/n1/n2/n3"),
    ("deep.com/n1/notn2/n3/repo:tag2", "deep.com/n1"),
    ("deep.com/notn1/n2/n3/repo:tag2", "deep.com"),
    ("very.deep.com/n1/n2/n3/repo:tag2", "*.deep.com"),
    ("not.very.deep.com/n1/n2/n3/repo:tag2", "*.very.deep.com"),
    ("this.does-not/match:anything", ""),
    (f"deep.com/n1/n2/n3/repo@{DIGEST}", "deep.com/n1/n2/n3/repo"),
    ("deep.com:5000/n1/x", ""),  # `deep.com` is not `deep.com:5000`; no `*.com` scope here
]


@pytest.mark.parametrize(("text", "scope"), SCOPES)
def test_scope_lookup(text: str, scope: str) -> None:
    decision = evaluate_policy(DEEP, parse_docker_reference(text))
    assert (decision.scope, decision.allowed) == (scope, True)


def test_global_default_when_transport_has_no_match() -> None:
    policy = parse_policy(json.dumps({"default": [{"type": "reject"}],
                                      "transports": {"docker": {"quay.io": ACCEPT}}}))
    decision = evaluate_policy(policy, parse_docker_reference("busybox"))
    assert (decision.scope, decision.allowed) == ("default", False)
    assert decision.reason == "Running image docker://busybox:latest is rejected by policy."


REJECTED_NAMES = [
    # signature/policy_eval_simple.go prReject.isRunningImageAllowed names the image by
    # transports.ImageName: `docker:` and the docker transport's StringWithinTransport
    # (docker/docker_transport.go), `//` + reference.FamiliarString (docker/reference/
    # normalize.go); the docker transport adds `:latest` to a bare name
    ("docker.io/library/busybox:1", "docker://busybox:1"),
    ("busybox", "docker://busybox:latest"),
    ("docker.io/foo/bar", "docker://foo/bar:latest"),
    ("docker.io/library/a/b:2", "docker://library/a/b:2"),
    ("index.docker.io/library/x", "docker://x:latest"),
    (f"quay.io/ns/app@{DIGEST}", f"docker://quay.io/ns/app@{DIGEST}"),
    ("localhost:5000/app", "docker://localhost:5000/app:latest"),
]


@pytest.mark.parametrize(("text", "name"), REJECTED_NAMES)
def test_reject_names_the_image_in_its_familiar_form(text: str, name: str) -> None:
    decision = evaluate_policy(parse_policy('{"default": [{"type": "reject"}]}'),
                               parse_docker_reference(text))
    assert decision.reason == f"Running image {name} is rejected by policy."


NAMESPACES = [
    ("example.com/ns/repo", ["example.com/ns/repo", "example.com/ns", "example.com", "*.com"]),
    ("localhost/repo", ["localhost/repo", "localhost"]),
    ("notlocalhost/repo", ["docker.io/notlocalhost/repo", "docker.io/notlocalhost", "docker.io",
                           "*.io"]),
    ("repo", ["docker.io/library/repo", "docker.io/library", "docker.io", "*.io"]),
    ("yet.another.example.com:8443/ns/repo",
     ["yet.another.example.com:8443/ns/repo", "yet.another.example.com:8443/ns",
      "yet.another.example.com:8443", "*.another.example.com", "*.example.com", "*.com"]),
]


@pytest.mark.parametrize(("text", "namespaces"), NAMESPACES)
def test_namespace_lists(text: str, namespaces: list[str]) -> None:
    ref = parse_docker_reference(text)
    assert policy_scopes(ref) == [str(ref), *namespaces, ""]


def _signed(**extra: object) -> str:
    return json.dumps({"default": [{"type": "signedBy", "keyType": "GPGKeys",
                                    "keyPath": "/k.gpg", **extra}]})


DECISIONS = [
    # (policy, allowed, reason fragment)
    (json.dumps({"default": ACCEPT}), True, "insecureAcceptAnything"),
    (json.dumps({"default": [*ACCEPT, {"type": "reject"}]}), False, "rejected by policy"),
    # without signatures (evaluate_policy fetches none), as IsRunningImageAllowed answers
    # for an unsigned image; mirrorlab.proxy.signatures evaluates them with signatures
    (_signed(), False, "A signature was required, but no signature exists"),
    (_signed(signedIdentity={"type": "matchRepository"}), False, "no signature exists"),
    (json.dumps({"default": [{"type": "sigstoreSigned", "keyData": "QUJD"}]}), False,
     "A signature was required, but no signature exists"),
    (json.dumps({"default": [{"type": "signedBaseLayer",
                              "baseLayerIdentity": {"type": "matchExact"}}]}), False,
     "signedBaseLayer not implemented yet!"),
]


@pytest.mark.parametrize(("text", "allowed", "reason"), DECISIONS)
def test_requirement_lists_are_anded(text: str, allowed: bool, reason: str) -> None:
    decision = evaluate_policy(parse_policy(text), parse_docker_reference("quay.io/a/b"))
    assert decision.allowed is allowed
    assert reason in decision.reason


def _policy(*requirements: object, **transports: object) -> str:
    document: dict[str, object] = {"default": list(requirements) or [{"type": "reject"}]}
    if transports:
        document["transports"] = transports
    return json.dumps(document)


def _sigstore(**options: object) -> str:
    return _policy({"type": "sigstoreSigned", **options})


REJECT = [{"type": "reject"}]
FULCIO = {"caPath": "/ca.pem", "oidcIssuer": "https://issuer", "subjectEmail": "a@b"}
INVALID = [
    # (policy.json, the whole error), each as go.podman.io/image/v5 v5.42.1 says it
    # (checked against the Go oracle by tests/test_oracle_differential.py)
    #
    # NewPolicyFromBytes: json.Unmarshal checks the whole document's syntax first, with
    # encoding/json's scanner texts; mirrorlab adds the line
    ('{"default": [{"type": "reject"}]} trailing',
     "line 1: invalid character 't' after top-level value"),
    ('{"default": [{"type": "reject"', "line 1: unexpected end of JSON input"),
    ('{\n  "default": [\n    {"type": "reject"},\n  ]\n}',
     "line 4: invalid character ']' looking for beginning of value"),
    ("{'default': []}",
     "line 1: invalid character '\\'' looking for beginning of object key string"),
    ('{"default": [{"type": "reject", "x": tru}]}',
     "line 1: invalid character '}' in literal true (expecting 'e')"),
    ('{"default": [{"type": "reject", "x": -', "line 1: invalid character ' ' in numeric literal"),
    ('{"default": [{"type": "rej\\xect"}]}', "line 1: invalid character 'x' in string escape code"),
    ('{"default": [{"type": "reject"}], "default": []',  # syntax before anything else
     "line 1: unexpected end of JSON input"),
    # signature/internal/json.go ParanoidUnmarshalJSONObject: not an object (Decoder.Token
    # shown with %#v), a duplicate or unknown key, each key in document order
    ('[{"type": "reject"}]', "JSON object expected, got 91"),
    ("null", "JSON object expected, got <nil>"),
    ("1234567", "JSON object expected, got 1.234567e+06"),
    ('"policy"', 'JSON object expected, got "policy"'),
    ('{"default": [{"type": "reject"}], "transport": {}}', 'Unknown key "transport"'),
    ('{"default": [{"type": "reject"}], "default": [{"type": "reject"}]}',
     'Duplicate key "default"'),
    # ... and each value is decoded where it stands: its error comes before a later key's
    ('{"default": [], "default": [{"type": "reject"}]}',
     "List of verification policy requirements must not be empty"),
    ('{"default": [{"type": "nope"}], "extra": true}', 'Unknown policy requirement type "nope"'),
    ('{"extra": true, "default": []}', 'Unknown key "extra"'),
    # policy_config.go Policy.UnmarshalJSON, PolicyRequirements.UnmarshalJSON
    ("{}", "Default policy is missing"),
    ('{"transports": {}}', "Default policy is missing"),
    ('{"default": []}', "List of verification policy requirements must not be empty"),
    ('{"default": null}', "List of verification policy requirements must not be empty"),
    ('{"default": {}}', "json: cannot unmarshal object into Go value of type []json.RawMessage"),
    ('{"default": [{"type": "reject"}], "transports": {"docker": {"a": []}}}',
     'transports.docker["a"]: List of verification policy requirements must not be empty'),
    ('{"default": [{"type": "reject"}], "transports": {"docker": []}}',
     "JSON object expected, got 91"),
    ('{"default": [{"type": "reject"}], "transports": {"docker": {"a": [{"type": "reject"}],'
     ' "a": [{"type": "reject"}]}}}', 'Duplicate key "a"'),
    # newPolicyRequirementFromJSON: the type by plain json.Unmarshal into prCommon, then
    # the type's strict decoder
    ('{"default": [{"type": "acceptEverything"}]}',
     'Unknown policy requirement type "acceptEverything"'),
    ('{"default": [{}]}', 'Unknown policy requirement type ""'),
    ('{"default": [null]}', 'Unknown policy requirement type ""'),
    ('{"default": ["reject"]}',
     "json: cannot unmarshal string into Go value of type signature.prCommon"),
    ('{"default": [{"type": 1}]}', "json: cannot unmarshal number into Go struct field "
     "prCommon.type of type signature.prTypeIdentifier"),
    ('{"default": [{"TYPE": "reject"}]}', 'Unknown key "TYPE"'),  # matched case-insensitively
    ('{"default": [{"type": "reject", "extra": 1}]}', 'Unknown key "extra"'),
    # transports: ValidatePolicyConfigurationScope of each transport refuses as an
    # unknown key (openshift/openshift_transport.go, docker/daemon/daemon_transport.go,
    # directory/directory_transport.go, docker/archive/transport.go; podman and skopeo
    # register them all, the Go oracle only docker and dir)
    (_policy(atomic={"a/b/c/d": REJECT}), 'Unknown key "a/b/c/d"'),
    (_policy(**{"docker-daemon": {DIGEST: REJECT}}), f'Unknown key "{DIGEST}"'),
    (_policy(dir={"relative/dir": REJECT}), 'Unknown key "relative/dir"'),
    (_policy(dir={"/not/clean/": REJECT}), 'Unknown key "/not/clean/"'),
    (_policy(dir={"/": REJECT}), 'Unknown key "/"'),
    (_policy(**{"docker-archive": {"/a.tar": REJECT}}), 'Unknown key "/a.tar"'),
    # policy_config.go prSignedBy.UnmarshalJSON, sbKeyType.UnmarshalJSON, newPRSignedBy
    (_signed(keyData="QUJD"), "Exactly one of keyPath, keyPaths and keyData must be "
     "specified, more than one present"),
    (_policy({"type": "signedBy", "keyType": "GPGKeys"}), "Exactly one of keyPath, keyPaths "
     "and keyData must be specified, none of them present"),
    (_policy({"type": "signedBy", "keyType": "GPGKeys", "keyPath": ""}),
     "exactly one of keyPath, keyPaths and keyData must be specified"),
    ('{"default": [{"type": "signedBy", "keyType": "RSA", "keyPath": "/k"}]}',
     'Unrecognized keyType value "RSA"'),
    ('{"default": [{"type": "signedBy", "keyPath": "/k"}]}', 'invalid keyType ""'),
    ('{"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPaths": "/k"}]}',
     "json: cannot unmarshal string into Go value of type []string"),
    # a []byte is base64 (encoding/base64 StdEncoding: the offset Go names)
    (_policy({"type": "signedBy", "keyType": "GPGKeys", "keyData": "QU!D"}),
     "illegal base64 data at input byte 2"),
    (_policy({"type": "signedBy", "keyType": "GPGKeys", "keyData": "QUI"}),
     "illegal base64 data at input byte 0"),
    (_policy({"type": "signedBy", "keyType": "GPGKeys", "keyData": "QQ=x"}),
     "illegal base64 data at input byte 2"),
    # signedIdentity: newPolicyReferenceMatchFromJSON, newPRMExactReference, ...
    (_signed(signedIdentity={"type": "exactReference", "dockerReference": "quay.io/a"}),
     'dockerReference "quay.io/a" contains neither a tag nor digest'),
    (_signed(signedIdentity={"type": "exactReference", "dockerReference": "Quay.io/A:1"}),
     'Invalid format of dockerReference "Quay.io/A:1": invalid reference format: repository '
     "name must be lowercase"),
    (_signed(signedIdentity={"type": "exactReference"}),
     'Key "dockerReference" missing in a JSON object'),
    (_signed(signedIdentity={"type": "matchSomething"}),
     'Unknown policy reference match type "matchSomething"'),
    (_signed(signedIdentity=None), 'Unknown policy reference match type ""'),
    (_signed(signedIdentity={"type": "remapIdentity", "prefix": "a.io"}),
     'Key "signedPrefix" missing in a JSON object'),
    (_signed(signedIdentity={"type": "remapIdentity", "prefix": "a.io",
                             "signedPrefix": "a.io/UP"}),
     'prefix "a.io/UP" is not valid'),
    # ... checked before the key options
    (_signed(keyData="QUJD", signedIdentity={"type": "x"}),
     'Unknown policy reference match type "x"'),
    # policy_config_sigstore.go prSigstoreSigned.UnmarshalJSON and its options,
    # newPRSigstoreSigned, newPRSigstoreSignedFulcio, newPRSigstoreSignedPKI
    (_sigstore(), "exactly one of keyPath, keyPaths, keyData, keyDatas, fulcio, and pki must "
     "be specified"),
    (_sigstore(keyPaths=[]), '"keyPaths" contains no entries'),
    (_sigstore(keyPath="/k", rekorPublicKeyPaths=[]), '"rekorPublickeyPaths" contains no '
     "entries"),
    (_sigstore(keyDatas=["QUJD", 1]),
     "json: cannot unmarshal number into Go value of type []uint8"),
    (_sigstore(fulcio={}), "At least one of caPath and caData must be specified"),
    (_sigstore(fulcio=None), "JSON object expected, got <nil>"),
    (_sigstore(fulcio={**FULCIO, "caData": "QUJD"}),
     "caPath and caData cannot be used simultaneously"),
    (_sigstore(fulcio=FULCIO), "At least one of rekorPublickeyPath, rekorPublicKeyPaths, "
     "rekorPublickeyData and rekorPublicKeyDatas must be specified if fulcio is used"),
    (_sigstore(fulcio={}, keyPaths=[]),  # fulcio is checked where it stands
     "At least one of caPath and caData must be specified"),
    (_sigstore(pki={"caRootsPath": "/r.pem"}),
     "At least one of subjectEmail, subjectHostname must be specified"),
    (_sigstore(pki={"caRootsPath": "/r.pem", "subjectEmail": "a@b"}, rekorPublicKeyPath="/r"),
     "rekorPublickeyPath, rekorPublicKeyPaths, rekorPublickeyData and rekorPublicKeyDatas "
     "are not supported for pki"),
    (_sigstore(keyPath="/k", rekorPublicKeyPath="/r", rekorPublicKeyData="QUJD"),
     "at most one of rekorPublickeyPath, rekorPublicKeyPaths, rekorPublickeyData and "
     "rekorPublicKeyDatas can be used simultaneously"),
    # policy_config.go prSignedBaseLayer.UnmarshalJSON
    (_policy({"type": "signedBaseLayer"}), 'Key "baseLayerIdentity" missing in a JSON object'),
]


@pytest.mark.parametrize(("text", "message"), INVALID)
def test_strict_parsing(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_policy(text)
    assert str(caught.value) == message


def test_the_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text('{"default": [{"type": "reject"}], "transports": {"docker": {"a.io": []}}}')
    with pytest.raises(ConfigError) as caught:
        load_policy(str(path))
    assert str(caught.value) == (f'invalid policy in "{path}": transports.docker["a.io"]: '
                                 "List of verification policy requirements must not be empty")


ACCEPTED = [
    # what upstream takes although it looks wrong
    _policy(**{"docker-daemon": {"sha256:abcd": REJECT}}),  # not a digest digest.Parse takes
    _policy(ostree={"anything": REJECT}),  # a stub transport: every scope
    _policy(dir={"/a/b": REJECT}),
    _policy({"type": "signedBy", "keyType": "GPGKeys", "keyData": ""}),  # empty, not nil
    _policy({"type": "signedBy", "keyType": "GPGKeys", "keyPaths": []}),
    _policy({"type": "signedBy", "keyType": "GPGKeys", "keyData": "QUJD\nRA=="}),
    '{"def\\u0061ult": [{"type": "reject"}]}',  # keys are compared decoded
]


@pytest.mark.parametrize("text", ACCEPTED)
def test_accepted_as_upstream_accepts(text: str) -> None:
    parse_policy(text)


def test_unknown_transports_and_malformed_docker_scopes_are_accepted() -> None:
    policy = parse_policy(json.dumps({"default": ACCEPT, "transports": {
        "nosuchtransport": {"anything": ACCEPT},
        "docker": {"https://not a reference": [{"type": "reject"}]},
    }}))
    assert evaluate_policy(policy, parse_docker_reference("quay.io/a")).allowed
