"""The proxy's pure parts: request routing, short names, attempt chains, upstream helpers."""

from __future__ import annotations

import pytest

from mirrorlab.proxy.cooldown import CoolDown
from mirrorlab.proxy.errors import MirrorlabError
from mirrorlab.proxy.failures import describe
from mirrorlab.proxy.fallback import Fallback, FallbackMode, blob_fallback_trigger
from mirrorlab.proxy.outcomes import (
    Attempt,
    Outcome,
    aggregate_error,
    fallback_error,
    outcome_of_status,
)
from mirrorlab.proxy.plan import PullSource
from mirrorlab.proxy.reference import parse_docker_reference
from mirrorlab.proxy.registries_conf import RegistriesConf
from mirrorlab.proxy.routing import path_component_for, route
from mirrorlab.proxy.shortnames import resolve_short_name
from mirrorlab.proxy.sites import same_site
from mirrorlab.proxy.steps import Step
from mirrorlab.proxy.upstream import parse_challenge, status_message

from .conftest import DIGEST, LoadConf

ROUTES = [
    # request name, ns, reference, logical reference
    ("quay.io/ns/app", None, "v1", "quay.io/ns/app:v1"),
    ("quay.io/ns/app", None, DIGEST, f"quay.io/ns/app@{DIGEST}"),
    ("localhost_5000/app", None, "v1", "localhost:5000/app:v1"),
    ("reg.example_8443/ns/app", None, "v1", "reg.example:8443/ns/app:v1"),
    ("library/busybox", None, "1", "docker.io/library/busybox:1"),
    ("busybox", None, "1", "docker.io/library/busybox:1"),
    ("user/app", None, "1", "docker.io/user/app:1"),
    ("ns/app", "quay.io", "v1", "quay.io/ns/app:v1"),
    ("busybox", "registry-1.docker.io", "1", "docker.io/library/busybox:1"),
    ("app", "index.docker.io", "1", "docker.io/library/app:1"),
    ("ns/app", "reg.example:5000", "v1", "reg.example:5000/ns/app:v1"),
    ("my_5000/app", None, "v1", "docker.io/my_5000/app:v1"),  # no dot: not a registry
]


@pytest.mark.parametrize(("name", "ns", "reference", "logical"), ROUTES)
def test_routes(name: str, ns: str | None, reference: str, logical: str) -> None:
    assert str(route(name, ns).reference(reference)) == logical


@pytest.mark.parametrize("registry", ["quay.io", "localhost:5000", "reg.example:8443"])
def test_port_alias_round_trip(registry: str) -> None:
    found = route(f"{path_component_for(registry)}/ns/app")
    assert (found.registry, found.repository, found.via) == (registry, "ns/app", "path")


@pytest.mark.parametrize("ns", ["http://evil", "a/b", "UPPER CASE"])
def test_ns_is_a_registry_name_not_a_url(ns: str) -> None:
    with pytest.raises(ValueError, match="not a registry host"):
        route("ns/app", ns)


SHORT = """
unqualified-search-registries = ["quay.io", "docker.io"]
[aliases]
"fedora" = "registry.fedoraproject.org/fedora"
"""

SHORT_NAMES = [
    # registries.conf, name, identity, candidates (or an error fragment)
    (SHORT, "fedora", "39", ["registry.fedoraproject.org/fedora:39"]),
    (SHORT, "busybox", "1", ["quay.io/busybox:1", "docker.io/library/busybox:1"]),
    (SHORT, "ns/app", DIGEST, [f"quay.io/ns/app@{DIGEST}", f"docker.io/ns/app@{DIGEST}"]),
    ('short-name-mode = "enforcing"\n' + SHORT, "fedora", "39",
     ["registry.fedoraproject.org/fedora:39"]),
    ('short-name-mode = "enforcing"\n' + SHORT, "busybox", "1", "is ambiguous"),
    ('unqualified-search-registries = ["quay.io"]\nshort-name-mode = "enforcing"\n',
     "busybox", "1", ["quay.io/busybox:1"]),
    ("", "busybox", "1", "did not resolve to an alias and no unqualified-search registries"),
]


