"""The seed chapter's examples, rendered; `render`/`migrate-icsp` as a user runs them; the
round trip from rendered files to `explain --root`, `serve --root` and the real skopeo."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import tomllib
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from mirrorlab.proxy.errors import ConfigError
from mirrorlab.proxy.openshift.crs import load_crs
from mirrorlab.proxy.openshift.machineconfig import machine_config
from mirrorlab.proxy.openshift.migrate import migrate
from mirrorlab.proxy.openshift.render import (
    POLICY_JSON,
    REGISTRIES_CONF,
    SEARCH_DROP_IN,
    RenderOptions,
    render,
)
from mirrorlab.proxy.openshift.rollout import DRAIN, NO_DRAIN, rollout

from .conftest import DIGEST, GOLDEN_CHAPTER_CHECK
from .skopeo_oracle import skopeo_traces

GOLDEN = Path(__file__).parent / "golden" / "seed"
# The documentation chapter the golden files were taken from lives in the project's shared
# folder beside the checkout (developer machines, CI), not in the repository: a plain clone
# has no chapter. MIRRORLAB_SEED_DIR names another folder, and then the chapter must be there.
SEED_EXPLICIT = "MIRRORLAB_SEED_DIR" in os.environ
SEED = Path(os.environ.get("MIRRORLAB_SEED_DIR",
                           Path(__file__).resolve().parents[2] / "shared" / "seed"))
CHAPTERS = sorted(SEED.glob("*.txt"))
GOLDEN_FILES = sorted(p.name for p in GOLDEN.glob("*.*")
                      if p.suffix in (".yaml", ".conf", ".json"))
RELEASE = "quay.io/openshift-payload/release@" + DIGEST


def _values(path: Path) -> list[str]:
    text = path.read_text()
    if path.suffix == ".conf":
        return re.findall(r'location = "([^"]+)"', text)
    if path.suffix == ".json":
        return list(json.loads(text)["transports"]["docker"])
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str) and not node.startswith("-----"):
            found.append(node.strip())

    for document in yaml.safe_load_all(text):
        walk(document)
    return found


def test_golden_files_hold_values_and_report_the_chapter_check(
        request: pytest.FixtureRequest, record_property: Callable[[str, object], None]) -> None:
    """Always runs. Every golden file yields values to compare; says whether the comparison
    with the chapter (test_golden_files_come_from_the_chapter, one per file) is part of this
    run: it is collected only where the chapter is, so a plain clone neither fails nor skips
    it, and this test and the terminal summary say which way the run went."""
    assert GOLDEN_FILES
    for name in GOLDEN_FILES:
        assert _values(GOLDEN / name), f"{name}: no values to compare with the chapter"
    if CHAPTERS:
        mode = (f"golden files compared with the documentation chapter in {SEED} "
                f"({len(GOLDEN_FILES)} files)")
    else:
        assert not SEED_EXPLICIT, f"MIRRORLAB_SEED_DIR={SEED} holds no chapter (*.txt)"
        mode = (f"golden files NOT compared with the documentation chapter: it is not in "
                f"{SEED} (a plain clone; set MIRRORLAB_SEED_DIR to compare)")
        warnings.warn(mode, stacklevel=1)
    record_property("golden_chapter_check", mode)
    request.config.stash[GOLDEN_CHAPTER_CHECK] = mode


if CHAPTERS:
    @pytest.mark.parametrize("name", GOLDEN_FILES)
    def test_golden_files_come_from_the_chapter(name: str) -> None:
        chapter = "\n".join(p.read_text() for p in CHAPTERS)
        missing = [v for v in _values(GOLDEN / name) if v not in chapter]
        assert not missing, f"{name}: not in the seed chapter: {missing}"


def _entries(data: bytes | str) -> list[dict[str, Any]]:
    text = data.decode() if isinstance(data, bytes) else data
    return list(tomllib.loads(text).get("registry", []))


def test_idms_example_renders_as_the_chapter_shows() -> None:
    node = render(load_crs([str(GOLDEN / "idms-ubi9repo.yaml")]),
                  RenderOptions(ocp_version=(4, 18)))
    expected = (GOLDEN / "expected-idms-registries.conf").read_text()
    # The chapter's last entry comes from an ITMS with NeverContactSource it does not show;
    # everything before it is byte for byte what the operator writes for this IDMS.
    ours = node.files[REGISTRIES_CONF].decode()
    assert expected.startswith(ours)
    assert _entries(ours) == _entries(expected)[:6]


def test_chapter_tag_entry_needs_a_policy_the_operator_refuses(tmp_path: Path) -> None:
    """The chapter's 7th entry (tag-only mirror, source blocked) needs an ITMS with
    NeverContactSource for a source the IDMS allows: the operator refuses that pair."""
    itms = tmp_path / "itms.yaml"
    itms.write_text(yaml.safe_dump({
        "apiVersion": "config.openshift.io/v1", "kind": "ImageTagMirrorSet",
        "metadata": {"name": "ubi9-tags"},
        "spec": {"imageTagMirrors": [{
            "source": "registry.access.redhat.com/ubi9/ubi-minimal",
            "mirrors": ["example.io/example/ubi-minimal-tag"],
            "mirrorSourcePolicy": "NeverContactSource"}]}}))
    with pytest.raises(ConfigError, match="conflicting mirrorSourcePolicy"):
        render(load_crs([str(GOLDEN / "idms-ubi9repo.yaml"), str(itms)]))


def test_icsp_and_its_migrated_idms_render_the_same(tmp_path: Path) -> None:
    (written,) = migrate([str(GOLDEN / "icsp-mirror-ocp.yaml")], str(tmp_path))
    assert re.fullmatch(r".*/imagedigestmirrorset_mirror-ocp\.\d{6,}\.yaml", written)
    idms = yaml.safe_load(Path(written).read_text())
    assert idms["kind"] == "ImageDigestMirrorSet" and idms["metadata"] == {"name": "mirror-ocp"}
    from_icsp = render(load_crs([str(GOLDEN / "icsp-mirror-ocp.yaml")]))
    from_idms = render(load_crs([written]))
    assert from_icsp.files == from_idms.files
    assert _entries(from_idms.files[REGISTRIES_CONF]) == [
        {"prefix": "", "location": f"quay.io/openshift-release-dev/{repo}", "mirror": [
            {"location": "mirror.registry.com:443/ocp/release",
             "pull-from-mirror": "digest-only"}]}
        for repo in ("ocp-release", "ocp-v4.0-art-dev")]


def test_blocking_the_payload_registry_needs_its_mirror() -> None:
    with_mirror = render(load_crs([str(GOLDEN / "icsp-payload.yaml"),
                                   str(GOLDEN / "image-block-payload.yaml")]),
                         RenderOptions(release_image=RELEASE))
    assert _entries(with_mirror.files[REGISTRIES_CONF]) == [{
        "prefix": "", "location": "quay.io/openshift-payload", "blocked": True,
        "mirror": [{"location": "internal-mirror.io/openshift-payload",
                    "pull-from-mirror": "digest-only"}]}]
    policy = json.loads(with_mirror.files[POLICY_JSON])["transports"]["docker"]
    assert policy == {"quay.io/openshift-payload": [{"type": "reject"}],
                      "quay.io/openshift-payload/release": [{"type": "insecureAcceptAnything"}]}
    without = render(load_crs([str(GOLDEN / "image-block-payload.yaml")]),
                     RenderOptions(release_image=RELEASE))
    assert not without.regenerated[REGISTRIES_CONF]
    assert any("cannot block the repository being used by the payload" in line
               for line in without.report)


def test_blocked_registries_example() -> None:
    node = render(load_crs([str(GOLDEN / "image-blocked.yaml")]))
    entries = _entries(node.files[REGISTRIES_CONF])
    assert {"prefix": "", "location": "untrusted.com", "blocked": True} in entries
    policy = json.loads(node.files[POLICY_JSON])
    assert policy["default"] == [{"type": "insecureAcceptAnything"}]
    assert set(policy["transports"]["docker"]) == {"untrusted.com", "reg1.io/myrepo/myapp:latest"}
    assert any("today's API refuses" in line and "reg1.io/myrepo/myapp:latest" in line
               for line in node.report)
    assert any("internalRegistryHostname" in line and "does not affect" in line
               for line in node.report)


def test_insecure_and_allowed_example_gives_example_9_1() -> None:
    node = render(load_crs([str(GOLDEN / "image-insecure.yaml")]))
    assert {"prefix": "", "location": "insecure.com", "insecure": True} in _entries(
        node.files[REGISTRIES_CONF])
    expected = json.loads((GOLDEN / "expected-allowed-policy.json").read_text())
    assert json.loads(node.files[POLICY_JSON]) == expected


def test_search_registries_example() -> None:
    node = render(load_crs([str(GOLDEN / "image-search.yaml")]))
    assert tomllib.loads(node.files[SEARCH_DROP_IN].decode())[
        "unqualified-search-registries"] == ["reg1.io", "reg2.io", "reg3.io"]
    assert node.files[SEARCH_DROP_IN] == (
        b'unqualified-search-registries = ["reg1.io", "reg2.io", "reg3.io"]\n'
        b'short-name-mode = ""\nadditional-layer-store-auth-helper = ""\n')
    assert any("allowedRegistriesForImport" in line for line in node.report)
    assert any("'myconfigmap', which was not given" in line for line in node.report)


def test_ca_configmap_example() -> None:
    config_maps = load_crs([str(GOLDEN / "ca-configmap.yaml")]).config_maps
    node = render(load_crs([str(GOLDEN / "idms-ubi9repo.yaml")]),
                  RenderOptions(extra_config_maps=config_maps))
    pem = b"-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n"
    assert node.files["etc/docker/certs.d/registry.example.com/ca.crt"] == pem
    assert node.files["etc/docker/certs.d/registry-with-port.example.com:5000/ca.crt"] == pem


# ---------------------------------------------------------------- the command line


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mirrorlab.cli", *args], capture_output=True,
                          text=True, check=False)


def test_render_command_writes_the_tree(tmp_path: Path) -> None:
    out = tmp_path / "node"
    result = run("render", str(GOLDEN), "--out", str(out), "--machineconfig",
                 "--ca-configmap", str(GOLDEN / "ca-configmap.yaml"))
    # The golden folder holds two Image/cluster objects on purpose: a clear refusal.
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "Image/cluster appears twice" in result.stderr
    assert not out.exists(), "nothing may be written on error"
    result = run("render", str(GOLDEN / "idms-ubi9repo.yaml"), str(GOLDEN / "image-insecure.yaml"),
                 "--out", str(out), "--machineconfig", "master")
    assert result.returncode == 0, result.stderr
    assert "wrote " + str(out / REGISTRIES_CONF) + " (regenerated)" in result.stdout
    assert "spec.imageDigestMirrors[0]" in result.stdout
    mc = yaml.safe_load((out / "99-master-generated-registries.yaml").read_text())
    assert mc["metadata"]["name"] == "99-master-generated-registries"
    paths = [f["path"] for f in mc["spec"]["config"]["storage"]["files"]]
    assert paths == ["/etc/containers/registries.conf", "/etc/containers/policy.json"]


@pytest.mark.parametrize(("document", "message"), [
    ("kind: ImageDigestMirrorSet\napiVersion: config.openshift.io/v1\nmetadata: {name: x}\n"
     "spec: {imageDigestMirrors: [{source: 'quay.io/a:latest', mirrors: [m.io]}]}",
     "ImageDigestMirrorSet/x: spec.imageDigestMirrors[0].source: Invalid value"),
    ("kind: ImageDigestMirrorSet\napiVersion: config.openshift.io/v1\nmetadata: {name: x}\n"
     "spec: {imageDigestMirrors: [{source: quay.io, mirrors: [m.io, m.io]}]}",
     "spec.imageDigestMirrors[0].mirrors[1]: Duplicate value"),
    ("kind: ImageTagMirrorSet\napiVersion: config.openshift.io/v1\nmetadata: {name: x}\n"
     "spec: {imageTagMirrors: [{source: quay.io, mirrors: [m.io], mirrorSourcePolicy: Never}]}",
     "mirrorSourcePolicy: Unsupported value"),
    ("kind: Image\napiVersion: config.openshift.io/v1\nmetadata: {name: cluster}\n"
     "spec: {registrySources: {allowedRegistries: [a.io], blockedRegistries: [b.io]}}",
     "Only one of blockedRegistries or allowedRegistries may be set"),
    ("kind: ImageContentSourcePolicy\napiVersion: operator.openshift.io/v1alpha1\n"
     "metadata: {name: x}\nspec: {repositoryDigestMirrors: [{source: 'a.io/x ', mirrors: [m]}]}",
     'ImageContentSourcePolicy/x: spec.repositoryDigestMirrors[0]: invalid format for source'),
    ("kind: ImageDigestMirrorSet\napiVersion: config.openshift.io/v1alpha1\nmetadata: {name: x}",
     "apiVersion: 'config.openshift.io/v1alpha1' is not 'config.openshift.io/v1'"),
    ("kind: ImageDigestMirrorSet\n  bad: [indent", "invalid YAML"),
])
def test_render_errors_name_file_object_and_field(tmp_path: Path, document: str,
                                                  message: str) -> None:
    crs_file = tmp_path / "crs.yaml"
    crs_file.write_text(document)
    result = run("render", str(crs_file), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {crs_file}")
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_unknown_kinds_and_lists(tmp_path: Path) -> None:
    crs_file = tmp_path / "list.yaml"
    crs_file.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}},
        *yaml.safe_load_all((GOLDEN / "icsp-payload.yaml").read_text())]}))
    crs = load_crs([str(crs_file)])
    assert [s.origin.name for s in crs.mirror_sets] == ["my-icsp"]
    assert crs.skipped == (f"{crs_file}: Secret/s: not a kind that shapes node registry files; "
                           "skipped",)


def test_migrate_icsp_command(tmp_path: Path) -> None:
    two = tmp_path / "two.yaml"
    two.write_text((GOLDEN / "icsp-payload.yaml").read_text() + "---\n"
                   + (GOLDEN / "icsp-mirror-ocp.yaml").read_text())
    result = run("migrate-icsp", str(two), "--dest-dir", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    path = Path(line.removeprefix("wrote ImageDigestMirrorSet to "))
    assert path.name.startswith("imagedigestmirrorset_my-icsp.")
    text = path.read_text()
    assert text.count("---\n") == 1 and text.endswith("\n")
    assert "    imageDigestMirrors:\n        - mirrors:\n            - internal-mirror.io" in text
    bad = run("migrate-icsp", str(GOLDEN / "idms-ubi9repo.yaml"), "--dest-dir", str(tmp_path))
    assert bad.returncode == 2 and "not an ImageContentSourcePolicy" in bad.stderr


# ---------------------------------------------------------------- rollouts


def _idms(name: str, source: str, *mirrors: str, kind: str = "ImageDigestMirrorSet") -> str:
    key = "imageTagMirrors" if kind == "ImageTagMirrorSet" else "imageDigestMirrors"
    return yaml.safe_dump({"apiVersion": "config.openshift.io/v1", "kind": kind,
                           "metadata": {"name": name},
                           "spec": {key: [{"source": source, "mirrors": list(mirrors)}]}})


ROLLOUTS = [
    # id, CRs before, CRs after, verdict
    ("create-idms", [], [_idms("a", "q.io/ns", "m1.io/ns")], NO_DRAIN),
    ("create-itms", [], [_idms("t", "q.io/ns", "m1.io/ns", kind="ImageTagMirrorSet")], DRAIN),
    ("delete-idms", [_idms("a", "q.io/ns", "m1.io/ns")], [], DRAIN),
    ("add-digest-mirror", [_idms("a", "q.io/ns", "m1.io/ns")],
     [_idms("a", "q.io/ns", "m1.io/ns", "m2.io/ns")], NO_DRAIN),
    ("reorder-mirrors", [_idms("a", "q.io/ns", "m1.io/ns", "m2.io/ns")],
     [_idms("a", "q.io/ns", "m2.io/ns", "m1.io/ns")], DRAIN),
    ("allowed-registries", [], [(GOLDEN / "image-insecure.yaml").read_text()], DRAIN),
]


@pytest.mark.parametrize(("before", "after", "verdict"), [r[1:] for r in ROLLOUTS],
                         ids=[r[0] for r in ROLLOUTS])
def test_rollout_verdicts(tmp_path: Path, before: list[str], after: list[str],
                          verdict: str) -> None:
    def load(label: str, documents: list[str]) -> Any:
        folder = tmp_path / label
        folder.mkdir()
        for number, text in enumerate(documents):
            (folder / f"{number}.yaml").write_text(text)
        crs = load_crs([str(folder)])
        return crs, render(crs)

    old, new = load("before", before), load("after", after)
    got, actions = rollout(old[0], old[1], new[0], new[1])
    assert got == verdict, actions


def test_policy_only_change_does_not_drain(tmp_path: Path) -> None:
    image = yaml.safe_load((GOLDEN / "image-insecure.yaml").read_text())
    del image["spec"]["registrySources"]["insecureRegistries"]
    before, after = tmp_path / "before.yaml", tmp_path / "after.yaml"
    before.write_text(yaml.safe_dump(image))
    image["spec"]["registrySources"]["allowedRegistries"].append("new.io")
    after.write_text(yaml.safe_dump(image))
    result = run("render", str(after), "--out", str(tmp_path / "out"), "--previous", str(before))
    assert result.returncode == 0, result.stderr
    assert f"rollout: {NO_DRAIN}" in result.stdout
    assert "/etc/containers/policy.json: applied without drain" in result.stdout


# ---------------------------------------------------------------- round trip


def _refs() -> list[str]:
    sources = [e["source"] for e in yaml.safe_load(
        (GOLDEN / "idms-ubi9repo.yaml").read_text())["spec"]["imageDigestMirrors"]]
    return [f"{s}/app@{DIGEST}" for s in sources] + [f"{s}/app:v1" for s in sources] + [
        f"{sources[0]}@{DIGEST}", "registry.example.com/other/x@" + DIGEST]


def test_round_trip_explain_root_agrees_with_skopeo(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "node"
    assert run("render", str(GOLDEN / "idms-ubi9repo.yaml"), "--out", str(root)).returncode == 0
    home = tmp_path / "home"
    home.mkdir()
    refs = _refs()
    result = run("explain", "--json", "--root", str(root), *refs)
    assert result.returncode == 0, result.stderr
    ours = {item["input"]: item for item in map(json.loads, result.stdout.splitlines())}
    theirs = skopeo_traces(str(root / REGISTRIES_CONF), refs, str(home))
    for ref in refs:
        assert [s["reference"] for s in ours[ref]["sources"]] == [
            s.reference for s in theirs[ref].sources], ref
    assert len(ours[refs[0]]["sources"]) == 3  # two digest mirrors, then the source
    served = asyncio.run(_serve_root_explain(root, refs))
    assert served == {ref: ours[ref]["sources"] for ref in refs}


async def _serve_root_explain(root: Path, refs: list[str]) -> dict[str, Any]:
    from aiohttp.test_utils import TestClient, TestServer

    from mirrorlab.proxy.paths import NodeFiles
    from mirrorlab.proxy.server import Proxy, ServeOptions

    proxy = Proxy(ServeOptions(files=NodeFiles(root=str(root)), reload_interval=0))
    async with TestClient(TestServer(proxy.app())) as client:
        found = {}
        for ref in refs:
            response = await client.get("/mirrorlab/explain", params={"ref": ref})
            found[ref] = (await response.json())["sources"]
        return found


def test_machine_config_only_holds_regenerated_files() -> None:
    node = render(load_crs([str(GOLDEN / "idms-ubi9repo.yaml")]))
    files = machine_config(node, "worker")["spec"]["config"]["storage"]["files"]
    assert [f["path"] for f in files] == ["/etc/containers/registries.conf"]
    assert files[0]["contents"]["source"].startswith("data:text/plain;charset=utf-8;base64,")
    assert files[0]["mode"] == 420 and files[0]["overwrite"] is True

