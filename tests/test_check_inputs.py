"""`mirrorlab check` inputs: image lists, Kubernetes objects, the payload's image-references,
and the command line's one-line errors (exit 2, nothing contacted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mirrorlab.cli import main
from mirrorlab.proxy.check_inputs import (
    deduplicated,
    from_kubernetes_file,
    from_list_file,
    images_of_image_references,
    images_of_objects,
    parse_image_list,
)
from mirrorlab.proxy.errors import MirrorlabError

from .conftest import DIGEST

# (file text, the references read and where each was named)
LIST_CASES = [
    ("quay.io/ns/app:1\n", [("quay.io/ns/app:1", "f:1")]),
    ("# all of them\n\n  quay.io/ns/app:1  \n", [("quay.io/ns/app:1", "f:3")]),
    ("quay.io/ns/app:1 # the app\nbusybox\n",
     [("quay.io/ns/app:1", "f:1"), ("docker.io/library/busybox:latest", "f:2")]),
    ("docker://quay.io/ns/app\n", [("quay.io/ns/app:latest", "f:1")]),
    (f"quay.io/ns/app@{DIGEST}\r\n", [(f"quay.io/ns/app@{DIGEST}", "f:1")]),
    ("#quay.io/ns/commented:1\n", []),
]


@pytest.mark.parametrize(("text", "expected"), LIST_CASES)
def test_image_list(text: str, expected: list[tuple[str, str]]) -> None:
    found = parse_image_list(text, "f")
    assert [(str(i.reference), i.origin) for i in found] == expected


# (file text, the error's start)
LIST_ERRORS = [
    ("quay.io/ns/app:1\nQuay.io/ns/App\n", 'f:2: invalid reference "Quay.io/ns/App": '),
    ("ok.io/a:1\n\nquay.io/a:1 quay.io/b:1\n", "f:3: one image reference a line, found 2"),
    ("quay.io/ns/app:1@sha256:abc\n", 'f:1: invalid reference "quay.io/ns/app:1@sha256:abc"'),
    (f"quay.io/ns/app:1@{DIGEST}\n", "f:1: invalid reference"),
]


@pytest.mark.parametrize(("text", "error"), LIST_ERRORS)
def test_image_list_errors_name_the_line(text: str, error: str) -> None:
    with pytest.raises(MirrorlabError) as raised:
        parse_image_list(text, "f")
    assert str(raised.value).startswith(error), raised.value
    assert "\n" not in str(raised.value)


def test_list_file_errors(tmp_path: Path) -> None:
    with pytest.raises(MirrorlabError, match="no such file"):
        from_list_file(str(tmp_path / "missing.txt"))
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    with pytest.raises(MirrorlabError, match="no image references"):
        from_list_file(str(tmp_path / "empty.txt"))
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe")
    with pytest.raises(MirrorlabError, match="not UTF-8"):
        from_list_file(str(tmp_path / "binary.txt"))
    with pytest.raises(MirrorlabError, match="is a directory"):
        from_list_file(str(tmp_path))


def _pod(name: str, *images: str, init: tuple[str, ...] = ()) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "apps"},
            "spec": {"initContainers": [{"name": f"init{i}", "image": image}
                                        for i, image in enumerate(init)],
                     "containers": [{"name": f"c{i}", "image": image}
                                    for i, image in enumerate(images)]},
            "status": {"phase": "Running"}}


def _template(kind: str, *images: str) -> dict[str, object]:
    spec = {"containers": [{"name": "main", "image": image} for image in images]}
    body: dict[str, object] = {"template": {"spec": spec}}
    if kind == "CronJob":
        body = {"schedule": "* * * * *", "jobTemplate": {"spec": body}}
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": kind.lower()},
            "spec": body}


# (objects, (reference, origin) of every image, in order)
OBJECT_CASES = [
    # what `oc get pods -A -o json` writes: a List of Pods
    ([{"apiVersion": "v1", "kind": "List", "items": [
        _pod("web", "quay.io/ns/web:1", init=("quay.io/ns/init:1",)),
        _pod("db", "quay.io/ns/db@" + DIGEST)]}],
     [("quay.io/ns/init:1", "f: Pod apps/web init container init0"),
      ("quay.io/ns/web:1", "f: Pod apps/web container c0"),
      (f"quay.io/ns/db@{DIGEST}", "f: Pod apps/db container c0")]),
    # manifests: pod templates of workload kinds; other kinds are skipped
    ([_template("Deployment", "quay.io/ns/d:1"), _template("CronJob", "quay.io/ns/c:1"),
      {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}},
      _template("StatefulSet", "quay.io/ns/s:1", "quay.io/ns/sidecar:1")],
     [("quay.io/ns/d:1", "f: Deployment deployment container main"),
      ("quay.io/ns/c:1", "f: CronJob cronjob container main"),
      ("quay.io/ns/s:1", "f: StatefulSet statefulset container main"),
      ("quay.io/ns/sidecar:1", "f: StatefulSet statefulset container main")]),
    # a PodList (the kind ends with List), short names normalized as the transport does
    ([{"kind": "PodList", "items": [_pod("p", "nginx")]}],
     [("docker.io/library/nginx:latest", "f: Pod apps/p container c0")]),
]


@pytest.mark.parametrize(("docs", "expected"), OBJECT_CASES)
def test_images_of_objects(docs: list[object], expected: list[tuple[str, str]]) -> None:
    found = images_of_objects(docs, "f")
    assert [(str(i.reference), i.origin) for i in found] == expected


OBJECT_ERRORS = [
    ([_pod("bad", "quay.io/X")], '--pods f: Pod apps/bad container c0: invalid reference '
                                 '"quay.io/X"'),
    ([{"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}}],
     "--pods f: Pod p container a: no image"),
    ([{"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": "x"}}],
     "--pods f: Pod p: containers is not a list"),
    (["just a string"], "--pods f: document 1 is not an object"),
]


@pytest.mark.parametrize(("docs", "error"), OBJECT_ERRORS)
def test_object_errors_name_object_and_container(docs: list[object], error: str) -> None:
    with pytest.raises(MirrorlabError) as raised:
        images_of_objects(docs, "f")
    assert str(raised.value).startswith(error), raised.value


def test_kubernetes_file_json_and_yaml(tmp_path: Path) -> None:
    as_json = tmp_path / "pods.json"
    as_json.write_text(json.dumps({"kind": "List", "items": [_pod("a", "quay.io/a:1")]},
                                  indent=2))
    assert [str(i.reference) for i in from_kubernetes_file(str(as_json))] == ["quay.io/a:1"]
    as_yaml = tmp_path / "manifests.yaml"
    as_yaml.write_text("---\nkind: Deployment\nmetadata: {name: d}\nspec:\n  template:\n"
                       "    spec:\n      containers:\n      - name: x\n"
                       "        image: quay.io/d:2\n---\n")
    assert [str(i.reference) for i in from_kubernetes_file(str(as_yaml))] == ["quay.io/d:2"]
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: Pod\nspec: [\n")
    with pytest.raises(MirrorlabError, match=r"^--pods .*broken.yaml:\d+:\d+: invalid YAML"):
        from_kubernetes_file(str(broken))
    services = tmp_path / "services.yaml"
    services.write_text("kind: Service\nmetadata: {name: s}\n")
    with pytest.raises(MirrorlabError, match="no Pod, pod template or container image"):
        from_kubernetes_file(str(services))


def test_image_references() -> None:
    stream = {"kind": "ImageStream", "apiVersion": "image.openshift.io/v1",
              "metadata": {"name": "4.19.0"},
              "spec": {"tags": [
                  {"name": "etcd", "from": {"kind": "DockerImage",
                                            "name": f"quay.io/ocp/art@{DIGEST}"}},
                  {"name": "cli", "from": {"kind": "DockerImage",
                                           "name": "quay.io/ocp/art:cli"}}]}}
    found = images_of_image_references(json.dumps(stream).encode(), "w")
    assert [(str(i.reference), i.origin) for i in found] == [
        (f"quay.io/ocp/art@{DIGEST}", "release image, tag etcd"),
        ("quay.io/ocp/art:cli", "release image, tag cli")]


@pytest.mark.parametrize(("data", "error"), [
    (b"{", "w: not JSON"),
    (b"[]", "w: no spec.tags list"),
    (b'{"spec": {"tags": []}}', "w: spec.tags is empty"),
    (b'{"spec": {"tags": [{"name": "x"}]}}', "w: spec.tags[0]: no from.name"),
    (b'{"spec": {"tags": [{"from": {"name": "A/b"}}]}}',
     'w: spec.tags[0]: invalid reference "A/b"'),
])
def test_image_references_errors(data: bytes, error: str) -> None:
    with pytest.raises(MirrorlabError) as raised:
        images_of_image_references(data, "w")
    assert str(raised.value).startswith(error), raised.value


def test_deduplicated_keeps_every_origin() -> None:
    found = parse_image_list("quay.io/a\nquay.io/b:1\nquay.io/a:latest\n", "f")
    groups = deduplicated(found)
    assert [(str(ref), [i.origin for i in named]) for ref, named in groups] == [
        ("quay.io/a:latest", ["f:1", "f:3"]), ("quay.io/b:1", ["f:2"])]


# ---------------------------------------------------------------- the command line


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "root"
    (root / "etc/containers").mkdir(parents=True)
    (root / "etc/containers/registries.conf").write_text("")
    (root / "etc/containers/policy.json").write_text(
        '{"default": [{"type": "insecureAcceptAnything"}]}')
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return root


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["check", *args])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize(("args", "error"), [
    (["quay.io/X"], 'error: argument: invalid reference "quay.io/X"'),
    ([], "error: no images to check"),
    (["--platform", "linux", "quay.io/a"], "error: --platform 'linux' is not OS/ARCH"),
    (["--jobs", "0", "quay.io/a"], "error: --jobs 0: must be at least 1"),
    (["--resolve", "quay.io", "quay.io/a"], "error: --resolve 'quay.io': expected"),
    (["--crs", "crs/", "quay.io/a"], "error: --crs renders the node's files; it does not go "
                                     "with --root"),
    (["--release-image", "Bad/Ref"], 'error: --release-image: invalid reference "Bad/Ref"'),
])
def test_bad_input_is_one_line_and_status_2(node: Path, capsys: pytest.CaptureFixture[str],
                                            args: list[str], error: str) -> None:
    status, out, err = _run(capsys, "--root", str(node), *args)
    assert status == 2
    assert out == ""
    assert err.startswith(error), err
    assert err.count("\n") == 1


def test_bad_line_of_an_images_file(node: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    images = tmp_path / "images.txt"
    images.write_text("quay.io/ns/a:1\n# b\nquay.io/ns/B:2\n")
    status, out, err = _run(capsys, "--root", str(node), "--images", str(images))
    assert (status, out) == (2, "")
    assert err == f'error: {images}:3: invalid reference "quay.io/ns/B:2": invalid reference ' \
                  "format: repository name must be lowercase\n"


def test_bad_crs_name_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    crs = tmp_path / "crs"
    crs.mkdir()
    (crs / "idms.yaml").write_text(
        "apiVersion: config.openshift.io/v1\nkind: ImageDigestMirrorSet\nmetadata:\n"
        "  name: bad\nspec:\n  imageDigestMirrors:\n  - source: quay.io/ns\n"
        "    mirrors: ['not a host!']\n")
    status, out, err = _run(capsys, "--crs", str(crs), "quay.io/ns/a:1")
    assert (status, out) == (2, "")
    assert err.startswith("error: ") and "idms.yaml" in err and err.count("\n") == 1, err
