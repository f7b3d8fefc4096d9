"""Differential tests against the current libraries, asked through the Go oracle.

The oracle (`tests/go_oracle.py`, built by `make setup`) links the newest containers/image
(`go.podman.io/image/v5`) and the operator's runtime-utils. On random inputs mirrorlab must
agree with it: the pull sources of each reference under a registries.conf and its drop-ins
(`sysregistriesv2.FindRegistry` + `PullSourcesFromReference`), with every flag, and the
refusals; the policy.json scope, requirement types and verdict for an unsigned image
(`signature.NewPolicyFromBytes`, `IsRunningImageAllowed`); and registries.conf as the
operator writes it from mirror sets (`registries.EditRegistriesConfig`), byte for byte.
More cases: MIRRORLAB_DIFF_CASES=10000 (each suite takes that many).

Where mirrorlab follows Debian's skopeo 1.9.3 (containers/image 5.23) and the current
library changed since, the difference is pinned by name in `KNOWN_VERSION_DIFFERENCES`.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mirrorlab.harness.images import RegistryClient, make_image
from mirrorlab.harness.net import free_port
from mirrorlab.harness.registry import RegistryProcess
from mirrorlab.proxy.errors import ConfigError
from mirrorlab.proxy.openshift.crs import load_crs
from mirrorlab.proxy.openshift.render import REGISTRIES_CONF, TEMPLATE_REGISTRIES_CONF, render
from mirrorlab.proxy.plan import resolve_sources
from mirrorlab.proxy.policy import evaluate_policy, parse_policy
from mirrorlab.proxy.reference import InvalidReference, parse_docker_reference
from mirrorlab.proxy.registries_conf import (
    RegistriesConf,
    RegistriesConfPaths,
    load_registries_conf,
)

from .confgen import DIGEST, generate
from .go_oracle import SOURCES, UPSTREAM, GoOracle, go_oracle

__all__ = ["go_oracle"]  # the fixture, imported for the tests below

CASES = int(os.environ.get("MIRRORLAB_DIFF_CASES", "300"))
BATCH = 100
SHOWN = 2
"""Disagreements printed in full per kind and failing batch (all are counted)."""

Source = tuple[str, bool, bool, str, bool, str]
"""reference, mirror, insecure, pull-from-mirror, blocked, blocked-by."""


def batches(total: int = CASES) -> list[range]:
    return [range(start, min(start + BATCH, total)) for start in range(0, total, BATCH)]


def _ids(value: range) -> str:
    return f"{value.start}-{value.stop - 1}"


# ---------------------------------------------------------------- versions


def _go_mod_requires() -> dict[str, str]:
    text = (SOURCES / "go.mod").read_text()
    return dict(re.findall(r"^\s+(\S+) (v\S+)", text, flags=re.MULTILINE))


def test_oracle_links_the_pinned_versions(go_oracle: GoOracle) -> None:
    """The binary was built from tests/oracle/go.mod; its answer names the versions."""
    modules = go_oracle.versions["modules"]
    required = _go_mod_requires()
    for name in UPSTREAM:
        assert modules.get(name) == required.get(name), (
            f"oracle links {name} {modules.get(name)}, go.mod pins {required.get(name)}: "
            "run `make setup`")
    assert go_oracle.versions["cgo"] == "0", go_oracle.versions
    assert "containers_image_openpgp" in go_oracle.versions["tags"], go_oracle.versions


# ---------------------------------------------------------------- resolution


@dataclass
class Mismatches:
    """Disagreements of one batch by kind, each with its input and both answers."""

    kinds: dict[str, list[str]] = field(default_factory=dict)
    compared: int = 0

    def add(self, what: str, **details: Any) -> None:
        lines = [what, *(f"  {key}: {value}" for key, value in details.items())]
        self.kinds.setdefault(what, []).append("\n".join(lines))

    def check(self, oracle: GoOracle) -> None:
        if self.kinds:
            counts = ", ".join(f"{what}: {len(items)}" for what, items in self.kinds.items())
            shown = "\n\n".join(item for items in self.kinds.values() for item in items[:SHOWN])
            raise AssertionError(
                f"disagreements with {oracle.pinned()} out of {self.compared} compared "
                f"({counts}):\n\n{shown}")


def _without_line(message: str) -> str:
    """mirrorlab places an entry's error on its line (`line N: `); upstream does not."""
    return re.sub(r"(?<=: )line \d+: ", "", message)