@pytest.mark.parametrize(("conf", "name", "identity", "expected"), SHORT_NAMES)
def test_short_names(load_conf: LoadConf, conf: str, name: str, identity: str,
                     expected: list[str] | str) -> None:
    config = load_conf(conf)
    if isinstance(expected, str):
        with pytest.raises(MirrorlabError, match=expected):
            resolve_short_name(config, name, identity)
    else:
        assert [str(r) for r in resolve_short_name(config, name, identity)] == expected


def _attempt(source: str, outcome: str, detail: str = "boom",
             code: str | None = None) -> Attempt:
    return Attempt(source, Outcome(outcome), detail, code=code)


AGGREGATES = [
    ([_attempt("q.io/a:1", "connect", "refused")], "refused"),
    ([_attempt("m1/a:1", "connect", "refused"), _attempt("q.io/a:1", "blocked", "blocked!")],
     "(Mirrors also failed: [m1/a:1: refused]): q.io/a:1: blocked!"),
    ([_attempt("m1/a:1", "connect", "e1"), _attempt("m2/a:1", "not_found", "e2"),
      _attempt("q.io/a:1", "server_error", "e3")],
     "(Mirrors also failed: [m1/a:1: e1]\n[m2/a:1: e2]): q.io/a:1: e3"),
]


@pytest.mark.parametrize(("attempts", "message"), AGGREGATES)
def test_aggregate_error_has_containers_image_shape(attempts: list[Attempt],
                                                    message: str) -> None:
    assert aggregate_error(attempts) == message


def _step(host: str, blocked: bool = False) -> Step:
    ref = parse_docker_reference(f"{host}/a:1")
    return Step(ref, PullSource(ref, mirror=True, insecure=False, blocked=blocked))


def test_cooldown_skips_a_failing_host_for_a_while() -> None:
    now = [0.0]
    cool = CoolDown(seconds=30, threshold=2, clock=lambda: now[0])
    hosts = ["m1.io", "m2.io"]
    cool.record("m1.io", Outcome.CONNECT)
    assert cool.cooling(hosts) == set()  # one failure is not enough
    cool.record("m1.io", Outcome.NOT_FOUND)  # content misses do not count, nor reset
    cool.record("m1.io", Outcome.CLIENT_ERROR)  # nor a 4xx (a 416 the proxy caused)
    cool.record("m1.io", Outcome.CONNECT)
    assert cool.cooling(hosts) == {"m1.io"}
    now[0] = 31.0
    assert cool.cooling(hosts) == set()
    cool.record("m1.io", Outcome.SERVER_ERROR)  # the count persists until a success
    assert cool.cooling(hosts) == {"m1.io"}
    cool.record("m1.io", Outcome.SERVED)
    assert cool.cooling(hosts) == set()


def test_one_timeout_trips_the_cooldown() -> None:
    """A hung mirror should cost only the first pull, not one read timeout per pull."""
    cool = CoolDown(seconds=30, threshold=2)
    cool.record("m1.io", Outcome.TIMEOUT)
    assert cool.cooling(["m1.io", "m2.io"]) == {"m1.io"}


def test_cooldown_never_skips_every_usable_source() -> None:
    cool = CoolDown(seconds=30, threshold=1)
    cool.record("m1.io", Outcome.CONNECT)
    assert cool.cooling(["m1.io"]) == set()


def test_zero_seconds_is_no_cooldown() -> None:
    cool = CoolDown(seconds=0, threshold=1)
    cool.record("m1.io", Outcome.CONNECT)
    assert cool.cooling(["m1.io", "m2.io"]) == set()


# PR #845's unit tables (`TestIsMirrorTransientError`, `TestIsMirrorFallbackError`), as
# outcome and OCI code: which failures of a referenced blob move on to the next source.
BLOB_TRIGGERS = [
    ("server_error", None, True),  # 500, 503
    ("timeout", None, True),
    ("not_found", "BLOB_UNKNOWN", True),
    ("toomanyrequests", "TOOMANYREQUESTS", True),
    ("not_found", None, False),  # a bare 404: UnexpectedHTTPStatusError
    ("not_found", "MANIFEST_UNKNOWN", False),
    ("not_found", "NAME_UNKNOWN", False),
    ("toomanyrequests", None, False),  # a bare 429
    ("client_error", None, False),  # 400
    ("denied", "UNAUTHORIZED", False),
    ("denied", "DENIED", False),
    ("connect", None, False),  # a net.Error without Timeout()
    ("tls", None, False),
    ("interrupted", None, False),  # mid-stream: body_reader resumes at the same source
    ("digest", None, False),
]


