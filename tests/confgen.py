"""Random registries.conf files and references that hit the interesting corners.

Names come from a small pool so that prefixes collide, nest, nearly match, and rewrite into
each other's scopes. A few inputs are deliberately invalid (schemes, bad pull-from-mirror
values, conflicting flags, wildcards with paths) so that rejection is compared too.

Left out on purpose: trailing slashes on *mirror* locations and the V1 format, where the
installed skopeo 1.9.3 (containers/image 5.23) has bugs fixed in the releases nodes run;
`test_known_version_differences` pins those separately.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

HOSTS = ["a.io", "b.io", "x.a.io", "y.x.a.io", "example.com", "example.com:5000",
         "reg.example.com", "m1.local", "m2.local:5000", "docker.io", "quay.io", "localhost",
         "localhost:5000", "registry-1.docker.io"]
PATHS = ["", "/ns", "/ns/sub", "/library", "/nsx", "/n"]
WILDCARDS = ["*.a.io", "*.x.a.io", "*.example.com", "*.io", "*.local", "*.com"]
PULL_FROM_MIRROR = ["", "", "", "all", "digest-only", "tag-only"]
REPOS = ["app", "ns/app", "sub/app", "library/busybox", "busybox"]
DIGEST = "sha256:" + "c" * 64


@dataclass(frozen=True)
class Case:
    conf: str
    refs: tuple[str, ...]


def _location(rng: random.Random) -> str:
    return rng.choice(HOSTS) + rng.choice(PATHS)


def _entry(rng: random.Random, prefixes: list[str]) -> str:
    lines = ["[[registry]]"]
    roll = rng.random()
    if roll < 0.2:
        prefix = rng.choice(WILDCARDS)
        if rng.random() < 0.03:
            prefix += rng.choice(["/ns", ":5000"])  # invalid wildcard
        lines.append(f'prefix = "{prefix}"')
        location = "" if rng.random() < 0.5 else _location(rng)
    elif roll < 0.35:
        location = _location(rng)
        prefix = ""  # defaults to the location
    else:
        prefix = _location(rng)
        if rng.random() < 0.1:
            prefix = prefix[:-1]  # a near miss: "a.i", "example.com/n"
        lines.append(f'prefix = "{prefix}{"/" if rng.random() < 0.05 else ""}"')
        location = _location(rng) if rng.random() < 0.5 else prefix
    if location:
        scheme = "https://" if rng.random() < 0.01 else ""
        lines.append(f'location = "{scheme}{location}"')
    prefixes.append(prefix or location)
    for key in ("insecure", "blocked"):
        if rng.random() < 0.25:
            lines.append(f"{key} = true")
    mbdo = rng.random() < 0.15
    if mbdo:
        lines.append("mirror-by-digest-only = true")
    if rng.random() < 0.01:
        lines.append('pull-from-mirror = "all"')  # invalid at registry level
    for _ in range(rng.choice([0, 0, 1, 2, 3])):
        lines.append("[[registry.mirror]]")
        lines.append(f'location = "{_location(rng)}"')
        if rng.random() < 0.3:
            lines.append("insecure = true")
        value = rng.choice(PULL_FROM_MIRROR)
        if rng.random() < 0.02:
            value = "everything"
        if value and (not mbdo or rng.random() < 0.05):
            lines.append(f'pull-from-mirror = "{value}"')
    return "\n".join(lines)


def _ref_under(rng: random.Random, prefix: str) -> str:
    base = prefix.replace("*", rng.choice(["sub", "y.x", "q"]), 1)
    if rng.random() < 0.3:
        base = base.split("/", 1)[0]
    ref = f"{base}/{rng.choice(REPOS)}"
    return ref + (f"@{DIGEST}" if rng.random() < 0.5 else rng.choice([":v1", ""]))


def generate(seed: int) -> Case:
    rng = random.Random(seed)
    prefixes: list[str] = []
    entries = [_entry(rng, prefixes) for _ in range(rng.randint(1, 6))]
    refs = {_ref_under(rng, rng.choice(prefixes)) for _ in range(4)}
    refs.add(f"{_location(rng).lstrip('/')}/{rng.choice(REPOS)}:v2")
    refs.add(f"{rng.choice(REPOS)}@{DIGEST}")
    return Case("\n\n".join(entries) + "\n", tuple(sorted(refs)))