def ours_sources(config: RegistriesConf, text: str) -> tuple[list[Source] | None, str | None]:
    """mirrorlab's `resolve_sources` for `docker://text`: the sources, or the refusal."""
    try:
        plan = resolve_sources(config, parse_docker_reference(text))
    except (InvalidReference, ConfigError) as error:
        return None, str(error)
    return [(str(s.reference), s.mirror, s.insecure, s.pull_from_mirror, s.blocked,
             s.blocked_by or "") for s in plan.sources], None


def theirs_sources(result: dict[str, Any]) -> tuple[list[Source] | None, str | None]:
    if result.get("error"):
        return None, str(result["error"])
    return [(s["reference"], s["mirror"], s["insecure"], s["pull_from_mirror"], s["blocked"],
             s.get("blocked_by", "")) for s in result["sources"]], None


def compare_resolution(oracle: GoOracle, mismatches: Mismatches, conf_text: str,
                       paths: RegistriesConfPaths, refs: Sequence[str],
                       message_fix: tuple[tuple[str, str], ...] = ()) -> None:
    """One configuration: both refuse it with the same message, or agree per reference.
    `message_fix` rewrites mirrorlab's message for a named version difference."""
    answer = oracle.sources(refs, conf_path=paths.main, drop_in_dirs=paths.drop_in_dirs)
    their_error = answer.get("config_error")
    try:
        config = load_registries_conf(paths)
        our_error = None
    except ConfigError as error:
        our_error = str(error)
    if our_error is not None or their_error is not None:
        mismatches.compared += 1
        our_text = _without_line(our_error or "")
        for old, new in message_fix:
            our_text = our_text.replace(old, new)
        if our_error is None or their_error is None or our_text != their_error:
            mismatches.add("configuration refused differently", conf=conf_text,
                           mirrorlab=our_error, library=their_error)
        return
    for result in answer["results"]:
        mismatches.compared += 1
        text = result["input"]
        ours, our_ref_error = ours_sources(config, text)
        theirs, their_ref_error = theirs_sources(result)
        # mirrorlab's rewrite error also quotes the candidate reference after upstream's text.
        refused_alike = (our_ref_error is not None and their_ref_error is not None
                         and our_ref_error.startswith(their_ref_error))
        odd = [s for s in result["sources"] if s.get("error") and not s["blocked"]]
        if refused_alike or (ours is not None and ours == theirs and not odd):
            continue
        mismatches.add("sources differ", conf=conf_text, reference=text,
                       mirrorlab=ours if ours is not None else our_ref_error,
                       library=theirs if theirs is not None else their_ref_error,
                       **({"library_source_errors": odd} if odd else {}))


def _current_only(conf: str, rng: random.Random) -> str:
    """confgen leaves out what skopeo 1.9.3 gets wrong; the current library does not:
    trailing slashes on mirror locations come back here."""
    def slash(match: re.Match[str]) -> str:
        return match.group(0)[:-1] + '/"' if rng.random() < 0.15 else match.group(0)
    return re.sub(r'(?<=\[\[registry\.mirror\]\]\n)location = "[^"]*"', slash, conf)


@pytest.mark.parametrize("seeds", batches(), ids=_ids)
def test_sources_match_library(seeds: range, tmp_path: Path, go_oracle: GoOracle) -> None:
    """Random registries.conf files (tests/confgen.py) and references."""
    mismatches = Mismatches()
    for seed in seeds:
        case = generate(seed)
        conf_text = _current_only(case.conf, random.Random(seed))
        conf = tmp_path / f"case-{seed}.conf"
        conf.write_text(conf_text)
        compare_resolution(go_oracle, mismatches, conf_text,
                           RegistriesConfPaths(str(conf), True, ()), case.refs)
    mismatches.check(go_oracle)


DROP_IN_WORDING = ("loading drop-in registries configuration", "loading registries configuration")
"""Named version difference `drop-in-error-wording` (see KNOWN_VERSION_DIFFERENCES)."""


