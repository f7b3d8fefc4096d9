"""policy.json: strict parsing and scope lookup (containers/image
signature/policy_config.go: NewPolicyFromBytes, signature/policy_eval.go:
PolicyContext.requirementsForImageRef, docker/policyconfiguration/naming.go)."""

from __future__ import annotations

import json

import pytest

from mirrorlab.proxy.errors import ConfigError
from mirrorlab.proxy.policy import evaluate_policy, parse_policy, policy_scopes
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


INVALID = [
    ("{}", "Default policy is missing"),
    ('{"default": []}', "must not be empty"),
    ('{"default": [{"type": "acceptEverything"}]}', 'Unknown policy requirement type'),
    ('{"default": [{"type": "reject", "extra": 1}]}', 'Unknown key "extra"'),
    ('{"default": [{"type": "reject"}], "default": [{"type": "reject"}]}', "Duplicate key"),
    ('{"default": [{"type": "reject"}]} trailing', "invalid JSON"),
    ('{"default": [{"type": "reject"}], "transport": {}}', 'Unknown key "transport"'),
    ('{"default": [{"type": "reject"}], "transports": {"docker": {"a": []}}}',
     "must not be empty"),
    ('{"default": [{"type": "reject"}], "transports": {"atomic": {"a/b/c/d": '
     '[{"type": "reject"}]}}}', 'Unknown key "a/b/c/d"'),
    ('{"default": [{"type": "reject"}], "transports": {"docker-daemon": {"sha256:abcd": '
     '[{"type": "reject"}]}}}', 'Unknown key "sha256:abcd"'),
    (_signed(keyData="QUJD"), "exactly one of"),
    ('{"default": [{"type": "signedBy", "keyType": "RSA", "keyPath": "/k"}]}',
     'Unknown key type "RSA"'),
    (_signed(signedIdentity={"type": "exactReference", "dockerReference": "quay.io/a"}),
     "must contain a tag or digest"),
    (_signed(signedIdentity={"type": "matchSomething"}), "Unknown policy reference match type"),
    ('{"default": [{"type": "sigstoreSigned", "fulcio": {}}]}',
     "At least one of caPath and caData must be specified"),
    ('{"default": [{"type": "sigstoreSigned", "fulcio": {"caData": "QUJD", "oidcIssuer": "i",'
     ' "subjectEmail": "e"}}]}', "must be specified if fulcio is used"),
    ('[{"type": "reject"}]', "not a JSON object"),
    ('{"default": [{"type": "reject"}], "transports": {"docker": {"a": [{"type": "reject"}],'
     ' "a": [{"type": "reject"}]}}}', 'Duplicate key "a"'),
]


@pytest.mark.parametrize(("text", "message"), INVALID)
def test_strict_parsing(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        parse_policy(text)


def test_unknown_transports_and_malformed_docker_scopes_are_accepted() -> None:
    policy = parse_policy(json.dumps({"default": ACCEPT, "transports": {
        "nosuchtransport": {"anything": ACCEPT},
        "docker": {"https://not a reference": [{"type": "reject"}]},
    }}))
    assert evaluate_policy(policy, parse_docker_reference("quay.io/a")).allowed
