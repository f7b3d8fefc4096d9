"""`mirrorlab check`: the images to check, from every place a user can name them.

- arguments, one reference each;
- `--images FILE`: one reference a line, `#` starts a comment, blank lines are skipped;
- `--pods FILE`: Kubernetes objects as JSON or YAML (`oc get pods -A -o json`, a `List`,
  or manifests): every container, init container and ephemeral container image of Pods,
  and of the pod templates of Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs,
  CronJobs, ReplicationControllers, DeploymentConfigs and PodTemplates;
- a release payload's `release-manifests/image-references` (an ImageStream whose
  `spec.tags[].from.name` are the payload's images).

Every reference is normalized as the docker transport does (`docker.io/library/`,
`:latest`). A bad input raises `MirrorlabError` naming the file and line (or object and
container); nothing is checked then.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from .errors import PARSER_FAILURES, MirrorlabError, parser_failure, yaml_error
from .reference import ImageReference, InvalidReference, parse_docker_reference


@dataclass(frozen=True)
class ImageInput:
    """One image to check, and where it was named (for the report)."""

    text: str
    origin: str
    reference: ImageReference


def parse_image(text: str, where: str) -> ImageReference:
    """A reference as `docker://TEXT` means it; the error starts with `where`."""
    try:
        return parse_docker_reference(text.removeprefix("docker://"))
    except InvalidReference as error:
        raise MirrorlabError(f'{where}: invalid reference "{text}": {error}') from None


def from_arguments(texts: Iterable[str]) -> list[ImageInput]:
    return [ImageInput(text, "argument", parse_image(text, "argument"))
            for text in texts]


def _read_text(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        raise MirrorlabError(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise MirrorlabError(f"{what} {path}: is a directory, not a file") from None
    except UnicodeDecodeError as error:
        raise MirrorlabError(f"{what} {path}: not UTF-8 text ({error.reason} at byte "
                             f"{error.start})") from None
    except OSError as error:
        raise MirrorlabError(f"{what} {path}: {error.strerror or error}") from None


def parse_image_list(text: str, path: str) -> list[ImageInput]:
    """`--images FILE`: one reference a line; `#` to the end of a line is a comment."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        where = f"{path}:{number}"
        if len(words) > 1:
            raise MirrorlabError(f"{where}: one image reference a line, found {len(words)} "
                                 f"words ({' '.join(words)[:80]!r})")
        found.append(ImageInput(words[0], where, parse_image(words[0], where)))
    return found


def from_list_file(path: str) -> list[ImageInput]:
    found = parse_image_list(_read_text(path, "--images"), path)
    if not found:
        raise MirrorlabError(f"--images {path}: no image references in the file")
    return found


# ---------------------------------------------------------------- Kubernetes objects

_POD_TEMPLATE_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet",
                                 "Job", "ReplicationController", "DeploymentConfig"})
_CONTAINER_LISTS = {"initContainers": "init container", "containers": "container",
                    "ephemeralContainers": "ephemeral container"}


def _load_objects(text: str, path: str) -> list[Any]:
    """JSON (what `oc get -o json` writes), else YAML documents."""
    try:
        return [json.loads(text)]
    except ValueError:
        pass
    except RecursionError:
        raise MirrorlabError(f"--pods {path}: invalid JSON: nested too deeply") from None
    try:
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as error:
        raise MirrorlabError(f"--pods {yaml_error(path, error)}") from None
    except PARSER_FAILURES as error:
        raise MirrorlabError(f"--pods {path}: invalid YAML: {parser_failure(error)}") from None


def _objects(docs: Iterable[Any], path: str) -> Iterator[Mapping[str, Any]]:
    for index, doc in enumerate(docs, start=1):
        if not isinstance(doc, dict):
            raise MirrorlabError(f"--pods {path}: document {index} is not an object")
        if str(doc.get("kind", "")).endswith("List") and "items" in doc:
            items = doc.get("items") or []
            if not isinstance(items, list):
                raise MirrorlabError(f"--pods {path}: document {index}: items is not a list")
            yield from _objects(items, path)
        else:
            yield doc