@pytest.mark.parametrize("seeds", batches(), ids=_ids)
def test_drop_ins_match_library(seeds: range, tmp_path: Path, go_oracle: GoOracle) -> None:
    """A main file and drop-ins (each a random confgen file): merged by prefix, in order."""
    mismatches = Mismatches()
    for seed in seeds:
        rng = random.Random(seed)
        parts = [generate(seed * 7 + n) for n in range(rng.randint(2, 4))]
        work = tmp_path / f"case-{seed}"
        drop_dir = work / "registries.conf.d"
        drop_dir.mkdir(parents=True)
        main = work / "registries.conf"
        main.write_text(parts[0].conf)
        shown = [f"--- {main.name}\n{parts[0].conf}"]
        for number, part in enumerate(parts[1:]):
            name = rng.choice(["10-a.conf", "20-b.conf", "05-c.conf", "99-z.conf", "x.conf"])
            name = f"{number}{name}"
            (drop_dir / name).write_text(part.conf)
            shown.append(f"--- {drop_dir.name}/{name}\n{part.conf}")
        (drop_dir / "ignored.txt").write_text("not toml [[[")
        refs = sorted({ref for part in parts for ref in part.refs})
        compare_resolution(go_oracle, mismatches, "\n".join(shown),
                           RegistriesConfPaths(str(main), True, (str(drop_dir),)), refs,
                           (DROP_IN_WORDING,))
    mismatches.check(go_oracle)


# ---------------------------------------------------------------- known differences


V1_CONF = '[registries.search]\nregistries = ["a.io"]\n[registries.block]\nregistries = ["b.io"]\n'


@dataclass(frozen=True)
class VersionDifference:
    """Where mirrorlab keeps containers/image 5.23's behaviour (Debian's skopeo 1.9.3) and
    the current library changed: the input, what each says, and the release that changed."""

    name: str
    changed_in: str
    conf: str
    drop_in: str | None
    ref: str
    mirrorlab: str
    library: str


KNOWN_VERSION_DIFFERENCES = [
    VersionDifference(
        "v1-format", "go.podman.io/image/v5 v5.40.0", V1_CONF, None, "b.io/app:1",
        mirrorlab="sources: b.io/app:1 (blocked)",
        library="registries.conf must be in v2 format but is in v1"),
    VersionDifference(
        "v1-format-drop-in", "go.podman.io/image/v5 v5.40.0", "", V1_CONF, "b.io/app:1",
        mirrorlab="registry must be in v2 format but is in v1",
        library="registries.conf must be in v2 format but is in v1"),
    VersionDifference(
        "drop-in-error-wording", "go.podman.io/image/v5 v5.40.0", "",
        '[[registry]]\nlocation = "https://a.io"\n', "a.io/app:1",
        mirrorlab="loading drop-in registries configuration",
        library="loading registries configuration"),
]


def _explain(paths: RegistriesConfPaths, ref: str) -> str:
    try:
        config = load_registries_conf(paths)
    except ConfigError as error:
        return str(error)
    sources, refused = ours_sources(config, ref)
    return refused or "sources: " + ", ".join(
        s[0] + (" (blocked)" if s[4] else "") for s in sources or [])


@pytest.mark.parametrize("difference", KNOWN_VERSION_DIFFERENCES, ids=lambda d: d.name)
def test_known_version_differences(difference: VersionDifference, tmp_path: Path,
                                   go_oracle: GoOracle) -> None:
    """Each named difference still holds on both sides; when one goes, the note is stale."""
    main = tmp_path / "registries.conf"
    main.write_text(difference.conf)
    drop_dir = tmp_path / "registries.conf.d"
    drop_dir.mkdir()
    if difference.drop_in is not None:
        (drop_dir / "50-drop.conf").write_text(difference.drop_in)
    paths = RegistriesConfPaths(str(main), True, (str(drop_dir),))
    ours = _explain(paths, difference.ref)
    answer = go_oracle.sources([difference.ref], conf_path=str(main),
                               drop_in_dirs=[str(drop_dir)])
    theirs = answer.get("config_error") or json.dumps(answer["results"])
    assert difference.mirrorlab in ours, f"{difference.name}: mirrorlab now says {ours}"
    assert difference.library in theirs, f"{difference.name}: the library now says {theirs}"
    assert difference.mirrorlab not in theirs, f"{difference.name}: the library agrees now"


