"""Scenario files: a lab (CAs, images, registries by name), the configuration under test,
and the steps a demo plays (pulls with expectations, faults, registries stopped).

Parsing is pure and strict: an unknown key, a registry that names an unknown CA or image,
or a step of an unknown kind is a one-line error naming the file and the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from mirrorlab.proxy.errors import PARSER_FAILURES, ConfigError, parser_failure, yaml_error
from mirrorlab.proxy.fallback import MODE_NAMES
from mirrorlab.proxy.reference import InvalidReference, parse_docker_reference

from .faults import FAULT_KINDS, Fault

CA_TRUST = ("system", "additionalTrustedCA")
BUILTIN = "seed-failover"


@dataclass(frozen=True)
class CASpec:
    name: str
    trust: str
    """`system`: in the node's roots; `additionalTrustedCA`: only through certs.d."""


@dataclass(frozen=True)
class ImageSpec:
    name: str
    layers: tuple[int, ...] = (4096,)
    platforms: tuple[str, ...] = ()
    """For a multi-architecture index: `linux/amd64`, `linux/arm64`, ..."""
    seed: str = ""
    """Content seed; images with the same seed and sizes have the same digests."""


@dataclass(frozen=True)
class Content:
    repo: str
    image: str
    tag: str | None = None


@dataclass(frozen=True)
class RegistrySpec:
    name: str
    tls: str | None = None
    """The CA that signs its certificate, or None for plain HTTP."""
    content: tuple[Content, ...] = ()
    users: tuple[tuple[str, str], ...] = ()
    """With users, the registry requires token auth; the proxy gets the first user's
    credentials in its auth.json."""


@dataclass(frozen=True)
class Expectation:
    ok: bool = True
    served_by: str | None = None
    digest: str | None = None
    """The image whose digest the pulled image must have (default: the one pulled by digest)."""
    not_contacted: tuple[str, ...] = ()


@dataclass(frozen=True)
class Step:
    title: str
    pull: str | None = None
    expect: Expectation = field(default_factory=Expectation)
    stop: str | None = None
    fault: tuple[str, Fault] | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    cas: tuple[CASpec, ...]
    images: tuple[ImageSpec, ...]
    registries: tuple[RegistrySpec, ...]
    crs: str
    steps: tuple[Step, ...]
    path: str = ""
    fallback: str = "sticky"
    """The proxy's `--fallback` mode: sticky (a node up to OCP 4.21), blob, resilient."""

    def registry(self, name: str) -> RegistrySpec:
        return next(r for r in self.registries if r.name == name)

    def image(self, name: str) -> ImageSpec:
        return next(i for i in self.images if i.name == name)



