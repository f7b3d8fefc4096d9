"""Cluster custom resources, read from YAML and checked as the API server checks them.

Every document of every file is read (multi-document files and `kind: List` included);
kinds that do not shape node files are named and skipped. Errors name the file, the
object (`Kind/name`) and the field, so a user can find the line to fix.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..errors import PARSER_FAILURES, ConfigError, parser_failure, yaml_error
from .imagepolicies import API_V1, API_V1ALPHA1, CIP, IP, ImagePolicyCR, parse_image_policy
from .scopes import valid_mirror, valid_source

IDMS, ITMS, ICSP = "ImageDigestMirrorSet", "ImageTagMirrorSet", "ImageContentSourcePolicy"
POLICIES = ("NeverContactSource", "AllowContactingSource")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOSTNAME = rf"{_LABEL}(?:\.{_LABEL})*"


@dataclass(frozen=True)
class Origin:
    """Where an object came from: for messages and for `render`'s report."""

    file: str
    kind: str
    name: str

    def at(self, path: str) -> str:
        return f"{self.file}: {self.kind}/{self.name}: {path}"


@dataclass(frozen=True)
class MirrorEntry:
    """One `source` with its `mirrors` from an IDMS, ITMS or ICSP."""

    source: str
    mirrors: tuple[str, ...]
    policy: str | None
    origin: Origin
    path: str
    """The field, e.g. `spec.imageDigestMirrors[2]`."""

    @property
    def never_contact(self) -> bool:
        return self.policy == "NeverContactSource"


@dataclass(frozen=True)
class MirrorSet:
    kind: str
    entries: tuple[MirrorEntry, ...]
    origin: Origin


@dataclass(frozen=True)
class ImageConfig:
    """`image.config.openshift.io/cluster`; `None` lists were absent from the spec."""

    origin: Origin
    insecure: tuple[str, ...] | None = None
    blocked: tuple[str, ...] | None = None
    allowed: tuple[str, ...] | None = None
    search: tuple[str, ...] | None = None
    additional_trusted_ca: str | None = None
    allowed_for_import: tuple[str, ...] = ()
    external_hostnames: tuple[str, ...] = ()
    internal_hostname: str | None = None
    warnings: tuple[str, ...] = ()
    """Values today's API refuses but older clusters kept (CEL validation ratchets)."""


@dataclass(frozen=True)
class ConfigMap:
    name: str
    namespace: str
    data: Mapping[str, str]
    binary_data: Mapping[str, bytes]
    origin: Origin


@dataclass(frozen=True)
class ClusterCRs:
    """Everything read from the given paths, in file and document order."""

    image: ImageConfig | None = None
    mirror_sets: tuple[MirrorSet, ...] = ()
    config_maps: tuple[ConfigMap, ...] = ()
    skipped: tuple[str, ...] = ()
    files: tuple[str, ...] = field(default_factory=tuple)
    image_policies: tuple[ImagePolicyCR, ...] = ()
    """ClusterImagePolicy and ImagePolicy objects, in file and document order."""

    def of_kind(self, kind: str) -> tuple[MirrorSet, ...]:
        return tuple(s for s in self.mirror_sets if s.kind == kind)


# ---------------------------------------------------------------- reading YAML


def yaml_files(paths: Iterable[str]) -> list[str]:
    """Files named, and `*.yaml`/`*.yml`/`*.json` files of directories, sorted."""
    found = []
    for path in paths:
        if os.path.isdir(path):
            for root, _, names in sorted(os.walk(path)):
                found += [os.path.join(root, n) for n in sorted(names)
                          if n.endswith((".yaml", ".yml", ".json"))]
        elif os.path.exists(path):
            found.append(path)
        else:
            raise ConfigError(f"{path}: no such file or directory")
    return found


def documents(path: str) -> Iterator[dict[str, Any]]:
    """Every object of a YAML file; `kind: List` is flattened."""
    try:
        with open(path, encoding="utf-8") as handle:
            loaded = list(yaml.safe_load_all(handle))
    except yaml.YAMLError as error:
        raise yaml_error(path, error) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: {error}") from None
    except PARSER_FAILURES as error:
        raise ConfigError(f"{path}: invalid YAML: {parser_failure(error)}") from None
    for index, document in enumerate(loaded):
        if document is None:
            continue
        if not isinstance(document, dict):
            raise ConfigError(f"{path}: document {index + 1} is not a mapping")
        if document.get("kind") == "List" or str(document.get("kind", "")).endswith("List"):
            for item in document.get("items") or []:
                if not isinstance(item, dict):
                    raise ConfigError(f"{path}: document {index + 1}: an item is not a mapping")
                yield item
        else:
            yield document


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: must be a list of strings")
    return tuple(value)


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must be a mapping")
    return value