def test_blocked_message_wording(tmp_path: Path, go_oracle: GoOracle) -> None:
    """Named difference `blocked-message-wording` (go.podman.io/image/v5 v5.40.0): the
    blocked error names its files as `in MAIN or DIR` in mirrorlab (5.23's words) and as
    `in one of ["MAIN" "DIR"]` in the current library."""
    main, drop_dir = tmp_path / "registries.conf", tmp_path / "registries.conf.d"
    main.write_text('[[registry]]\nlocation = "b.io"\nblocked = true\n')
    drop_dir.mkdir()
    paths = RegistriesConfPaths(str(main), True, (str(drop_dir),))
    ours = load_registries_conf(paths).blocked_origin
    answer = go_oracle.sources(["b.io/app:1"], conf_path=str(main), drop_in_dirs=[str(drop_dir)])
    theirs = answer["results"][0]["sources"][0]["error"]
    assert ours == f"{main} or {drop_dir}"
    assert theirs == f'registry b.io is blocked in one of ["{main}" "{drop_dir}"]'


def test_trailing_slash_mirror_agrees_with_current_library(tmp_path: Path,
                                                           go_oracle: GoOracle) -> None:
    """skopeo 1.9.3 fails every pull through `m.local/` (the pinned skopeo difference);
    the current library strips the slash, as mirrorlab does."""
    conf = tmp_path / "r.conf"
    conf.write_text('[[registry]]\nlocation = "src.io"\n[[registry.mirror]]\n'
                    'location = "m.local/"\n')
    result = go_oracle.sources(["src.io/a:1"], conf_path=str(conf))["results"][0]
    assert [s["reference"] for s in result["sources"]] == ["m.local/a:1", "src.io/a:1"]
    ours, _ = ours_sources(load_registries_conf(RegistriesConfPaths(str(conf), True, ())),
                           "src.io/a:1")
    assert ours is not None and [s[0] for s in ours] == ["m.local/a:1", "src.io/a:1"]


# ---------------------------------------------------------------- policy.json


POLICY_SCOPES = ["", "a.io", "a.io/ns", "a.io/ns/app", "a.io/ns/app:v1", f"a.io/ns/app@{DIGEST}",
                 "*.io", "*.a.io", "x.a.io", "docker.io", "docker.io/library",
                 "docker.io/library/busybox", "localhost:5000", "localhost:5000/app",
                 "localhost", "*.local", "m1.local/ns", "example.com:5000/ns", "*.com"]
REQUIREMENTS: list[dict[str, Any]] = [
    {"type": "insecureAcceptAnything"},
    {"type": "reject"},
    {"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/nonexistent/key.gpg"},
    {"type": "signedBy", "keyType": "GPGKeys", "keyPaths": ["/nonexistent/a.gpg"],
     "signedIdentity": {"type": "matchRepository"}},
    {"type": "sigstoreSigned", "keyPath": "/nonexistent/key.pub"},
    {"type": "signedBaseLayer",
     "baseLayerIdentity": {"type": "exactRepository", "dockerRepository": "a.io/base"}},
]
BROKEN_REQUIREMENTS: list[Any] = [
    {"type": "insecureAcceptAnything", "extra": 1},
    {"type": "nope"},
    {"type": "signedBy", "keyType": "GPGKeys"},
    {"type": "signedBy", "keyType": "Bad", "keyPath": "/k"},
    {"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/k", "keyData": "eA=="},
    {"type": "sigstoreSigned"},
    {"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/k",
     "signedIdentity": {"type": "exactReference", "dockerReference": "a.io/x"}},
    {},
    "reject",
]
POLICY_REFS = ["a.io/ns/app:v1", f"a.io/ns/app@{DIGEST}", "a.io/ns/app", "a.io/ns/app:v2",
               "x.a.io/app", "y.x.a.io/ns/app:v2", "busybox", "library/busybox:1",
               "docker.io/library/busybox", "localhost:5000/app", "localhost/app",
               "m1.local/ns/sub/app", "example.com:5000/ns/app", "b.io/q", "a.io/nsx/app",
               "A.io/x", f"a.io/ns/app:v1@{DIGEST}", "quay.io/org/app@sha256:abc"]