def _mapping(value: Any, where: str, allowed: set[str] | None) -> Mapping[str, Any]:
    """A mapping (None is an empty one) whose keys are among `allowed` (None: any)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must be a mapping")
    if allowed is None:
        return value
    unknown = sorted(set(value) - allowed, key=str)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: "
                          f"{', '.join(sorted(allowed))})")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{where}: must be a list")
    return value


def _placeholders(text: str, images: Mapping[str, ImageSpec], where: str) -> None:
    for name in re.findall(r"\{([^}]*)\}", text):
        if name not in images:
            raise ConfigError(f"{where}: {{{name}}} names no image of the scenario")


def parse_scenario(text: str, path: str = "<scenario>") -> Scenario:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise yaml_error(path, error) from None
    except PARSER_FAILURES as error:
        raise ConfigError(f"{path}: invalid YAML: {parser_failure(error)}") from None
    top = _mapping(raw, path, {"name", "description", "cas", "images", "registries",
                               "config", "steps", "fallback"})
    fallback = str(top.get("fallback", "sticky"))
    if fallback not in MODE_NAMES:
        raise ConfigError(f"{path}: fallback: one of {', '.join(MODE_NAMES)}")
    cas = []
    for name, spec in _mapping(top.get("cas"), f"{path}: cas", None).items():
        spec = _mapping(spec, f"{path}: cas.{name}", {"trust"})
        if spec.get("trust") not in CA_TRUST:
            raise ConfigError(f"{path}: cas.{name}.trust: one of {', '.join(CA_TRUST)}")
        cas.append(CASpec(str(name), str(spec["trust"])))
    images: dict[str, ImageSpec] = {}
    for name, spec in _mapping(top.get("images"), f"{path}: images", None).items():
        where = f"{path}: images.{name}"
        spec = _mapping(spec, where, {"layers", "platforms", "seed"})
        layers = _list(spec.get("layers", [4096]), f"{where}.layers")
        if not layers or not all(isinstance(n, int) and 0 < n <= 2**31 for n in layers):
            raise ConfigError(f"{where}.layers: a list of sizes in bytes")
        platforms = [str(p) for p in _list(spec.get("platforms"), f"{where}.platforms")]
        for platform in platforms:
            if not re.fullmatch(r"[a-z0-9]+/[a-z0-9]+", platform):
                raise ConfigError(f"{where}.platforms: {platform!r} is not os/architecture")
        images[str(name)] = ImageSpec(str(name), tuple(layers), tuple(platforms),
                                      str(spec.get("seed", name)))
    ca_names = {ca.name for ca in cas}
    registries = []
    for name, spec in _mapping(top.get("registries"), f"{path}: registries", None).items():
        where = f"{path}: registries.{name}"
        spec = _mapping(spec, where, {"tls", "content", "auth"})
        if not re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?", str(name)):
            raise ConfigError(f"{where}: a registry name is a host name without port")
        tls = spec.get("tls")
        if tls is not None and tls not in ca_names:
            raise ConfigError(f"{where}.tls: {tls!r} is not one of the scenario's cas")
        content = []
        for index, item in enumerate(_list(spec.get("content"), f"{where}.content")):
            item = _mapping(item, f"{where}.content[{index}]", {"repo", "image", "tag"})
            if item.get("image") not in images:
                raise ConfigError(f"{where}.content[{index}].image: not one of the images")
            try:
                parse_docker_reference(f"{name}/{item.get('repo')}:{item.get('tag', 'x')}")
            except InvalidReference as error:
                raise ConfigError(f"{where}.content[{index}]: {error}") from None
            content.append(Content(str(item["repo"]), str(item["image"]),
                                   str(item["tag"]) if item.get("tag") else None))
        auth = _mapping(spec.get("auth"), f"{where}.auth", None)
        users = tuple((str(user), str(password)) for user, password in auth.items())
        if any(":" in user or not password for user, password in users):
            raise ConfigError(f"{where}.auth: user names without ':' and non-empty passwords")
        registries.append(RegistrySpec(str(name), tls, tuple(content), users))
    names = {r.name for r in registries}
    config = _mapping(top.get("config"), f"{path}: config", {"crs"})
    if not isinstance(config.get("crs"), str):
        raise ConfigError(f"{path}: config.crs: the CRs under test, as YAML text")
    steps = []
    for index, raw_step in enumerate(_list(top.get("steps"), f"{path}: steps")):
        where = f"{path}: steps[{index}]"
        step = _mapping(raw_step, where, {"title", "pull", "expect", "stop", "fault"})
        kinds = [k for k in ("pull", "stop", "fault") if k in step]
        if len(kinds) != 1:
            raise ConfigError(f"{where}: exactly one of pull, stop, fault")
        if "stop" in step and step["stop"] not in names:
            raise ConfigError(f"{where}.stop: {step['stop']!r} is not a registry")
        fault = None
        if "fault" in step:
            spec = dict(_mapping(step["fault"], f"{where}.fault",
                                 {"registry", "kind", "path", "status", "after", "rate"}))
            registry = spec.pop("registry", None)
            if registry not in names:
                raise ConfigError(f"{where}.fault.registry: {registry!r} is not a registry")
            if spec.get("kind") not in FAULT_KINDS:
                raise ConfigError(f"{where}.fault.kind: one of {', '.join(FAULT_KINDS)}")
            fault = (str(registry), Fault(**spec))
        expect = _mapping(step.get("expect"), f"{where}.expect",
                          {"ok", "served_by", "digest", "not_contacted"})
        for key in ("served_by", *expect.get("not_contacted", [])):
            value = expect.get(key) if key == "served_by" else key
            if value is not None and value not in names:
                raise ConfigError(f"{where}.expect: {value!r} is not a registry")
        if expect.get("digest") is not None and expect["digest"] not in images:
            raise ConfigError(f"{where}.expect.digest: not one of the images")
        if "pull" in step:
            _placeholders(str(step["pull"]), images, f"{where}.pull")
        steps.append(Step(
            title=str(step.get("title") or kinds[0]),
            pull=str(step["pull"]) if "pull" in step else None,
            expect=Expectation(ok=bool(expect.get("ok", True)),
                               served_by=expect.get("served_by"), digest=expect.get("digest"),
                               not_contacted=tuple(expect.get("not_contacted", ()))),
            stop=step.get("stop"), fault=fault))
    return Scenario(str(top.get("name") or Path(path).stem), str(top.get("description") or ""),
                    tuple(cas), tuple(images.values()), tuple(registries), config["crs"],
                    tuple(steps), path, fallback)


def load_scenario(path: str | None) -> Scenario:
    """A scenario file, or the built-in seed scenario when `path` is None."""
    if path is None:
        package = resources.files(__package__ or "mirrorlab.harness")
        text = package.joinpath(f"scenarios/{BUILTIN}.yaml").read_text()
        return parse_scenario(text, f"(built-in) {BUILTIN}.yaml")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: {error}") from None
    return parse_scenario(text, path)