# ---------------------------------------------------------------- object kinds


def _mirror_set(doc: Mapping[str, Any], origin: Origin) -> MirrorSet:
    spec = _mapping(doc.get("spec"), origin.at("spec"))
    key = {IDMS: "imageDigestMirrors", ITMS: "imageTagMirrors",
           ICSP: "repositoryDigestMirrors"}[origin.kind]
    raw_entries = spec.get(key) or []
    if not isinstance(raw_entries, list):
        raise ConfigError(f"{origin.at(f'spec.{key}')}: must be a list")
    entries = []
    for index, raw in enumerate(raw_entries):
        path = f"spec.{key}[{index}]"
        raw = _mapping(raw, origin.at(path))
        source = raw.get("source")
        if not isinstance(source, str):
            raise ConfigError(f"{origin.at(path + '.source')}: Required value")
        mirrors = _strings(raw.get("mirrors"), origin.at(path + ".mirrors"))
        policy = raw.get("mirrorSourcePolicy")
        if origin.kind != ICSP:
            _check_api_entry(origin, path, source, mirrors, policy)
        elif policy is not None:
            raise ConfigError(f"{origin.at(path)}: unknown field \"mirrorSourcePolicy\"")
        entries.append(MirrorEntry(source, mirrors, policy, origin, path))
    return MirrorSet(origin.kind, tuple(entries), origin)


def _check_api_entry(origin: Origin, path: str, source: str, mirrors: tuple[str, ...],
                     policy: object) -> None:
    """What the IDMS/ITMS CRD enforces before an object ever reaches the operator."""
    if not valid_source(source):
        raise ConfigError(f"{origin.at(path + '.source')}: Invalid value: {source!r}: should "
                          "match host[:port][/path] or *.domain (no tag, digest or "
                          "trailing /)")
    seen = set()
    for number, mirror in enumerate(mirrors):
        if not valid_mirror(mirror):
            raise ConfigError(f"{origin.at(f'{path}.mirrors[{number}]')}: Invalid value: "
                              f"{mirror!r}: should match host[:port][/path]")
        if mirror in seen:
            raise ConfigError(f"{origin.at(f'{path}.mirrors[{number}]')}: Duplicate value: "
                              f"{mirror!r}")
        seen.add(mirror)
    if policy is not None and policy not in POLICIES:
        raise ConfigError(f"{origin.at(path + '.mirrorSourcePolicy')}: Unsupported value: "
                          f"{policy!r}: supported values: {', '.join(POLICIES)}")


def _image_config(doc: Mapping[str, Any], origin: Origin) -> ImageConfig:
    spec = _mapping(doc.get("spec"), origin.at("spec"))
    sources = _mapping(spec.get("registrySources"), origin.at("spec.registrySources"))
    warnings: list[str] = []

    def listed(name: str) -> tuple[str, ...] | None:
        if name not in sources:
            return None
        where = origin.at(f"spec.registrySources.{name}")
        items = _strings(sources[name], where)
        if len(items) > 1024:
            raise ConfigError(f"{where}: Too many: {len(items)}: must have at most 1024 items")
        for index, item in enumerate(items):
            if name != "containerRuntimeSearchRegistries" and not (
                    1 <= len(item) <= 256 and valid_source(item)):
                warnings.append(
                    f"warning: {where}[{index}]: {item!r}: today's API refuses this value "
                    "(each registry must be a valid hostname[:port][/path] or wildcard "
                    "*.hostname format without tags or digests); clusters that stored it "
                    "earlier keep it, and the operator renders it verbatim")
        return items

    insecure, blocked, allowed = (listed("insecureRegistries"), listed("blockedRegistries"),
                                  listed("allowedRegistries"))
    if blocked and allowed:
        raise ConfigError(f"{origin.at('spec.registrySources')}: Invalid value: Only one of "
                          "blockedRegistries or allowedRegistries may be set")
    search = listed("containerRuntimeSearchRegistries")
    if search is not None:
        where = origin.at("spec.registrySources.containerRuntimeSearchRegistries")
        if not search:
            raise ConfigError(f"{where}: Invalid value: 0: should have at least 1 items")
        for index, item in enumerate(search):
            if not re.fullmatch(_HOSTNAME, item, re.ASCII):
                raise ConfigError(f"{where}[{index}]: Invalid value: {item!r}: should match "
                                  "'hostname'")
        if len(set(search)) != len(search):
            raise ConfigError(f"{where}: Duplicate value")
    trusted = _mapping(spec.get("additionalTrustedCA"), origin.at("spec.additionalTrustedCA"))
    for_import = []
    for index, item in enumerate(spec.get("allowedRegistriesForImport") or []):
        entry = _mapping(item, origin.at(f"spec.allowedRegistriesForImport[{index}]"))
        if not isinstance(entry.get("domainName"), str):
            raise ConfigError(
                f"{origin.at(f'spec.allowedRegistriesForImport[{index}].domainName')}: "
                "Required value")
        for_import.append(entry["domainName"] + (" (insecure)" if entry.get("insecure") else ""))
    status = _mapping(doc.get("status"), origin.at("status"))
    internal = status.get("internalRegistryHostname")
    return ImageConfig(
        origin=origin, insecure=insecure, blocked=blocked, allowed=allowed, search=search,
        additional_trusted_ca=str(trusted["name"]) if trusted.get("name") else None,
        allowed_for_import=tuple(for_import),
        external_hostnames=_strings(spec.get("externalRegistryHostnames"),
                                    origin.at("spec.externalRegistryHostnames")),
        internal_hostname=internal if isinstance(internal, str) else None,
        warnings=tuple(warnings),
    )