def random_policy(rng: random.Random) -> str:
    """A policy.json, mostly valid; now and then one of the ways it can be refused."""
    def requirements() -> list[Any]:
        reqs = [rng.choice(REQUIREMENTS) for _ in range(rng.choice([1, 1, 1, 2, 3]))]
        if rng.random() < 0.03:
            reqs[rng.randrange(len(reqs))] = rng.choice(BROKEN_REQUIREMENTS)
        return [] if rng.random() < 0.01 else reqs

    policy: dict[str, Any] = {"default": requirements()}
    transports: dict[str, Any] = {}
    if rng.random() < 0.85:
        transports["docker"] = {scope: requirements()
                                for scope in rng.sample(POLICY_SCOPES, rng.randint(0, 6))}
    if rng.random() < 0.1:
        transports["atomic"] = {rng.choice(["a.io/ns/app", "a.io/ns/app:v1", "a.io:x/y"]):
                                requirements()}
    if rng.random() < 0.1:
        transports[rng.choice(["oci", "dir", "docker-daemon"])] = {"": requirements()}
    if transports or rng.random() < 0.5:
        policy["transports"] = transports
    roll = rng.random()
    if roll < 0.02:
        del policy["default"]
    elif roll < 0.04:
        policy["extra"] = True
    text = json.dumps(policy, indent=rng.choice([None, 2]))
    if rng.random() < 0.02:
        text = text.replace('"default"', '"default": [], "default"', 1)  # duplicate key
    if rng.random() < 0.01:
        text = text[: rng.randrange(1, len(text))]  # truncated
    return text


def _policy_refs(rng: random.Random) -> list[str]:
    return rng.sample(POLICY_REFS, 6)


def _scope_prefix_removed(message: str) -> str:
    """mirrorlab names the list an error is in (`transports.docker["a.io"]: `, the scope
    as Go's %q writes it) and the line of a syntax error (`line 3: `); upstream does not."""
    message = re.sub(r'^transports\.[^\[]*\["(?:[^"\\]|\\.)*"\]: ', "", message)
    return re.sub(r"^line \d+: ", "", message)


def compare_policy(oracle: GoOracle, mismatches: Mismatches, seed: int, *,
                   messages: bool) -> None:
    """One random policy.json: both refuse it, or agree per reference on the scope, the
    requirement types and the verdict for an unsigned image. With `messages`, the parse
    error and the reject requirement's message must also read the same."""
    rng = random.Random(seed)
    text, refs = random_policy(rng), _policy_refs(rng)
    answer = oracle.policy(text, refs)
    mismatches.compared += 1
    try:
        policy = parse_policy(text)
        our_error = None
    except ConfigError as error:
        our_error = str(error)
    their_error = answer["parse_error"]
    if our_error is not None or their_error is not None:
        if (our_error is None) != (their_error is None):
            mismatches.add("policy refused by one side only", policy=text,
                           mirrorlab=our_error, library=their_error)
        elif messages and _scope_prefix_removed(our_error or "") != their_error:
            mismatches.add("policy error message differs", policy=text,
                           mirrorlab=our_error, library=their_error)
        return
    for result in answer["results"]:
        mismatches.compared += 1
        try:
            decision = evaluate_policy(policy, parse_docker_reference(result["input"]))
        except InvalidReference as error:
            if not result.get("error"):
                mismatches.add("reference refused by mirrorlab only", policy=text,
                               reference=result["input"], mirrorlab=str(error), library=result)
            continue
        if result.get("error"):
            mismatches.add("reference refused by the library only", policy=text,
                           reference=result["input"], library=result["error"])
            continue
        ours = (decision.scope, [r.type for r in decision.requirements], decision.allowed)
        theirs = (result["scope"], result["types"], result["allowed"])
        if ours != theirs:
            mismatches.add("policy decision differs", policy=text, reference=result["input"],
                           mirrorlab=(*ours, decision.reason),
                           library=(*theirs, result.get("reason")))
        elif messages and ours[1][:1] == ["reject"] and decision.reason != result["reason"]:
            mismatches.add("reject message differs", reference=result["input"],
                           mirrorlab=decision.reason, library=result["reason"])


