"""OpenShift rendering, checked against the upstream tests of the code that writes node files:
runtime-utils pkg/registries/registries.go (EditRegistriesConfig, ScopeIsNestedInsideScope,
IsValidRegistriesConfScope, mergedMirrorSets; topo.go: topoGraph.Sorted) and the MCO's
pkg/controller/container-runtime-config/helpers.go (updateRegistriesConfig, updatePolicyJSON,
validateRegistriesConfScopes, getValidBlockedAndAllowedRegistries).

Case ids: "U-..." is a case of the upstream test named beside its table (its `name` in a comment);
"D-..." is derived from reading the named function, not asserted by an upstream test."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from mirrorlab.proxy.errors import ConfigError
from mirrorlab.proxy.openshift.crs import (
    ICSP,
    IDMS,
    ITMS,
    ClusterCRs,
    ImageConfig,
    MirrorEntry,
    MirrorSet,
    Origin,
)
from mirrorlab.proxy.openshift.mirrorsets import merge_mirror_sets, topological_order
from mirrorlab.proxy.openshift.render import (
    POLICY_JSON,
    REGISTRIES_CONF,
    TEMPLATE_REGISTRIES_CONF,
    RenderOptions,
    filter_blocked_for_payload,
    render,
)
from mirrorlab.proxy.openshift.scopes import (
    nested,
    valid_mirror,
    valid_registries_conf_scope,
    valid_source,
)

Entries = Sequence[Sequence[dict[str, Any]]]


def crs(*, insecure: list[str] | None = None, blocked: list[str] | None = None,
        allowed: list[str] | None = None, idms: Entries = (), itms: Entries = (),
        icsp: Entries = ()) -> ClusterCRs:
    """Cluster CRs in a compact notation: each CR a list of {source, mirrors, policy}."""
    sets = []
    for kind, objects in ((IDMS, idms), (ICSP, icsp), (ITMS, itms)):
        for number, entries in enumerate(objects):
            origin = Origin("crs.yaml", kind, f"{kind.lower()}-{number}")
            sets.append(MirrorSet(kind, tuple(
                MirrorEntry(e["source"], tuple(e.get("mirrors") or ()), e.get("policy"), origin,
                            f"spec.entries[{i}]") for i, e in enumerate(entries)), origin))
    image = None
    if insecure is not None or blocked is not None or allowed is not None:
        image = ImageConfig(Origin("image.yaml", "Image", "cluster"),
                            insecure=tuple(insecure) if insecure is not None else None,
                            blocked=tuple(blocked) if blocked is not None else None,
                            allowed=tuple(allowed) if allowed is not None else None)
    return ClusterCRs(image, tuple(sets))


def notation(node_crs: ClusterCRs, **options: Any) -> list[dict[str, Any]]:
    out = []
    for entry in render(node_crs, RenderOptions(**options)).entries:
        item: dict[str, Any] = ({"prefix": entry.prefix} if entry.prefix
                                else {"location": entry.location})
        if entry.insecure:
            item["insecure"] = True
        if entry.blocked:
            item["blocked"] = True
        if entry.mirrors:
            item["mirrors"] = [f"{m.location} {'D' if m.pull_from_mirror == 'digest-only' else 'T'}"
                               + (" +insecure" if m.insecure else "") for m in entry.mirrors]
        out.append(item)
    return out


SETS = [{"source": "insecure.com/ns-i1", "mirrors": ["blocked.com/ns-b1", "other.com/ns-o1"]},
        {"source": "blocked.com/ns-b/ns2-b", "mirrors": ["other.com/ns-o2", "insecure.com/ns-i2"]},
        {"source": "other.com/ns-o3", "mirrors": ["insecure.com/ns-i2", "blocked.com/ns-b/ns3-b",
                                                  "foo.insecure-example.com/bar"]}]
E03_OUT = [
    {"location": "blocked.com/ns-b/ns2-b", "blocked": True,
     "mirrors": ["other.com/ns-o2 D", "insecure.com/ns-i2 D +insecure"]},
    {"location": "insecure.com/ns-i1", "insecure": True,
     "mirrors": ["blocked.com/ns-b1 D", "other.com/ns-o1 D"]},
    {"location": "other.com/ns-o3", "mirrors": ["insecure.com/ns-i2 D +insecure",
                                                "blocked.com/ns-b/ns3-b D",
                                                "foo.insecure-example.com/bar D +insecure"]},
    {"location": "blocked.com", "blocked": True},
    {"prefix": "*.blocked.insecure-example.com", "insecure": True, "blocked": True},
    {"prefix": "*.blocked-example.com", "blocked": True},
    {"location": "insecure.com", "insecure": True},
    {"prefix": "*.insecure-example.com", "insecure": True},
    {"prefix": "*.insecure.blocked-example.com", "insecure": True, "blocked": True},
]
E03_SCOPES = {"insecure": ["insecure.com", "*.insecure-example.com",
                           "*.insecure.blocked-example.com"],
              "blocked": ["blocked.com", "*.blocked.insecure-example.com",
                          "*.blocked-example.com"]}


def _ab(kind: str, *names: str, policy: str | None = None) -> list[dict[str, Any]]:
    return [{"source": f"registry-{r}.com", "policy": policy if r == names[0] else None,
             "mirrors": [f"mirror-{kind}-{n}.registry-{r}.com" for n in (1, 2)]} for r in names]


# U: runtime-utils pkg/registries/registries_test.go: TestEditRegistriesConfig (the same cases as
# MCO pkg/controller/container-runtime-config/helpers_test.go: TestUpdateRegistriesConfig), by case
# name; D: derived from EditRegistriesConfig and mirrorsAdjustedForNestedScope.
EDIT_VECTORS = [
    # "insecure+blocked"
    ("U-E02", crs(insecure=["registry.access.redhat.com", "insecure.com", "common.com"],
                  blocked=["blocked.com", "common.com", "docker.io"]),
     [{"location": "blocked.com", "blocked": True},
      {"location": "common.com", "insecure": True, "blocked": True},
      {"location": "docker.io", "blocked": True},
      {"location": "registry.access.redhat.com", "insecure": True},
      {"location": "insecure.com", "insecure": True}]),
    # "imageContentSourcePolicy"
    ("U-E03", crs(insecure=E03_SCOPES["insecure"], blocked=E03_SCOPES["blocked"],
                  icsp=[SETS]), E03_OUT),
    # "insecure+blocked prefixes with wildcard entries"
    ("U-E04", crs(insecure=E03_SCOPES["insecure"], blocked=E03_SCOPES["blocked"],
                  idms=[SETS]), E03_OUT),
    # "imageTagMirrorSet"
    ("U-E05", crs(itms=[[{"source": "registry-a.com", "mirrors": ["mirror-tag-1.registry-a.com"]},
                         {"source": "registry-b.com",
                          "mirrors": ["mirror-tag-1.registry-b.com"]}]]),
     [{"location": "registry-a.com", "mirrors": ["mirror-tag-1.registry-a.com T"]},
      {"location": "registry-b.com", "mirrors": ["mirror-tag-1.registry-b.com T"]}]),
    # "imageDigestMirrorSet + imageTagMirrorSet"
    ("U-E06", crs(idms=[_ab("digest", "a", "b")], itms=[_ab("tag", "a", "b")]),
     [{"location": f"registry-{r}.com",
       "mirrors": [f"mirror-{k}-{n}.registry-{r}.com {k[0].upper()}"
                   for k in ("digest", "tag") for n in (1, 2)]} for r in "ab"]),
    # "insecure+blocked scopes inside a configured mirror"
    ("U-E08", crs(insecure=["primary.com/top/insecure"], blocked=["primary.com/top/blocked"],
                  idms=[[{"source": "primary.com/top", "mirrors": ["mirror.com/primary"]},
                         {"source": "primary.com/top/insecure/more-specific",
                          "mirrors": ["mirror.com/more-specific"]}]],
                  itms=[[{"source": "primary.com/top", "mirrors": ["mirror-tag.com/primary"]},
                         {"source": "primary.com/top/insecure/more-specific",
                          "mirrors": ["mirror-tag.com/more-specific"]}]]),
     [{"location": "primary.com/top", "mirrors": ["mirror.com/primary D",
                                                  "mirror-tag.com/primary T"]},
      {"location": "primary.com/top/insecure/more-specific", "insecure": True,
       "mirrors": ["mirror.com/more-specific D", "mirror-tag.com/more-specific T"]},
      {"location": "primary.com/top/blocked", "blocked": True,
       "mirrors": ["mirror.com/primary/blocked D", "mirror-tag.com/primary/blocked T"]},
      {"location": "primary.com/top/insecure", "insecure": True,
       "mirrors": ["mirror.com/primary/insecure D", "mirror-tag.com/primary/insecure T"]}]),
    # "imageContentSourcePolicy+imageDigestMirrorSet+imageTagMirrorSet"
    ("U-E11", crs(icsp=[[{"source": "registry-a.com",
                          "mirrors": ["mirror-icsp-1.registry-a.com"]}]],
                  idms=[[{"source": "registry-b.com",
                          "mirrors": ["mirror-digest-1.registry-b.com"]}]],
                  itms=[[{"source": "registry-c.com",
                          "mirrors": ["mirror-tag-1.registry-c.com"]}]]),
     [{"location": "registry-a.com", "mirrors": ["mirror-icsp-1.registry-a.com D"]},
      {"location": "registry-b.com", "mirrors": ["mirror-digest-1.registry-b.com D"]},
      {"location": "registry-c.com", "mirrors": ["mirror-tag-1.registry-c.com T"]}]),
    # a sub-scope takes the mirrors of the outermost enclosing mirrored scope
    ("D-E2", crs(blocked=["a.com/b/c"], idms=[[{"source": "a.com", "mirrors": ["m1.example/a"]},
                                              {"source": "a.com/b",
                                               "mirrors": ["m2.example/b"]}]]),
     [{"location": "a.com", "mirrors": ["m1.example/a D"]},
      {"location": "a.com/b", "mirrors": ["m2.example/b D"]},
      {"location": "a.com/b/c", "blocked": True, "mirrors": ["m1.example/a/b/c D"]}]),
    # a wildcard source is written as a prefix
    ("D-E3", crs(idms=[[{"source": "*.redhat.io", "mirrors": ["mirror.local/redhat"],
                         "policy": "NeverContactSource"}]]),
     [{"prefix": "*.redhat.io", "blocked": True, "mirrors": ["mirror.local/redhat D"]}]),
    # NeverContactSource on an entry without a real mirror (mirrorsContainsARealMirror) is ignored
    ("D-V4", crs(idms=[[{"source": "src.io", "mirrors": [], "policy": "NeverContactSource"}]]), []),
]


@pytest.mark.parametrize(("vector", "node_crs", "expected"), EDIT_VECTORS,
                         ids=[v[0] for v in EDIT_VECTORS])
def test_edit_registries(vector: str, node_crs: ClusterCRs, expected: list[dict[str, Any]]
                         ) -> None:
    assert notation(node_crs) == expected


def test_u_e12_merges_all_three_kinds() -> None:
    """MCO pkg/controller/container-runtime-config/helpers_test.go: TestUpdateRegistriesConfig,
    "imageDigestMirrorSet + imageTagMirrorSet + imageContentSourcePolicy merging"."""
    a = ["mirror-digest-1.registry-a.com", "mirror-digest-2.registry-a.com"]
    b = ["mirror-digest-1.registry-b.com", "mirror-digest-2.registry-b.com"]
    node_crs = crs(
        icsp=[[{"source": "registry-a.com", "mirrors": [*a, "mirror-icsp-1.registry-a.com"]},
               {"source": "registry-b.com", "mirrors": [*b, "mirror-icsp-1.registry-b.com"]},
               {"source": "registry-c.com", "mirrors": ["mirror-icsp-1.registry-c.com",
                                                        "mirror-icsp-2.registry-c.com"]}]],
        idms=[[{"source": "registry-a.com", "mirrors": a},
               {"source": "registry-b.com", "mirrors": b}]],
        itms=[_ab("tag", "a", "b")])
    assert notation(node_crs) == [
        {"location": f"registry-{r}.com", "mirrors": [
            f"mirror-digest-1.registry-{r}.com D", f"mirror-digest-2.registry-{r}.com D",
            f"mirror-icsp-1.registry-{r}.com D", f"mirror-tag-1.registry-{r}.com T",
            f"mirror-tag-2.registry-{r}.com T"]} for r in "ab"
    ] + [{"location": "registry-c.com", "mirrors": ["mirror-icsp-1.registry-c.com D",
                                                    "mirror-icsp-2.registry-c.com D"]}]


# runtime-utils pkg/registries/topo_test.go: TestTopoGraph (each edge "XY" is X -> Y).
TOPO = [
    ("U-T1", [], ""),
    ("U-T2", ["AB", "AC", "AD", "ab", "ac", "ad"], "AaBCDbcd"),
    ("U-T3", ["AD", "BD", "CD", "ad", "bd", "cd"], "ABCabcDd"),
    ("U-T4", ["AB", "BC", "CD", "DE", "ab", "bc", "cd", "de"], "AaBbCcDdEe"),
    ("U-T5", ["AB", "BC", "CD", "DA", "ab", "bc", "cd", "da"], "ABCDabcd"),
    ("U-T6", ["AB", "BC", "CD", "DB", "DE", "ab", "bc", "cd", "db", "de"], "AaBCDEbcde"),
]


@pytest.mark.parametrize(("vector", "edges", "order"), TOPO, ids=[t[0] for t in TOPO])
def test_topological_order_for_every_rotation(vector: str, edges: list[str], order: str) -> None:
    for turn in range(max(len(edges), 1)):
        rotated = edges[turn:] + edges[:turn]
        pairs = [(e[0], e[1]) for e in rotated]
        nodes = {n for e in rotated for n in e}
        assert "".join(topological_order(nodes, pairs)) == order


def _merge(*objects: list[dict[str, Any]]) -> list[tuple[str, list[str], bool]]:
    node_crs = crs(idms=list(objects))
    entries = [e for s in node_crs.mirror_sets for e in s.entries]
    merged = merge_mirror_sets(entries)
    return [(m.source, list(m.mirrors), m.never_contact) for m in merged]


# U: runtime-utils pkg/registries/registries_test.go: mergedMirrorsetsTestcases (run by
# TestMergedICSPMirrorSets, TestMergedDigestMirrorSets, TestMergedTagMirrorSets), by case name;
# D: derived from mergedMirrorSets and topoGraph.Sorted (D-M1: readiness is FIFO by generation;
# D-M2: a 2-cycle is broken by sorted name; D-M3: an ICSP list naming a mirror twice).
MERGES = [
    ("U-M2", [[{"source": "a.example.com", "mirrors": None},  # "Irrelevant singletons"
               {"source": "b.example.com", "mirrors": []}]], []),
    # "Separate mirror sets"
    ("U-M3", [[{"source": "source.example.net", "mirrors": ["z1.example.net", "y2.example.net"]}],
              [{"source": "source.example.com", "mirrors": ["z1.example.com", "y2.example.com"]}]],
     [("source.example.com", ["z1.example.com", "y2.example.com"], False),
      ("source.example.net", ["z1.example.net", "y2.example.net"], False)]),
    # "Separate mirror sets with mirrorSourcePolicy set"
    ("U-M4", [[{"source": "s.net", "mirrors": ["z1", "y2"], "policy": "NeverContactSource"}],
              [{"source": "s.com", "mirrors": ["z1", "y2"], "policy": "AllowContactingSource"}]],
     [("s.com", ["z1", "y2"], False), ("s.net", ["z1", "y2"], True)]),
    # "Sets with a shared element - strict order"
    ("U-M5", [[{"source": "s", "mirrors": ["z1", "y2"]}],
              [{"source": "s", "mirrors": ["y2", "x3"]}]],
     [("s", ["z1", "y2", "x3"], False)]),
    # "Source included in mirrors"
    ("U-M6", [[{"source": "s.com", "mirrors": ["z1", "s.com", "y2"]},
               {"source": "s.com", "mirrors": ["s.com", "y2", "x3"]}]],
     [("s.com", ["z1", "s.com", "y2", "x3"], False)]),
    # "Mirrors includes only source"
    ("U-M7", [[{"source": "s.com", "mirrors": ["s.com"]},
               {"source": "s.net", "mirrors": ["s.net", "s.net", "s.net"]}]], []),
    # "Example"
    ("U-M8", [[{"source": "source.vendor.com", "mirrors": ["registry2.vendor.com"]}],
              [{"source": "source.vendor2.com", "mirrors": ["registry1.vendor2.com",
                                                            "registry2.vendor2.com"]}],
              [{"source": "source.vendor.com", "mirrors": ["local-mirror.example.com"]},
               {"source": "source.vendor2.com", "mirrors": ["local-mirror2.example.com",
                                                            "registry2.vendor2.com",
                                                            "registry1.vendor2.com"]}]],
     [("source.vendor.com", ["local-mirror.example.com", "registry2.vendor.com"], False),
      ("source.vendor2.com", ["local-mirror2.example.com", "registry1.vendor2.com",
                              "registry2.vendor2.com"], False)]),
    ("D-M1", [[{"source": "src.example", "mirrors": ["a.example/m", "z.example/m"]}],
              [{"source": "src.example", "mirrors": ["b.example/m", "c.example/m"]}]],
     [("src.example", ["a.example/m", "b.example/m", "z.example/m", "c.example/m"], False)]),
    ("D-M2", [[{"source": "s.io", "mirrors": ["m2", "m1"]}], [{"source": "s.io",
                                                               "mirrors": ["m1", "m2"]}]],
     [("s.io", ["m1", "m2"], False)]),
    ("D-M3", [[{"source": "s.io", "mirrors": ["a", "a"]},
               {"source": "s.io", "mirrors": ["b", "a"]}]],
     [("s.io", ["b", "a"], False)]),
]


@pytest.mark.parametrize(("vector", "objects", "expected"), MERGES, ids=[m[0] for m in MERGES])
def test_merge_mirror_sets(vector: str, objects: list[list[dict[str, Any]]],
                           expected: list[tuple[str, list[str], bool]]) -> None:
    assert _merge(*objects) == expected
    assert _merge(*reversed(objects)) == expected  # object order never matters


# runtime-utils pkg/registries/registries_test.go: TestScopeIsNestedInsideScope
NESTED = [
    ("quay.io", "example.com", False), ("quay.io", "quay.io", True),
    ("quay.io:443", "quay.io", False), ("quay.io:443", "quay.io:444", False),
    ("quay.io.example.com", "quay.io", False), ("quay.io2", "quay.io", False),
    ("quay.io/ns1", "quay.io", True), ("quay.io/ns1/ns2/ns3", "quay.io", True),
    ("quay.io/ns1/ns2/ns3", "not-quay.io", False), ("bar/example.foo", "*.foo", False),
    ("example/bar.foo/quay.io", "*.foo", False), ("example/bar.foo:400", "*.foo", False),
    ("foo.example.com", "*.example.com", True), ("*.foo.example.com", "*.example.com", True),
    ("foo.example.com/bar", "*.example.com", True), ("foo.registry.com", "*.example.com", False),
    ("foo.example.com", "**.example.com", False), ("foo.example.com", "example.*.com", False),
    ("foo.example.com", "*.example.com/foo/bar", False),
    ("foo.example.com:443/bar/baz", "*.example.com", True),
    ("foo.example.com:443/bar/baz", "*.example.com/bar/baz", False),
    ("foo.example.com", "*example.com", False), ("foo.example.com", "*/example.com", False),
]


@pytest.mark.parametrize(("sub", "sup", "expected"), NESTED)
def test_nested(sub: str, sup: str, expected: bool) -> None:
    assert nested(sub, sup) is expected


# runtime-utils pkg/registries/registries_test.go: TestIsValidRegistriesConfScope
@pytest.mark.parametrize(("scope", "valid"), [
    ("example.com", True), ("*.example.com", True), ("**.example.com", False),
    ("example.*.com", False), ("*.example.com/foo/bar", False), ("*.example.com:foo", False),
    ("*.example.com/foo:sha@bar", False), ("*.example.com.*.bar.com", False),
    ("*example.com", False), ("*/example.com", False), ("*.*example.com", False), ("", False),
])
def test_valid_registries_conf_scope(scope: str, valid: bool) -> None:
    assert valid_registries_conf_scope(scope) is valid


# Derived from the source and mirror patterns (the CRD validation) of openshift/api
# config/v1/types_image_digest_mirror_set.go, not from an upstream test.
GRAMMAR = [
    ("quay.io", True, True), ("quay.io:443", True, True), ("localhost", True, True),
    ("localhost:5000/repo", True, True), ("10.0.0.1:5000/ns/repo", True, True),
    ("Quay.IO/ns", True, True), ("quay.io/MyRepo", False, False),
    ("quay.io/my--repo", True, True), ("quay.io/my__repo", True, True),
    ("quay.io/my___repo", False, False), ("quay.io/my._repo", False, False),
    ("quay.io/-repo", False, False), ("quay.io/ns/", False, False),
    ("*.example.com", True, False), ("*.example.com:443", False, False),
    ("*.example.com/ns", False, False), ("quay.io/ns/repo:tag", False, False),
    ("quay.io/ns/repo@sha256:abc", False, False), ("registry_x.io", False, False),
    ("[::1]:5000", False, False), ("quay.io/" + "a" * 30 + "!", False, False),
]


@pytest.mark.parametrize(("text", "source", "mirror"), GRAMMAR)
def test_crd_grammar(text: str, source: bool, mirror: bool) -> None:
    assert (valid_source(text), valid_mirror(text)) == (source, mirror)


def test_crd_grammar_is_linear_on_bad_input() -> None:
    import time

    started = time.monotonic()
    assert not valid_mirror("quay.io/" + "a-" * 5000 + "!")
    assert time.monotonic() - started < 0.5


# MCO pkg/controller/container-runtime-config/helpers_test.go: TestValidateRegistriesConfScopes,
# plus cases derived from validateRegistriesConfScopes and mirrorsAdjustedForNestedScope.
VALIDATION = [
    (crs(insecure=[""], blocked=["*.block.com"]),
     'image.yaml: Image/cluster: spec.registrySources: invalid entry for insecure registries ""'),
    (crs(insecure=["*.insecure.com"], blocked=[""], idms=[SETS]),
     'invalid entry for blocked registries ""'),
    # found by the fuzz run: this one did not name the file
    (crs(allowed=["exam*ple.com"]),
     'image.yaml: Image/cluster: spec.registrySources: invalid entry for allowed registries '
     '"exam*ple.com"'),
    (crs(allowed=["a.io"], blocked=["b.io"]),
     "image.yaml: Image/cluster: spec.registrySources: invalid images config: only one of"),
    (crs(idms=[[{"source": "", "mirrors": ["blocked.com/ns-b1"]}]]),
     'invalid format for source ""'),
    (crs(idms=[[{"source": "insecure.com/ns-i1", "mirrors": ["", "other.com/ns-o1"]}]]),
     'invalid format for mirror ""'),
    (crs(icsp=[[{"source": "*.insecure.com/ns-i1", "mirrors": ["other.com/ns-o1"]}]]),
     'invalid format for source "*.insecure.com/ns-i1"'),
    (crs(icsp=[[{"source": "*.insecure.com", "mirrors": ["*.other.com/ns-o1"]}]]),
     'invalid format for mirror "*.other.com/ns-o1"'),
    (crs(icsp=[[{"source": "insecure.com/ns-i1 ", "mirrors": ["other.com/ns-o1"]}]]),
     'invalid format for source "insecure.com/ns-i1 "'),
    (crs(icsp=[[{"source": "insecure.com/ns-i1", "mirrors": ["other.com/ns-o1  "]}]],
         idms=[[{"source": "insecure.com/ns-i1", "mirrors": ["blocked.com/ns-b1"],
                 "policy": "NeverContactSource"}, SETS[1], SETS[2]]]),
     'conflicting mirrorSourcePolicy is set for the same source "insecure.com/ns-i1"'),
    (crs(idms=[[{"source": "src.io", "mirrors": [], "policy": "NeverContactSource"}],
               [{"source": "src.io", "mirrors": ["m.io"]}]]),
     'conflicting mirrorSourcePolicy is set for the same source "src.io"'),
    (crs(idms=[[{"source": "src.io", "mirrors": ["src.io", "m.io"],
                 "policy": "NeverContactSource"}]]),
     'cannot set mirrorSourcePolicy: NeverContactSource if the source "src.io"'),
    # upstream's case without error: a wildcard source beside a namespace of the same host is fine
    (crs(insecure=["*.insecure.com"], blocked=["*.block.com"],
         idms=[[{"source": "*.insecure.com", "mirrors": ["other.com/ns-o1"]},
                {"source": "insecure.com/ns-i1", "mirrors": ["other.com/ns-o1"]}]]), None),
    (crs(insecure=["foo.example.com"], idms=[[{"source": "*.example.com",
                                               "mirrors": ["mirror.local/ex"]}]]),
     'internal error: mirrorsAdjustedForNestedScope for a wildcard scope "*.example.com"'),
]


@pytest.mark.parametrize(("node_crs", "error"), VALIDATION)
def test_validation(node_crs: ClusterCRs, error: str | None) -> None:
    if error is None:
        render(node_crs)
        return
    with pytest.raises(ConfigError) as caught:
        render(node_crs)
    assert error in str(caught.value)


def test_d_v1_u_e07_input_is_refused_by_the_operator() -> None:
    """runtime-utils pkg/registries/registries_test.go: TestEditRegistriesConfig, case
    "mirrorSourcePolicy": the library accepts its input, the MCO's validateRegistriesConfScopes
    refuses it."""
    node_crs = crs(idms=[_ab("digest", "a", "b", "c", policy="NeverContactSource")[:1]
                         + _ab("digest", "b", "c")],
                   itms=[_ab("tag", "b", policy="NeverContactSource")])
    with pytest.raises(ConfigError, match=r'the same source "registry-b\.com"'):
        render(node_crs)


IA = [{"type": "insecureAcceptAnything"}]
RJ = [{"type": "reject"}]
RELEASE = "release-reg.io/image/release@sha256:" + "a" * 64

# MCO pkg/controller/container-runtime-config/helpers_test.go: TestUpdatePolicyJSON
POLICIES = [
    ("U-P2", {"allowed": ["allow.io", "*.allowed-example.com"]}, RJ,
     {"allow.io": IA, "*.allowed-example.com": IA}, None),
    ("U-P3", {"blocked": ["block.com", "*.blocked-example.com"]}, IA,
     {"block.com": RJ, "*.blocked-example.com": RJ}, None),
    ("U-P7", {"allowed": ["allow.io", "allow.io/namespace1/namespace2",
                          "allowed-example.com/namespace1/namespace2/namespace3"]}, RJ,
     {"allow.io": IA, "allow.io/namespace1/namespace2": IA,
      "allowed-example.com/namespace1/namespace2/namespace3": IA},
     ["allowed-example.com/namespace1/namespace2/namespace3"]),
    ("U-P8", {"blocked": ["block.com", "block.com/namespace1/namespace2",
                          "blocked-example.com/namespace1/namespace2/namespace3"]}, IA,
     {"block.com": RJ, "block.com/namespace1/namespace2": RJ,
      "blocked-example.com/namespace1/namespace2/namespace3": RJ},
     ["blocked-example.com/namespace1/namespace2/namespace3"]),
]


@pytest.mark.parametrize(("vector", "lists", "default", "docker", "not_atomic"), POLICIES,
                         ids=[p[0] for p in POLICIES])
def test_policy_json(vector: str, lists: dict[str, list[str]], default: list[Any],
                     docker: dict[str, Any], not_atomic: list[str] | None) -> None:
    node_crs = crs(allowed=lists.get("allowed"), blocked=lists.get("blocked"))
    data = render(node_crs).files[POLICY_JSON]
    policy = json.loads(data)
    assert policy["default"] == default
    assert policy["transports"]["docker"] == docker
    atomic = {k: v for k, v in docker.items() if k not in (not_atomic or [])}
    assert policy["transports"]["atomic"] == atomic
    assert policy["transports"]["docker-daemon"] == {"": IA}
    assert data == json.dumps(policy, indent=2, sort_keys=True).encode()
    assert not data.endswith(b"\n")


# U: MCO pkg/controller/container-runtime-config/helpers_test.go:
# TestGetValidBlockAndAllowedRegistries;
# U-B10, U-B11: MCO container_runtime_config_controller_test.go: TestRegistriesValidation;
# D-P1: from getValidBlockedAndAllowedRegistries with a release image referenced by tag.
PAYLOAD = [
    # id, release, blocked, idms, registries blocked, policy blocked, allowed, dropped?
    ("U-B1", "payload-reg.io/release-image@D1", ["block.io", "block-2.io"], [],
     ["block.io", "block-2.io"], ["block.io", "block-2.io"], [], False),
    ("U-B3", "payload-reg.io/release-image@D1", ["block.io", "payload-reg.io", "block-2.io"],
     [[{"source": "src.io/payload", "mirrors": ["mirror-1.io/payload"]}]],
     ["block.io", "block-2.io"], ["block.io", "block-2.io"], [], True),
    ("U-B4", "payload-reg.io/release-image@D1", ["block.io", "payload-reg.io", "block-2.io"],
     [[{"source": "payload-reg.io/release-image", "mirrors": ["mirror-1.io/payload",
                                                             "mirror-2.io/payload"]}]],
     ["block.io", "payload-reg.io", "block-2.io"], ["block.io", "payload-reg.io", "block-2.io"],
     ["payload-reg.io/release-image"], False),
    ("U-B5", "quay.io/openshift-release-dev@D1", ["quay.io", "block.io/openshift-release-dev"],
     [[{"source": "quay.io", "mirrors": ["block.io"]}]],
     ["block.io/openshift-release-dev"], ["block.io/openshift-release-dev"], [], True),
    ("U-B6", "quay.io/openshift-release-dev@D1", ["quay.io", "block.io"],
     [[{"source": "quay.io/openshift-release-dev", "mirrors": ["block.io/openshift-release-dev"]}]],
     ["block.io"], ["block.io"], [], True),
    ("U-B10", "blah.io/payload/myimage@D1", ["blah.io", "docker.io"],
     [[{"source": "blah.io/payload", "mirrors": ["mirror-1.io/payload", "mirror-2.io/payload"]}]],
     ["blah.io", "docker.io"], ["blah.io", "docker.io"], ["blah.io/payload/myimage"], False),
    ("U-B11", "blah.io/payload/myimage@D1", ["blah.io/payload", "docker.io"],
     [[{"source": "blah.io", "mirrors": ["mirror-1.io", "mirror-2.io"]}]],
     ["blah.io/payload", "docker.io"], ["blah.io/payload", "docker.io"],
     ["blah.io/payload/myimage"], False),
    ("D-P1", "test.io/myuser/myimage:test", ["test.io"],
     [[{"source": "test.io/myuser", "mirrors": ["mirror.io/myuser"]}]], [], [], [], True),
]


@pytest.mark.parametrize(("vector", "release", "blocked", "idms", "rb", "pb", "allowed",
                          "dropped"), PAYLOAD, ids=[p[0] for p in PAYLOAD])
def test_payload_filtering(vector: str, release: str, blocked: list[str], idms: Entries,
                           rb: list[str], pb: list[str], allowed: list[str],
                           dropped: bool) -> None:
    release = release.replace("@D1", "@sha256:" + "4" * 64)
    result = filter_blocked_for_payload(crs(blocked=blocked, idms=idms), release)
    assert (result.registries_blocked, result.policy_blocked, result.allowed) == (rb, pb, allowed)
    assert bool(result.dropped) is dropped


def test_d_p2_two_blocked_scopes_holding_the_payload_fail_the_sync() -> None:
    """Derived from getValidBlockedAndAllowedRegistries (the payload is allowed twice) and
    updatePolicyJSON (allowed beside blocked is refused): the whole sync fails."""
    node_crs = crs(blocked=["quay.io", "quay.io/openshift-release-dev"],
                   idms=[[{"source": "quay.io/openshift-release-dev",
                           "mirrors": ["mirror.local/ocp"]}]])
    with pytest.raises(ConfigError, match="only one of AllowedRegistries or BlockedRegistries"):
        render(node_crs, RenderOptions(
            release_image="quay.io/openshift-release-dev/ocp-release@sha256:" + "a" * 64))


def test_d_p3_block_quay_mirror_the_payload() -> None:
    """Derived from getValidBlockedAndAllowedRegistries and EditRegistriesConfig: the supported
    disconnected pattern, quay.io blocked and the payload mirrored."""
    node_crs = crs(blocked=["quay.io"], idms=[[{"source": "quay.io/openshift-release-dev",
                                                "mirrors": ["mirror.local/ocp"]}]])
    options = {"release_image": "quay.io/openshift-release-dev/ocp-release@sha256:" + "a" * 64}
    assert notation(node_crs, **options) == [
        {"location": "quay.io/openshift-release-dev", "blocked": True,
         "mirrors": ["mirror.local/ocp D"]},
        {"location": "quay.io", "blocked": True}]
    policy = json.loads(render(node_crs, RenderOptions(release_image=options["release_image"]))
                        .files[POLICY_JSON])
    expected = {"quay.io": RJ, "quay.io/openshift-release-dev/ocp-release": IA}
    assert policy["default"] == IA
    assert policy["transports"]["docker"] == expected == policy["transports"]["atomic"]


U_E02_BYTES = b'''unqualified-search-registries = ["registry.access.redhat.com", "docker.io"]
short-name-mode = ""
additional-layer-store-auth-helper = ""

[[registry]]
  prefix = ""
  location = "blocked.com"
  blocked = true

[[registry]]
  prefix = ""
  location = "common.com"
  insecure = true
  blocked = true

[[registry]]
  prefix = ""
  location = "docker.io"
  blocked = true

[[registry]]
  prefix = ""
  location = "registry.access.redhat.com"
  insecure = true

[[registry]]
  prefix = ""
  location = "insecure.com"
  insecure = true
'''


def test_registries_conf_bytes() -> None:
    node = render(crs(insecure=["registry.access.redhat.com", "insecure.com", "common.com"],
                      blocked=["blocked.com", "common.com", "docker.io"]))
    assert node.files[REGISTRIES_CONF] == U_E02_BYTES
    older = render(crs(insecure=["insecure.com"]), RenderOptions(ocp_version=(4, 18)))
    assert older.files[REGISTRIES_CONF].splitlines()[:2] == [
        b'unqualified-search-registries = ["registry.access.redhat.com", "docker.io"]',
        b'short-name-mode = ""']
    assert b"additional-layer-store-auth-helper" not in older.files[REGISTRIES_CONF]


def test_templates_stay_when_nothing_forces_regeneration() -> None:
    node = render(crs())
    assert node.files[REGISTRIES_CONF] == TEMPLATE_REGISTRIES_CONF
    assert node.files[POLICY_JSON].startswith(b'{\n    "default": [')
    assert not node.regenerated[REGISTRIES_CONF] and not node.regenerated[POLICY_JSON]
    assert render(crs(insecure=[])).regenerated[REGISTRIES_CONF]  # present, even empty
    assert render(crs(idms=[[]])).regenerated[REGISTRIES_CONF]  # an IDMS with an empty spec
