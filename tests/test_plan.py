"""Pull plans: the ordered sources for a reference (containers/image
pkg/sysregistriesv2/system_registries_v2.go: Registry.PullSourcesFromReference and
docker/docker_image_src.go: newImageSource).

A plan is written as `[src, ...]`; `(i)` marks an insecure source, `(B)` a blocked one.
"""

from __future__ import annotations

import pytest

from mirrorlab.proxy.matching import RewriteError
from mirrorlab.proxy.plan import PullPlan, resolve_sources
from mirrorlab.proxy.reference import parse_docker_reference

from .conftest import DIGEST, LoadConf


def render(plan: PullPlan) -> list[str]:
    return [
        str(s.reference) + (" (i)" if s.insecure else "") + (" (B)" if s.blocked else "")
        for s in plan.sources
    ]


def _psr_entry(registry: str, prefix: str, mirror_settings: list[str], mbdo: bool = False) -> str:
    text = f'[[registry]]\nprefix = "{registry}/{prefix}"\nlocation = "{registry}/bar"\n'
    if mbdo:
        text += "mirror-by-digest-only = true\n"
    for number, setting in enumerate(mirror_settings, start=1):
        text += f'[[registry.mirror]]\nlocation = "mirror-{number}.{registry}"\n'
        if number == 2 and registry == "registry-a.com":
            text += "insecure = true\n"
        if setting:
            text += f'pull-from-mirror = "{setting}"\n'
    return text


# containers/image pkg/sysregistriesv2/testdata/pull-sources-from-reference.conf, rebuilt from its
# description.
F_PSR = "\n".join([
    _psr_entry("registry-a.com", "foo", ["", ""]),
    _psr_entry("registry-b.com", "foo", ["", ""], mbdo=True),
    _psr_entry("registry-b.com", "baz", ["digest-only", "digest-only"]),
    _psr_entry("registry-c.com", "baz", ["", "digest-only"]),
    _psr_entry("registry-d.com", "baz", ["", ""], mbdo=True),
    _psr_entry("registry-e.com", "baz", ["tag-only", "tag-only"]),
    _psr_entry("registry-f.com", "baz", ["", "tag-only"]),
    _psr_entry("registry-g.com", "baz", ["digest-only", "tag-only", "", "all"]),
])

PSR = [
    # containers/image system_registries_v2_test.go: TestPullSourcesFromReference:
    # logical prefix, mirrors used by a digest pull, mirrors used by a tag pull
    ("registry-a.com/foo", [1, 2], [1, 2]),
    ("registry-b.com/foo", [1, 2], []),
    ("registry-b.com/baz", [1, 2], []),
    ("registry-c.com/baz", [1, 2], [1]),
    ("registry-d.com/baz", [1, 2], []),
    ("registry-e.com/baz", [], [1, 2]),
    ("registry-f.com/baz", [1], [1, 2]),
    ("registry-g.com/baz", [1, 3, 4], [2, 3, 4]),
]


@pytest.mark.parametrize(("prefix", "digest_mirrors", "tag_mirrors"), PSR)
def test_pull_sources_per_mirror_settings(load_conf: LoadConf, prefix: str,
                                          digest_mirrors: list[int],
                                          tag_mirrors: list[int]) -> None:
    config = load_conf(F_PSR)
    registry = prefix.split("/")[0]
    for suffix, mirrors in ((f"@{DIGEST}", digest_mirrors), (":aaa", tag_mirrors)):
        plan = resolve_sources(config, parse_docker_reference(f"{prefix}/image{suffix}"))
        expected = [f"mirror-{n}.{registry}/image{suffix}" for n in mirrors]
        expected.append(f"{registry}/bar/image{suffix}")
        assert [str(s.reference) for s in plan.sources] == expected
        assert [s.mirror for s in plan.sources] == [True] * len(mirrors) + [False]
    insecure = [s.insecure for s in resolve_sources(
        config, parse_docker_reference(f"registry-a.com/foo/image@{DIGEST}")).sources]
    assert insecure == [False, True, False]


F_X = """
[[registry]]
location = "example.com"
[[registry.mirror]]
location = "mirror.io/ex"

[[registry]]
prefix = "docker.io/library"
location = "docker.io/library"
[[registry.mirror]]
location = "cache.local:5000/hub/library"
[[registry.mirror]]
location = "cache2.local/"
insecure = true

[[registry]]
location = "quay.io"
blocked = true
[[registry.mirror]]
location = "quay-mirror.local"

[[registry]]
prefix = "*.corp.example"
[[registry.mirror]]
location = "corpmirror.local/c"

[[registry]]
location = "a.corp.example"
insecure = true

[[registry]]
prefix = "foo.com/team"
location = "docker.io"

[[registry]]
prefix = "bar.com"
location = "internal.bar"
[[registry.mirror]]
location = "quay.io/barmirror"
"""