@pytest.mark.parametrize("seeds", batches(), ids=_ids)
def test_policy_matches_library(seeds: range, go_oracle: GoOracle) -> None:
    """Refusals, scope lookup, requirement types and the verdict for an unsigned image."""
    mismatches = Mismatches()
    for seed in seeds:
        compare_policy(go_oracle, mismatches, seed, messages=False)
    mismatches.check(go_oracle)


@pytest.mark.parametrize("seeds", batches(), ids=_ids)
def test_policy_messages_match_library(seeds: range, go_oracle: GoOracle) -> None:
    """The same cases, and the messages a user reads: why policy.json is refused, and the
    `reject` requirement's verdict (upstream names the image in its familiar form)."""
    mismatches = Mismatches()
    for seed in seeds:
        compare_policy(go_oracle, mismatches, seed, messages=True)
    mismatches.check(go_oracle)


# ---------------------------------------------------------------- rendering


RENDER_SOURCES = ["quay.io", "quay.io/ns", "quay.io/ns/app", "registry.redhat.io",
                  "registry.redhat.io/ubi9", "example.com:5000/ns", "*.example.com",
                  "mirror.example.com/ns"]
RENDER_MIRRORS = ["mirror.example.com", "mirror.example.com/ns", "m1.local:5000/a", "m2.local",
                  "quay.io/mirror", "registry.redhat.io", "insecure.io/m", "m3.local/x/y"]
INSECURE_SCOPES = ["insecure.io", "m2.local", "*.local", "quay.io/ns", "*.example.com",
                   "mirror.example.com/ns", "registry.redhat.io/ubi9"]
BLOCKED_SCOPES = ["blocked.io", "quay.io/ns/app", "*.example.com", "registry.redhat.io",
                  "m1.local:5000", "quay.io"]
API_KINDS = {"ImageDigestMirrorSet": ("config.openshift.io/v1", "imageDigestMirrors"),
             "ImageTagMirrorSet": ("config.openshift.io/v1", "imageTagMirrors"),
             "ImageContentSourcePolicy": ("operator.openshift.io/v1alpha1",
                                          "repositoryDigestMirrors")}


def random_crs(rng: random.Random) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """Mirror-set objects as the API serves them, and the image config's lists."""
    objects = []
    for kind, (api, key) in API_KINDS.items():
        for number in range(rng.choice([0, 0, 1, 1, 2])):
            entries = []
            for _ in range(rng.randint(1, 3)):
                source = rng.choice(RENDER_SOURCES)
                mirrors = rng.sample(RENDER_MIRRORS, rng.choice([0, 1, 1, 2, 2, 3]))
                if rng.random() < 0.1:
                    mirrors.insert(rng.randint(0, len(mirrors)), source)
                entry: dict[str, Any] = {"source": source, "mirrors": mirrors}
                if kind != "ImageContentSourcePolicy" and rng.random() < 0.3:
                    entry["mirrorSourcePolicy"] = rng.choice(
                        ["NeverContactSource", "AllowContactingSource"])
                entries.append(entry)
            objects.append({"apiVersion": api, "kind": kind,
                            "metadata": {"name": f"{kind.lower()}-{number}"},
                            "spec": {key: entries}})
    lists: dict[str, list[str]] = {}
    if rng.random() < 0.5:
        lists["insecureRegistries"] = rng.sample(INSECURE_SCOPES, rng.randint(0, 3))
    if rng.random() < 0.4:
        lists["blockedRegistries"] = rng.sample(BLOCKED_SCOPES, rng.randint(0, 2))
    return objects, lists


