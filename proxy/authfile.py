"""auth.json: which credentials apply to a physical repository.

Credentials are keyed on the *physical* source (a mirror needs its own entry). Within a
file: a `credHelpers` entry for the registry host wins; then `auths` keys by exact
match, most specific first (`host/ns/repo`, `host/ns`, `host`); then a normalized scan
for old-style keys (`https://host/v1/`, `docker.io` spelled as `index.docker.io`).
The first file with a hit wins.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import PARSER_FAILURES, ConfigError, parser_failure


@dataclass(frozen=True)
class AuthFile:
    path: str
    auths: Mapping[str, Mapping[str, Any]]
    cred_helpers: Mapping[str, str]
    legacy: bool = False
    """`~/.dockercfg`: the whole file is `auths`, keyed by host only."""


@dataclass(frozen=True)
class Credentials:
    """The match for one repository; the secret is kept out of `repr`."""

    file: str
    key: str
    """The `auths` key that matched, or the host for a helper."""
    helper: str | None = None
    username: str = ""
    password: str = ""
    identity_token: str = ""

    def __repr__(self) -> str:
        return f"Credentials(file={self.file!r}, key={self.key!r}, helper={self.helper!r})"


def parse_auth_file(text: str, path: str, *, legacy: bool = False) -> AuthFile:
    try:
        raw = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as error:
        raise ConfigError(f'{path}:{error.lineno}: invalid JSON: {error.msg}') from None
    except PARSER_FAILURES as error:
        raise ConfigError(f"{path}: invalid JSON: {parser_failure(error)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: not a JSON object")
    if legacy:
        _check_entries(path, raw)
        return AuthFile(path, raw, {}, legacy=True)
    auths = raw.get("auths", {})
    helpers = raw.get("credHelpers", {})
    if not isinstance(auths, dict) or not isinstance(helpers, dict):
        raise ConfigError(f'{path}: "auths" and "credHelpers" must be JSON objects')
    _check_entries(path, auths)
    for registry, helper in helpers.items():
        if not isinstance(helper, str):
            raise ConfigError(f'{path}: credHelpers["{registry}"] must be a string')
    return AuthFile(path, auths, helpers)


def _check_entries(path: str, auths: Mapping[str, Any]) -> None:
    """Every `auths` entry is an object whose `auth` and `identitytoken` are strings, and
    whose `auth` decodes: the whole file is refused when it is read, by every command and
    by a reload alike (containers/image refuses it only when a pull looks that entry up)."""
    for key, entry in auths.items():
        if not isinstance(entry, dict):
            raise ConfigError(f'{path}: auths["{key}"] must be a JSON object')
        for field in ("auth", "identitytoken"):
            if entry.get(field) is not None and not isinstance(entry[field], str):
                raise ConfigError(f'{path}: auths["{key}"].{field} must be a string')
        _decode(path, key, entry)


def auth_keys(name: str) -> list[str]:
    """`authKeysForKey`: `host/ns/repo`, `host/ns`, `host`."""
    keys = [name]
    while "/" in name:
        name = name[: name.rfind("/")]
        keys.append(name)
    return keys


def _normalize_registry(host: str) -> str:
    return "index.docker.io" if host in ("registry-1.docker.io", "docker.io") else host


def _normalize_key(key: str, legacy: bool) -> str:
    stripped = key.removeprefix("http://").removeprefix("https://")
    if legacy or stripped != key:
        stripped = stripped.split("/", 1)[0]
    return _normalize_registry(stripped)


def _decode(path: str, key: str, entry: Mapping[str, Any]) -> Credentials:
    """`decodeDockerAuth`: an `auth` without `user:password` decodes to nothing."""
    token = entry.get("identitytoken", "") or ""
    encoded = entry.get("auth", "") or ""
    username = password = ""
    if encoded:
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise ConfigError(f'{path}: credentials for "{key}" are not valid base64') from None
        if ":" in decoded:
            username, password = decoded.split(":", 1)
    return Credentials(path, key, username=username, password=password, identity_token=token)


def _match_in_file(auth: AuthFile, name: str, registry: str) -> Credentials | None:
    """`findCredentialsInFile`: the first key that exists decides, even if it decodes empty."""
    helper = auth.cred_helpers.get(registry)
    if helper is not None:
        return Credentials(auth.path, registry, helper=helper)
    for key in [registry] if auth.legacy else auth_keys(name):
        if key in auth.auths:
            return _decode(auth.path, key, auth.auths[key])
    wanted = _normalize_registry(registry)
    for key, entry in auth.auths.items():
        if _normalize_key(key, auth.legacy) == wanted:
            return _decode(auth.path, key, entry)
    return None


def find_credentials(files: list[AuthFile], name: str) -> Credentials | None:
    """Credentials for the physical repository `name` (`host[:port]/path`).

    A file whose match is empty (no usable secret) passes the search on to the next file.
    """
    registry = name.split("/", 1)[0]
    for auth in files:
        found = _match_in_file(auth, name, registry)
        if found is not None and (
            found.helper or (found.username and found.password) or found.identity_token
        ):
            return found
    return None


def load_auth_files(paths: list[tuple[str, bool]]) -> list[AuthFile]:
    """Read the auth files that exist, in order; `(path, legacy)` pairs."""
    files = []
    for path, legacy in paths:
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f'reading auth file "{path}": {error}') from None
        files.append(parse_auth_file(text, path, legacy=legacy))
    return files