F_Y = """
[[registry]]
prefix = "example.com/foo"
location = "internal.com/bar"
blocked = true

[[registry]]
location = "secure.io"
blocked = true
mirror-by-digest-only = true
[[registry.mirror]]
location = "m.local"

[[registry]]
location = "reg.io"
[[registry.mirror]]
location = "m1.local"
pull-from-mirror = "tag-only"
[[registry.mirror]]
location = "m2.local"
pull-from-mirror = "digest-only"
[[registry.mirrors]]
location = "typo.local"
"""

F_HUB = """
[[registry]]
prefix = "docker.io"
location = "docker.io"
[[registry.mirror]]
location = "mirror.gcr.io"

[[registry]]
prefix = "docker.io/library"
location = "quay.io/libpod"
"""

D = DIGEST
PLANS = [
    # derived from PullSourcesFromReference and newImageSource (docker/docker_image_src.go):
    # fixture, logical input, plan
    ("", "quay.io/a/b", ["quay.io/a/b:latest"]),
    (F_X, "busybox", ["cache.local:5000/hub/library/busybox:latest",
                      "cache2.local/busybox:latest (i)", "docker.io/library/busybox:latest"]),
    (F_X, "docker.io/user/app:1", ["docker.io/user/app:1"]),
    (F_X, "quay.io/org/app:2", ["quay-mirror.local/org/app:2", "quay.io/org/app:2 (B)"]),
    (F_X, "a.corp.example/p:1", ["corpmirror.local/c/p:1", "a.corp.example/p:1"]),
    (F_X, "x.corp.example/p/q:3", ["corpmirror.local/c/p/q:3", "x.corp.example/p/q:3"]),
    (F_X, "foo.com/team/ns/app:1", ["docker.io/ns/app:1"]),
    (F_X, "bar.com/x/y:1", ["quay.io/barmirror/x/y:1 (B)", "internal.bar/x/y:1"]),
    (F_Y, "example.com/foo/img:1", ["internal.com/bar/img:1"]),
    (F_Y, "secure.io/a:1", ["secure.io/a:1 (B)"]),
    (F_Y, f"secure.io/a@{D}", [f"m.local/a@{D}", f"secure.io/a@{D} (B)"]),
    (F_Y, "reg.io/a:1", ["m1.local/a:1", "reg.io/a:1"]),
    (F_Y, f"reg.io/a@{D}", [f"m2.local/a@{D}", f"reg.io/a@{D}"]),
    (F_HUB, "alpine", ["quay.io/libpod/alpine:latest"]),
    (F_HUB, f"docker.io/library/alpine@{D}", [f"quay.io/libpod/alpine@{D}"]),
    (F_HUB, "nginxinc/nginx-unprivileged:1", ["mirror.gcr.io/nginxinc/nginx-unprivileged:1",
                                              "docker.io/nginxinc/nginx-unprivileged:1"]),
    (F_HUB, "index.docker.io/user/x:1", ["mirror.gcr.io/user/x:1", "docker.io/user/x:1"]),
]


@pytest.mark.parametrize(("fixture", "text", "expected"), PLANS)
def test_pull_plans(load_conf: LoadConf, fixture: str, text: str, expected: list[str]) -> None:
    assert render(resolve_sources(load_conf(fixture), parse_docker_reference(text))) == expected


PLAN_ERRORS = [
    # Endpoint.rewriteReference errors (a port carried into a mirror path, a non-canonical
    # docker.io result, a wildcard collapsing a port into a mirror path): the whole pull fails.
    (F_X, "example.com:5000/app:1"),
    (F_X, "foo.com/team/app:1"),
    (F_X, "y.x.corp.example:5000/p:3"),
]


@pytest.mark.parametrize(("fixture", "text"), PLAN_ERRORS)
def test_rewrite_errors_fail_the_whole_pull(load_conf: LoadConf, fixture: str, text: str) -> None:
    with pytest.raises(RewriteError):
        resolve_sources(load_conf(fixture), parse_docker_reference(text))


def test_blocked_by_names_the_governing_entry(load_conf: LoadConf) -> None:
    plan = resolve_sources(load_conf(F_X), parse_docker_reference("bar.com/x/y:1"))
    assert [s.blocked_by for s in plan.sources] == ["quay.io", None]
    assert plan.registry is not None and plan.registry.prefix == "bar.com"


def test_insecure_comes_from_the_endpoint_not_the_physical_match(load_conf: LoadConf) -> None:
    """A mirror under an insecure entry's name is still verified: only its own flag counts."""
    config = load_conf(
        """
        [[registry]]
        location = "src.io"
        [[registry.mirror]]
        location = "lab.local/m"
        [[registry]]
        location = "lab.local"
        insecure = true
        """
    )
    plan = resolve_sources(config, parse_docker_reference("src.io/a:1"))
    assert [s.insecure for s in plan.sources] == [False, False]


def test_docker_io_is_dialled_as_registry_1() -> None:
    from mirrorlab.proxy.registries_conf import RegistriesConf

    (source,) = resolve_sources(RegistriesConf(), parse_docker_reference("busybox")).sources
    assert (source.host, source.connect_host) == ("docker.io", "registry-1.docker.io")