@pytest.mark.parametrize("seeds", batches(), ids=_ids)
def test_render_matches_runtime_utils(seeds: range, tmp_path: Path,
                                      go_oracle: GoOracle) -> None:
    """registries.conf from random IDMS/ITMS/ICSP and image-config lists, byte for byte
    against runtime-utils between the operator's TOML decode and encode. Sets the API or
    the operator's own validation refuses never reach EditRegistriesConfig: not compared."""
    mismatches = Mismatches()
    refused = 0
    for seed in seeds:
        rng = random.Random(seed)
        objects, lists = random_crs(rng)
        docs = list(objects)
        if lists or rng.random() < 0.2:
            docs.append({"apiVersion": "config.openshift.io/v1", "kind": "Image",
                         "metadata": {"name": "cluster"}, "spec": {"registrySources": lists}})
        path = tmp_path / f"crs-{seed}.json"
        path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
        try:
            node = render(load_crs([str(path)]))
        except ConfigError:
            refused += 1
            continue
        if not node.regenerated[REGISTRIES_CONF]:
            continue
        by_kind = {kind: [o for o in objects if o["kind"] == kind] for kind in API_KINDS}
        answer = go_oracle.render(
            TEMPLATE_REGISTRIES_CONF.decode(), insecure=lists.get("insecureRegistries", []),
            blocked=lists.get("blockedRegistries", []), idms=by_kind["ImageDigestMirrorSet"],
            itms=by_kind["ImageTagMirrorSet"], icsp=by_kind["ImageContentSourcePolicy"])
        mismatches.compared += 1
        ours = node.files[REGISTRIES_CONF].decode()
        if answer["edit_error"] is not None or answer["toml"] != ours:
            mismatches.add("registries.conf differs", crs=json.dumps(docs),
                           mirrorlab=ours, runtime_utils=answer["edit_error"] or answer["toml"])
    mismatches.check(go_oracle)
    assert refused < len(seeds) // 2, f"{refused} of {len(seeds)} CR sets refused"


# ---------------------------------------------------------------- copy.Image


def test_copy_through_mirrors_matches_the_plan(tmp_path: Path, go_oracle: GoOracle) -> None:
    """A real `copy.Image` over loopback: a refusing mirror, an empty mirror, then the
    source that has the image. The library tries the sources in mirrorlab's order and the
    image arrives from the last one, by digest."""
    image = make_image("oracle-copy")
    with RegistryProcess(tmp_path, "source") as source, \
            RegistryProcess(tmp_path, "empty") as empty:
        RegistryClient(source.url).push_image("ns/app", image, tag="v1")
        dead = f"127.0.0.1:{free_port('127.0.0.1')}"
        conf = tmp_path / "registries.conf"
        conf.write_text(
            f'[[registry]]\nprefix = "src.test/ns"\nlocation = "{source.address}/ns"\n'
            f'insecure = true\n[[registry.mirror]]\nlocation = "{dead}/ns"\ninsecure = true\n'
            f'[[registry.mirror]]\nlocation = "{empty.address}/ns"\ninsecure = true\n')
        policy = tmp_path / "policy.json"
        policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}')
        ref = f"src.test/ns/app@{image.digest}"
        answer = go_oracle.copy(ref, str(tmp_path / "out"), registries_conf=str(conf),
                                policy=str(policy), timeout=60)
        plan = resolve_sources(load_registries_conf(RegistriesConfPaths(str(conf), True, ())),
                               parse_docker_reference(ref))
    assert answer["copied"], answer
    assert answer["manifest_digest"] == image.digest
    tried = re.findall(r'Trying to access \\"([^"\\]*)\\"', "\n".join(answer["log"]))
    assert tried == [str(s.reference) for s in plan.sources], answer["log"]


def test_copy_of_a_blocked_source_fails_without_contact(tmp_path: Path,
                                                        go_oracle: GoOracle) -> None:
    conf, policy = tmp_path / "registries.conf", tmp_path / "policy.json"
    conf.write_text('[[registry]]\nlocation = "blocked.test"\nblocked = true\n')
    policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}')
    answer = go_oracle.copy("blocked.test/app:1", str(tmp_path / "out"),
                            registries_conf=str(conf), policy=str(policy), timeout=20)
    assert not answer["copied"]
    assert "registry blocked.test is blocked" in answer["copy_error"], answer
    plan = resolve_sources(load_registries_conf(RegistriesConfPaths(str(conf), True, ())),
                           parse_docker_reference("blocked.test/app:1"))
    assert [s.blocked for s in plan.sources] == [True]
