"""registries.conf (v2) and its drop-ins, validated and merged as containers/image does.

Parsing uses tomlkit; decoding mimics the Go struct decoder containers/image uses:
unknown keys are ignored (only the Go library's debug log mentions them), a known key
of the wrong type is fatal. Validation reproduces `postProcessRegistries` and
`loadConfigFile` in their order, with the upstream messages, each prefixed by the file
(and, where the entry can be placed, the line) so a user can find it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import tomlkit
import tomlkit.exceptions

from .errors import PARSER_FAILURES, ConfigError, parser_failure
from .reference import InvalidReference, is_valid_domain, parse_normalized, parse_reference

PULL_FROM_MIRROR_VALUES = ("", "all", "digest-only", "tag-only")
SHORT_NAME_MODES = ("enforcing", "permissive", "disabled")
DEFAULT_CREDENTIAL_HELPERS = ("containers-auth.json",)
DEFAULT_SHORT_NAME_MODE = "permissive"


@dataclass(frozen=True)
class Mirror:
    """A `[[registry.mirror]]`: an endpoint tried before its registry's own location."""

    location: str
    insecure: bool = False
    pull_from_mirror: str = ""


@dataclass(frozen=True)
class Registry:
    """A `[[registry]]` after post-processing (prefix filled in, locations stripped)."""

    prefix: str
    location: str
    insecure: bool = False
    blocked: bool = False
    mirror_by_digest_only: bool = False
    mirrors: tuple[Mirror, ...] = ()
    origin: str = ""
    """Where the entry was written (`file:line`), for explanations."""


@dataclass(frozen=True)
class RegistriesConf:
    """The merged configuration of a main file and its drop-ins."""

    registries: tuple[Registry, ...] = ()
    unqualified_search_registries: tuple[str, ...] | None = None
    unqualified_search_origin: str = ""
    credential_helpers: tuple[str, ...] = DEFAULT_CREDENTIAL_HELPERS
    short_name_mode: str = DEFAULT_SHORT_NAME_MODE
    aliases: Mapping[str, str] = field(default_factory=dict)
    alias_origins: Mapping[str, str] = field(default_factory=dict)
    additional_layer_store_auth_helper: str = ""
    main_path: str = ""
    drop_in_dirs: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    """Every file that was read, in the order it was applied."""

    @property
    def blocked_origin(self) -> str:
        """How containers/image names the configuration in its `blocked` error."""
        dirs = self.drop_in_dirs[-1:] if self.drop_in_dirs else ("",)
        return f"{self.main_path} or {dirs[0]}"


@dataclass(frozen=True)
class _FileConfig:
    """One file's contribution before merging; `None` means the key was absent."""

    registries: tuple[Registry, ...]
    unqualified_search_registries: tuple[str, ...] | None
    credential_helpers: tuple[str, ...] | None
    short_name_mode: str
    additional_layer_store_auth_helper: str
    aliases: Mapping[str, str]
    path: str


# ---------------------------------------------------------------- decoding


def _type_name(value: object) -> str:
    names = {bool: "boolean", str: "string", int: "integer", float: "float", list: "array"}
    for kind, name in names.items():
        if type(value) is kind:
            return name
    return "table" if isinstance(value, dict) else type(value).__name__