@pytest.mark.parametrize(("outcome", "code", "trigger"), BLOB_TRIGGERS)
def test_blob_fallback_triggers(outcome: str, code: str | None, trigger: bool) -> None:
    assert blob_fallback_trigger(Outcome(outcome), code) is trigger
    blob = Fallback(FallbackMode.BLOB)
    assert blob.goes_on(Outcome(outcome), code, kind="blob", referenced=True) is trigger
    assert blob.goes_on(Outcome(outcome), code, kind="manifest", referenced=True) is False
    assert Fallback(FallbackMode.STICKY).goes_on(Outcome(outcome), code, kind="blob",
                                                 referenced=True) is False
    assert Fallback(FallbackMode.RESILIENT).goes_on(Outcome(outcome), code, kind="blob",
                                                    referenced=True) is True
    for mode in FallbackMode:  # a top-level manifest: every failure moves on, in every mode
        assert Fallback(mode).goes_on(Outcome(outcome), code, kind="manifest",
                                      referenced=False) is True


PLAN = [_step("m1.io"), _step("m2.io"), _step("m3.io"), _step("q.io")]
CANDIDATES = [
    # mode, kind, index of the manifest's source in PLAN, candidates (hosts)
    ("sticky", "blob", 1, ["m2.io"]),
    ("sticky", "manifest", 1, ["m2.io"]),
    ("blob", "blob", 1, ["m2.io", "m3.io", "q.io"]),  # only those after it
    ("blob", "blob", 3, ["q.io"]),  # the primary served: no fallback at all
    ("blob", "manifest", 1, ["m2.io"]),  # per-platform manifests stay
    ("resilient", "blob", 1, ["m2.io", "m1.io", "m3.io", "q.io"]),
    ("resilient", "manifest", 2, ["m3.io", "m1.io", "m2.io", "q.io"]),
    ("sticky", "blob", None, ["m1.io", "m2.io", "m3.io", "q.io"]),  # not referenced
]


@pytest.mark.parametrize(("mode", "kind", "home", "hosts"), CANDIDATES)
def test_candidates_per_mode(mode: str, kind: str, home: int | None,
                             hosts: list[str]) -> None:
    served_by = PLAN[home] if home is not None else None
    found = Fallback(FallbackMode(mode)).candidates(PLAN, served_by, kind)
    assert [s.source.host for s in found] == hosts


RESCUES = [
    # what each source did for a referenced blob (resilient), the node modes that fail it
    ([("served", None)], []),
    ([("not_found", "BLOB_UNKNOWN"), ("served", None)], ["sticky"]),
    ([("server_error", None), ("not_found", None), ("served", None)], ["sticky", "blob"]),
    ([("denied", None), ("served", None)], ["sticky", "blob"]),
    ([("cooldown", None), ("served", None)], ["sticky", "blob"]),
    ([("interrupted", None), ("served", None)], ["sticky", "blob"]),
    ([("blocked", None), ("served", None)], []),
]


@pytest.mark.parametrize(("outcomes", "fail"), RESCUES)
def test_resilient_rescues_are_named(outcomes: list[tuple[str, str | None]],
                                     fail: list[str]) -> None:
    attempts = [_attempt(f"m{n}/a", outcome, code=code)
                for n, (outcome, code) in enumerate(outcomes)]
    resilient = Fallback(FallbackMode.RESILIENT)
    assert list(resilient.rescued(attempts, kind="blob", referenced=True)) == fail
    assert resilient.rescued(attempts, kind="blob", referenced=False) == ()
    assert Fallback(FallbackMode.BLOB).rescued(attempts, kind="blob", referenced=True) == ()