def _config_map(doc: Mapping[str, Any], origin: Origin) -> ConfigMap:
    metadata = _mapping(doc.get("metadata"), origin.at("metadata"))
    data = {}
    for key, value in _mapping(doc.get("data"), origin.at("data")).items():
        if not isinstance(value, str):
            raise ConfigError(f"{origin.at(f'data[{key!r}]')}: must be a string")
        data[str(key)] = value
    binary = {}
    for key, value in _mapping(doc.get("binaryData"), origin.at("binaryData")).items():
        try:
            binary[str(key)] = base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"{origin.at(f'binaryData[{key!r}]')}: not base64") from None
    return ConfigMap(origin.name, str(metadata.get("namespace", "")), data, binary, origin)


# ---------------------------------------------------------------- entry point

_KINDS: dict[str, tuple[str, ...]] = {
    IDMS: ("config.openshift.io/v1",),
    ITMS: ("config.openshift.io/v1",),
    ICSP: ("operator.openshift.io/v1alpha1",),
    "Image": ("config.openshift.io/v1",),
    "ConfigMap": ("v1",),
    CIP: (API_V1, API_V1ALPHA1),
    IP: (API_V1, API_V1ALPHA1),
}


def load_crs(paths: Iterable[str]) -> ClusterCRs:
    """Read every object from `paths` (files or directories)."""
    image: ImageConfig | None = None
    sets: list[MirrorSet] = []
    maps: list[ConfigMap] = []
    skipped: list[str] = []
    policies: list[ImagePolicyCR] = []
    seen_policies: dict[tuple[str, str, str], str] = {}
    files = yaml_files(paths)
    for path in files:
        for doc in documents(path):
            kind = str(doc.get("kind", ""))
            metadata = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
            name = str(metadata.get("name", "")) if metadata else ""
            origin = Origin(path, kind or "(no kind)", name or "(no name)")
            if kind not in _KINDS:
                skipped.append(f"{path}: {origin.kind}/{origin.name}: not a kind that shapes "
                               "node registry files; skipped")
                continue
            api = str(doc.get("apiVersion", ""))
            if api not in _KINDS[kind]:
                raise ConfigError(f"{origin.at('apiVersion')}: {api!r} is not "
                                  + " or ".join(repr(v) for v in _KINDS[kind]))
            if not name:
                raise ConfigError(f"{origin.at('metadata.name')}: Required value")
            if kind in (CIP, IP):
                policy = parse_image_policy(doc, origin)
                key = (kind, policy.namespace, name)
                if key in seen_policies:
                    raise ConfigError(f"{origin.at('metadata.name')}: {kind}/{name} appears "
                                      f"twice (also in {seen_policies[key]})")
                seen_policies[key] = path
                policies.append(policy)
            elif kind in (IDMS, ITMS, ICSP):
                sets.append(_mirror_set(doc, origin))
            elif kind == "Image":
                if name != "cluster":
                    skipped.append(f"{path}: Image/{name}: only Image/cluster is read by the "
                                   "operator; skipped")
                    continue
                if image is not None:
                    raise ConfigError(f"{origin.at('metadata.name')}: Image/cluster appears "
                                      f"twice (also in {image.origin.file})")
                image = _image_config(doc, origin)
            else:
                maps.append(_config_map(doc, origin))
    return ClusterCRs(image, tuple(sets), tuple(maps), tuple(skipped), tuple(files),
                      tuple(policies))