class _Decoder:
    """Typed access to the unwrapped TOML document, with Go-decoder errors."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.registry_lines = [
            number
            for number, line in enumerate(text.splitlines(), start=1)
            if re.match(r"\s*\[\[\s*registry\s*\]\]", line)
        ]

    def where(self, index: int | None) -> str:
        if index is not None and index < len(self.registry_lines):
            return f"line {self.registry_lines[index]}: "
        return ""

    def fail(self, message: str, index: int | None = None) -> ConfigError:
        return ConfigError(f"{self.where(index)}{message}")

    def get(self, table: Mapping[str, Any], key: str, kind: type, keypath: str,
            index: int | None = None) -> Any:
        if key not in table:
            return None
        value = table[key]
        if kind is list:
            ok = isinstance(value, list) and all(type(item) is str for item in value)
        else:
            ok = type(value) is kind
        if not ok:
            expected = "array of strings" if kind is list else _type_name(kind())
            raise self.fail(
                f"toml: key {keypath!r}: incompatible types: TOML value has type "
                f"{_type_name(value)}; destination has type {expected}",
                index,
            )
        return value

    def tables(self, table: Mapping[str, Any], key: str, keypath: str,
               index: int | None = None) -> list[Mapping[str, Any]]:
        value = table.get(key)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise self.fail(
                f"toml: key {keypath!r}: incompatible types: TOML value has type "
                f"{_type_name(value)}; destination has type array of tables",
                index,
            )
        return value


def _parse_location(value: str) -> str:
    """`parseLocation`: strip trailing slashes, refuse URI schemes."""
    trimmed = value.rstrip("/")
    if trimmed.startswith(("http://", "https://")):
        raise ConfigError(f"invalid location '{value}': URI schemes are not supported")
    return trimmed


def _v1_entries(decoder: _Decoder, doc: Mapping[str, Any]) -> dict[str, list[str]] | None:
    """The V1 `[registries.*]` tables, or None when the file has none."""
    v1 = doc.get("registries")
    if v1 is None:
        return None
    if not isinstance(v1, dict):
        raise decoder.fail("toml: key 'registries': incompatible types: expected a table")
    found: dict[str, list[str]] = {}
    for kind in ("search", "insecure", "block"):
        table = v1.get(kind)
        if table is None:
            continue
        if not isinstance(table, dict):
            raise decoder.fail(
                f"toml: key 'registries.{kind}': incompatible types: expected a table"
            )
        found[kind] = decoder.get(table, "registries", list, f"registries.{kind}.registries") or []
    return found


def _convert_v1(found: Mapping[str, list[str]], path: str) -> list[Registry]:
    """`ConvertToV2`: blocked and insecure lists become plain entries, merged per location."""
    entries: dict[str, Registry] = {}
    for kind in ("block", "insecure"):
        for raw in found.get(kind, []):
            location = _parse_location(raw)
            entry = entries.get(location, Registry(prefix=location, location=location, origin=path))
            if kind == "block":
                entry = replace(entry, blocked=True)
            else:
                entry = replace(entry, insecure=True)
            entries[location] = entry
    return list(entries.values())


def _decode_registry(
    decoder: _Decoder, raw: Mapping[str, Any], index: int
) -> tuple[Registry, str]:
    """One `[[registry]]` table, and its (forbidden) registry-level `pull-from-mirror`."""
    def get(key: str, kind: type, table: Mapping[str, Any] = raw, keypath: str = "") -> Any:
        return decoder.get(table, key, kind, keypath or f"registry.{key}", index)

    prefix = get("prefix", str) or ""
    location = get("location", str) or ""
    pull_from_mirror = get("pull-from-mirror", str) or ""
    mirrors = []
    for mirror in decoder.tables(raw, "mirror", "registry.mirror", index):
        mirrors.append(
            Mirror(
                location=get("location", str, mirror, "registry.mirror.location") or "",
                insecure=bool(get("insecure", bool, mirror, "registry.mirror.insecure")),
                pull_from_mirror=get("pull-from-mirror", str, mirror,
                                     "registry.mirror.pull-from-mirror") or "",
            )
        )
    registry = Registry(
        prefix=prefix,
        location=location,
        insecure=bool(get("insecure", bool)),
        blocked=bool(get("blocked", bool)),
        mirror_by_digest_only=bool(get("mirror-by-digest-only", bool)),
        mirrors=tuple(mirrors),
        origin=f"{decoder.path}:{decoder.registry_lines[index]}"
        if index < len(decoder.registry_lines) else decoder.path,
    )
    return registry, pull_from_mirror


def _post_process(
    decoder: _Decoder, registries: list[tuple[Registry, str]]
) -> list[Registry]:
    """`postProcessRegistries`: defaults, per-entry checks, conflicts, de-duplication."""
    processed: list[Registry] = []
    for index, (registry, pull_from_mirror) in enumerate(registries):
        try:
            location = _parse_location(registry.location)
            if registry.prefix == "":
                if location == "":
                    raise ConfigError("invalid condition: both location and prefix are unset")
                prefix = location
            else:
                prefix = _parse_location(registry.prefix)
                if not prefix.startswith("*.") and location == "":
                    raise ConfigError(
                        "invalid condition: location is unset and prefix is not in the "
                        "format: *.example.com"
                    )
            if pull_from_mirror:
                raise ConfigError(
                    f'pull-from-mirror must not be set for a non-mirror registry "{prefix}"'
                )
            mirrors = []
            for mirror in registry.mirrors:
                mirror_location = _parse_location(mirror.location)
                if mirror_location == "":
                    raise ConfigError("invalid condition: mirror location is unset")
                if registry.mirror_by_digest_only and mirror.pull_from_mirror != "":
                    raise ConfigError(
                        "cannot set mirror usage mirror-by-digest-only for the registry "
                        f'("{prefix}") and pull-from-mirror for per-mirror '
                        f'("{mirror_location}") at the same time'
                    )
                if mirror.pull_from_mirror not in PULL_FROM_MIRROR_VALUES:
                    raise ConfigError(
                        f'unsupported pull-from-mirror value "{mirror.pull_from_mirror}" '
                        f'for mirror "{mirror_location}"'
                    )
                mirrors.append(replace(mirror, location=mirror_location))
        except ConfigError as error:
            raise decoder.fail(str(error), index) from None
        processed.append(
            replace(registry, prefix=prefix, location=location, mirrors=tuple(mirrors))
        )

    groups: dict[str, list[Registry]] = {}
    for registry in processed:
        groups.setdefault(registry.location or registry.prefix, []).append(registry)
    for index, registry in enumerate(processed):
        for other in groups[registry.location or registry.prefix]:
            for flag in ("insecure", "blocked"):
                if getattr(registry, flag) != getattr(other, flag):
                    raise decoder.fail(
                        f"registry '{registry.location}' is defined multiple times with "
                        f"conflicting '{flag}' setting",
                        index,
                    )

    unique: dict[str, Registry] = {}
    for registry in processed:
        unique.setdefault(registry.prefix, registry)
    return sorted(unique.values(), key=lambda r: r.prefix.encode())


def _validate_search(decoder: _Decoder, entries: list[str] | None) -> tuple[str, ...] | None:
    if entries is None:
        return None
    result = []
    for entry in entries:
        registry = _parse_location(entry)
        if not is_valid_domain(registry):
            raise decoder.fail(f'Invalid unqualified-search-registries entry "{registry}"')
        result.append(registry)
    return tuple(result)


def _alias_errors(aliases: Mapping[str, str]) -> list[str]:
    """`newShortNameAliasCache`: names must be short, values fully qualified."""
    errors = []
    for name, value in sorted(aliases.items()):
        try:
            ref = parse_reference(name)
            if ref.digest is not None:
                errors.append(f'invalid short name "{name}": must not contain digest')
            elif ref.tag is not None:
                errors.append(f'invalid short name "{name}": must not contain tag')
            elif "." in ref.domain or ":" in ref.domain or ref.domain == "localhost":
                errors.append(f'invalid short name "{name}": must not contain registry')
        except InvalidReference as error:
            errors.append(f'cannot parse short name: "{name}": {error}')
        if value == "":
            continue
        try:
            ref = parse_reference(value)
        except InvalidReference as error:
            errors.append(f'parsing alias "{value}": {error}')
            continue
        if ref.digest is not None:
            errors.append(f'invalid alias "{value}": must not contain digest')
        elif ref.tag is not None:
            errors.append(f'invalid alias "{value}": must not contain tag')
        elif not ("." in ref.domain or ":" in ref.domain or ref.domain == "localhost"):
            errors.append(f'invalid alias "{value}": must contain registry and repository')
    return errors


def parse_registries_conf(text: str, path: str, *, drop_in: bool = False) -> _FileConfig:
    """Parse and validate one file (`loadConfigFile`); errors carry no file name yet."""
    try:
        doc = tomlkit.parse(text).unwrap()
    except tomlkit.exceptions.ParseError as error:
        raise ConfigError(f"toml: line {error.line}: {error}") from None
    except tomlkit.exceptions.TOMLKitError as error:
        raise ConfigError(f"toml: {error}") from None
    except PARSER_FAILURES as error:  # tomlkit before 0.15 recursed without a limit
        raise ConfigError(f"toml: {parser_failure(error)}") from None
    decoder = _Decoder(path, text)

    registries = [
        _decode_registry(decoder, raw, index)
        for index, raw in enumerate(decoder.tables(doc, "registry", "registry"))
    ]
    search = decoder.get(doc, "unqualified-search-registries", list,
                         "unqualified-search-registries")
    helpers = decoder.get(doc, "credential-helpers", list, "credential-helpers")
    mode = decoder.get(doc, "short-name-mode", str, "short-name-mode") or ""
    layer_helper = decoder.get(doc, "additional-layer-store-auth-helper", str,
                               "additional-layer-store-auth-helper") or ""
    aliases_raw = doc.get("aliases", {})
    if not isinstance(aliases_raw, dict):
        raise decoder.fail("toml: key 'aliases': incompatible types: expected a table")
    aliases = {name: decoder.get(aliases_raw, name, str, f"aliases.{name}")
               for name in aliases_raw}

    v1 = _v1_entries(decoder, doc)
    if v1 is not None:
        if drop_in:
            raise ConfigError(f"registry must be in v2 format but is in v1: {path}")
        v2_keys = ("registry", "unqualified-search-registries", "credential-helpers",
                   "short-name-mode", "additional-layer-store-auth-helper", "aliases")
        if any(key in doc for key in v2_keys):
            raise ConfigError("mixing sysregistry v1/v2 is not supported")
        registries = [(entry, "") for entry in _convert_v1(v1, path)]
        search = v1.get("search", []) if "search" in v1 else None

    processed = _post_process(decoder, registries)
    search_registries = _validate_search(decoder, search)
    if mode and mode not in SHORT_NAME_MODES:
        raise decoder.fail(f'invalid short-name mode: "{mode}"')
    for registry in processed:
        if registry.prefix.startswith("*.") and any(c in registry.prefix for c in "/@:"):
            raise decoder.fail(
                "Wildcarded prefix should be in the format: *.example.com. Current prefix "
                f'"{registry.prefix}" is incorrectly formatted'
            )
    errors = _alias_errors(aliases)
    if errors:
        raise ConfigError("validating short-name aliases: " + "; ".join(errors))
    return _FileConfig(
        registries=tuple(processed),
        unqualified_search_registries=search_registries,
        credential_helpers=tuple(helpers) if helpers is not None else None,
        short_name_mode=mode,
        additional_layer_store_auth_helper=layer_helper,
        aliases=aliases,
        path=path,
    )


def merge(files: Iterable[_FileConfig], main_path: str,
          drop_in_dirs: Iterable[str]) -> RegistriesConf:
    """`updateWithConfigurationFrom` over every file, then the post-merge defaults."""
    registries: dict[str, Registry] = {}
    search: tuple[str, ...] | None = None
    search_origin = ""
    helpers: tuple[str, ...] | None = None
    mode = ""
    layer_helper = ""
    aliases: dict[str, str] = {}
    alias_origins: dict[str, str] = {}
    paths = []
    for config in files:
        paths.append(config.path)
        for registry in config.registries:
            registries[registry.prefix] = registry
        if config.unqualified_search_registries is not None:
            search = config.unqualified_search_registries
            search_origin = config.path
        if config.credential_helpers is not None:
            helpers = config.credential_helpers
        if config.short_name_mode:
            mode = config.short_name_mode
        if config.additional_layer_store_auth_helper:
            layer_helper = config.additional_layer_store_auth_helper
        for name, value in config.aliases.items():
            if value == "":
                aliases.pop(name, None)
                alias_origins.pop(name, None)
            else:
                aliases[name] = str(parse_normalized(value))
                alias_origins[name] = config.path
    return RegistriesConf(
        registries=tuple(registries[p] for p in sorted(registries, key=str.encode)),
        unqualified_search_registries=search,
        unqualified_search_origin=search_origin,
        credential_helpers=helpers or DEFAULT_CREDENTIAL_HELPERS,
        short_name_mode=mode or DEFAULT_SHORT_NAME_MODE,
        aliases=aliases,
        alias_origins=alias_origins,
        additional_layer_store_auth_helper=layer_helper,
        main_path=main_path,
        drop_in_dirs=tuple(drop_in_dirs),
        files=tuple(paths),
    )


# ---------------------------------------------------------------- loading (I/O)


@dataclass(frozen=True)
class RegistriesConfPaths:
    """Which files make up the configuration (see `paths.registries_conf_paths`)."""

    main: str
    main_must_exist: bool
    drop_in_dirs: tuple[str, ...]


def drop_in_files(directory: str) -> list[str]:
    """`*.conf` files of a drop-in directory in byte order; a missing directory is empty."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    except OSError as error:
        raise ConfigError(f'reading drop-in directory "{directory}": {error.strerror}') from None
    files = []
    for name in sorted(names, key=str.encode):
        full = os.path.join(directory, name)
        if name.endswith(".conf") and not os.path.isdir(full):
            files.append(full)
    return files