def test_fallback_error_has_pr_845_shape() -> None:
    attempts = [_attempt("m1/a", "server_error", "e1"), _attempt("m2/a", "not_found", "e2"),
                _attempt("q/a", "server_error", "e3")]
    assert fallback_error(attempts) == "(Fallback sources also failed: [m2/a: e2]\n[q/a: e3]): e1"
    blob = Fallback(FallbackMode.BLOB)
    assert blob.message(attempts, referenced=True) == fallback_error(attempts)
    assert blob.message(attempts, referenced=False) == aggregate_error(attempts)


STATUS_OUTCOMES = [(404, "not_found"), (401, "denied"), (403, "denied"),
                   (429, "toomanyrequests"), (416, "client_error"), (400, "client_error"),
                   (500, "server_error"), (503, "server_error")]


@pytest.mark.parametrize(("status", "outcome"), STATUS_OUTCOMES)
def test_one_status_mapping(status: int, outcome: str) -> None:
    assert outcome_of_status(status) == Outcome(outcome)


def test_messages_never_show_object_reprs() -> None:
    import ssl

    import aiohttp
    from aiohttp.client_reqrep import ConnectionKey

    key = ConnectionKey("h.io", 443, True, ssl.create_default_context(), None, None, None)
    error = aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "Connection refused"))
    text = describe(error)
    assert text == "dial tcp h.io:443: connect: connection refused", text  # Go's words


CHALLENGES = [
    ('Bearer realm="https://auth.example.com/token",service="reg",scope="repository:a/b:pull"',
     "bearer", {"realm": "https://auth.example.com/token", "service": "reg",
                "scope": "repository:a/b:pull"}),
    ('Bearer realm="https://a/t",scope="repository:a:pull,push"', "bearer",
     {"realm": "https://a/t", "scope": "repository:a:pull,push"}),
    ('Basic realm="Registry Realm"', "basic", {"realm": "Registry Realm"}),
    ("Bearer realm=https://a/t,service=x", "bearer", {"realm": "https://a/t", "service": "x"}),
]


@pytest.mark.parametrize(("header", "scheme", "params"), CHALLENGES)
def test_parse_challenge(header: str, scheme: str, params: dict[str, str]) -> None:
    assert parse_challenge(header) == (scheme, params)


STATUS_MESSAGES = [
    (404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}',
     "manifest unknown"),
    (404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"Failed to fetch"}]}',
     "manifest unknown: Failed to fetch"),
    (401, b"", "authentication required"),
    (403, b"<html>forbidden</html>", 'StatusCode: 403, "<html>forbidden</html>..."'),
    (503, b"", "received unexpected HTTP status: 503"),
]


@pytest.mark.parametrize(("status", "body", "message"), STATUS_MESSAGES)
def test_status_messages_read_like_containers_image(status: int, body: bytes,
                                                    message: str) -> None:
    assert status_message(status, body)[1] == message


SITES = [
    ("auth.example.com", "registry.example.com", True),
    ("registry.example.com", "registry.example.com:5000", True),
    ("auth.docker.io", "registry-1.docker.io", True),
    ("evil.example.org", "registry.example.com", False),
    ("127.0.0.1", "registry.example.com", False),
    ("localhost", "localhost:5000", True),
]


@pytest.mark.parametrize(("realm", "registry", "same"), SITES)
def test_credentials_only_go_to_the_registrys_own_site(realm: str, registry: str,
                                                        same: bool) -> None:
    assert same_site(realm, registry) is same


def test_empty_registries_conf_routes_everything_as_is() -> None:
    from mirrorlab.proxy.plan import resolve_sources

    plan = resolve_sources(RegistriesConf(), parse_docker_reference("quay.io/a"))
    assert [str(s.reference) for s in plan.sources] == ["quay.io/a:latest"]


@pytest.mark.parametrize(("url", "shown"), [
    ("https://user:secret@sigs.example.com/a", "https://user:***@sigs.example.com/a"),
    ("https://user:secret@sigs.example.com:8443/a", "https://user:***@sigs.example.com:8443/a"),
    ("https://sigs.example.com/a", "https://sigs.example.com/a"),
    ("file:///var/lib/containers/sigstore/a", "file:///var/lib/containers/sigstore/a")])
def test_urls_in_messages_carry_no_password(url: str, shown: str) -> None:
    from mirrorlab.proxy.failures import redacted

    assert redacted(url) == shown