def _at(obj: Mapping[str, Any], *keys: str) -> Any:
    value: Any = obj
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _pod_spec(obj: Mapping[str, Any]) -> Any:
    kind = obj.get("kind")
    if kind == "Pod":
        return obj.get("spec")
    if kind in _POD_TEMPLATE_KINDS:
        return _at(obj, "spec", "template", "spec")
    if kind == "CronJob":
        return _at(obj, "spec", "jobTemplate", "spec", "template", "spec")
    if kind == "PodTemplate":
        return _at(obj, "template", "spec")
    return None


def _name(obj: Mapping[str, Any]) -> str:
    namespace, name = _at(obj, "metadata", "namespace"), _at(obj, "metadata", "name")
    name = str(name) if name else "(no name)"
    return f"{obj.get('kind')} {namespace}/{name}" if namespace else f"{obj.get('kind')} {name}"


def images_of_objects(docs: Iterable[Any], path: str) -> list[ImageInput]:
    """Every container image of every object that runs pods, in document order."""
    found = []
    for obj in _objects(docs, path):
        spec = _pod_spec(obj)
        if spec is None:
            continue
        owner = _name(obj)
        if not isinstance(spec, dict):
            raise MirrorlabError(f"--pods {path}: {owner}: its pod spec is not an object")
        for field, singular in _CONTAINER_LISTS.items():
            containers = spec.get(field) or []
            if not isinstance(containers, list):
                raise MirrorlabError(f"--pods {path}: {owner}: {field} is not a list")
            for index, container in enumerate(containers):
                label = f"{field}[{index}]"
                if isinstance(container, dict) and isinstance(container.get("name"), str):
                    label = f"{singular} {container['name']}"
                image = container.get("image") if isinstance(container, dict) else None
                where = f"{path}: {owner} {label}"
                if not isinstance(image, str) or not image:
                    raise MirrorlabError(f"--pods {where}: no image")
                found.append(ImageInput(image, where, parse_image(image, f"--pods {where}")))
    return found


def from_kubernetes_file(path: str) -> list[ImageInput]:
    found = images_of_objects(_load_objects(_read_text(path, "--pods"), path), path)
    if not found:
        raise MirrorlabError(f"--pods {path}: no Pod, pod template or container image in it")
    return found


# ---------------------------------------------------------------- release payload

IMAGE_REFERENCES = "release-manifests/image-references"


def images_of_image_references(data: bytes, where: str) -> list[ImageInput]:
    """The payload's ImageStream: each `spec.tags[i].from.name`, labelled with its tag."""
    try:
        stream = json.loads(data)
    except (ValueError, RecursionError) as error:
        raise MirrorlabError(f"{where}: not JSON: {parser_failure(error)}") from None
    tags = _at(stream, "spec", "tags") if isinstance(stream, dict) else None
    if not isinstance(tags, list):
        raise MirrorlabError(f"{where}: no spec.tags list (expected an ImageStream)")
    found = []
    for index, tag in enumerate(tags):
        name = _at(tag, "from", "name") if isinstance(tag, dict) else None
        label = tag.get("name") if isinstance(tag, dict) else None
        place = f"{where}: spec.tags[{index}]"
        if not isinstance(name, str) or not name:
            raise MirrorlabError(f"{place}: no from.name")
        origin = f"release image, tag {label}" if isinstance(label, str) else place
        found.append(ImageInput(name, origin, parse_image(name, place)))
    if not found:
        raise MirrorlabError(f"{where}: spec.tags is empty")
    return found


def deduplicated(inputs: Iterable[ImageInput]) -> list[tuple[ImageReference, list[ImageInput]]]:
    """One entry per normalized reference, in first-seen order, with every place it was
    named."""
    grouped: dict[ImageReference, list[ImageInput]] = {}
    for item in inputs:
        grouped.setdefault(item.reference, []).append(item)
    return list(grouped.items())