def _read(path: str) -> str:
    return Path(path).read_bytes().decode("utf-8", errors="strict")


def load_registries_conf(paths: RegistriesConfPaths) -> RegistriesConf:
    """Read the main file and every drop-in, as containers/image does for a pull."""
    configs = []
    try:
        configs.append(parse_registries_conf(_read(paths.main), paths.main))
    except FileNotFoundError:
        if paths.main_must_exist:
            raise ConfigError(
                f'loading registries configuration "{paths.main}": open {paths.main}: '
                "no such file or directory"
            ) from None
    except (ConfigError, OSError, UnicodeDecodeError) as error:
        raise ConfigError(
            f'loading registries configuration "{paths.main}": {_describe(error)}'
        ) from None
    for directory in paths.drop_in_dirs:
        for path in drop_in_files(directory):
            try:
                configs.append(parse_registries_conf(_read(path), path, drop_in=True))
            except FileNotFoundError:
                continue
            except (ConfigError, OSError, UnicodeDecodeError) as error:
                raise ConfigError(
                    f'loading drop-in registries configuration "{path}": {_describe(error)}'
                ) from None
    return merge(configs, paths.main, paths.drop_in_dirs)


def _describe(error: Exception) -> str:
    if isinstance(error, OSError):
        return error.strerror or str(error)
    if isinstance(error, UnicodeDecodeError):
        return f"not UTF-8 text (byte {error.start})"
    return str(error)
