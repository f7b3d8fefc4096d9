"""registries.d: where signatures of an image are read from, as containers/image decides it.

Each `*.yaml` file of the directory (containers-registries.d(5)) may hold a
`default-docker` section and a `docker` map from scope to section; a section has
`lookaside` (the older name: `sigstore`), `lookaside-staging` and `sigstore-staging`
(used only when writing signatures) and `use-sigstore-attachments`. The files are merged
strictly: one scope, or `default-docker`, defined in two files is an error naming both
(containers/image `docker/registries_d.go`, `loadAndMergeConfig` / `loadRegistryConfiguration`).

The lookup is for the *physical* reference, the source that served the manifest:

- scopes are tried from the most precise (`host/repo:tag` or `host/repo@digest`), through
  the repository and its parent namespaces, the `host[:port]`, `*.domain` wildcards, to
  `default-docker` (`signatureTopLevel`, `useSigstoreAttachments`);
- a section that lacks the key asked for does not end the walk: the next, wider scope is
  asked, for the lookaside URL and for `use-sigstore-attachments` separately (a section with
  only `use-sigstore-attachments` leaves the lookaside to its parent, and the other way round);
- for reading, only `lookaside`, then `sigstore`, count: a section with only
  `lookaside-staging` gives no lookaside for a pull;
- with nothing configured the lookaside is the built-in `file:///var/lib/containers/sigstore`
  (root; rootless: `~/.local/share/containers/sigstore`), so a lookaside always exists;
- the repository's path is appended to the URL (`<lookaside>/<path>`) and each signature is
  `<that>@<algorithm>=<hex>/signature-<N>`, N from 1 (`lookasideStorageURL`); sigstore
  attachments are the tag `<algorithm>-<hex>.sig` in the same repository
  (`sigstoreAttachmentTag`).

The YAML is decoded as Go's yaml.v3 decodes it into containers/image's structs: only the
first document is read; any scalar is accepted as a string, taken as written
(`lookaside: 123` is the URL `123`); `use-sigstore-attachments` takes `true`/`false` and
YAML 1.1's `yes`/`on`/`no`/`off`, but not the string `"true"`; a mapping key written twice
is an error; keys that containers/image does not know are ignored (they are kept as
warnings here, since a misspelt key silently does nothing on a node). URL errors surface at
lookup, as upstream's do, with Go's `net/url` rules.

Everything here is pure except `load_registries_d`, which reads a directory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import yaml

from .errors import PARSER_FAILURES, ConfigError, parser_failure, yaml_error
from .reference import ImageReference, InvalidReference, validate_digest

DEFAULT_LOOKASIDE = "file:///var/lib/containers/sigstore"
"""The built-in lookaside of a process running as root (CRI-O, podman as root)."""
ROOTLESS_LOOKASIDE_DIR = ".local/share/containers/sigstore"
"""Under the user's home: the built-in lookaside of a rootless process."""
SYSTEM_REGISTRIES_D = "/etc/containers/registries.d"

SECTION_KEYS = ("lookaside", "lookaside-staging", "sigstore", "sigstore-staging",
                "use-sigstore-attachments")
TOP_KEYS = ("default-docker", "docker")


class RegistriesDError(ConfigError):
    """A registries.d file, or a lookaside URL it names, that containers/image refuses."""


# ---------------------------------------------------------------- the configuration


@dataclass(frozen=True)
class Section:
    """One `registryNamespace`: a `default-docker` or `docker.<scope>` section."""

    lookaside: str = ""
    lookaside_staging: str = ""
    sigstore: str = ""
    sigstore_staging: str = ""
    use_sigstore_attachments: bool | None = None
    """None when the key is absent (or null): the lookup moves on to the wider scope."""
    origin: str = ""
    """`FILE:LINE` where the section starts."""

    def read_lookaside(self) -> tuple[str, str] | None:
        """(key, URL) this section gives for reading signatures, or None (`signatureTopLevel`
        with write=false: `lookaside`, then the older `sigstore`; staging keys never)."""
        if self.lookaside:
            return "lookaside", self.lookaside
        if self.sigstore:
            return "sigstore", self.sigstore
        return None

    def write_lookaside(self) -> tuple[str, str] | None:
        """(key, URL) for writing signatures: the staging keys first, then as for reading."""
        if self.lookaside_staging:
            return "lookaside-staging", self.lookaside_staging
        if self.sigstore_staging:
            return "sigstore-staging", self.sigstore_staging
        return self.read_lookaside()


@dataclass(frozen=True)
class RegistriesDFile:
    """One file's sections, before merging."""

    path: str
    default_docker: Section | None = None
    docker: tuple[tuple[str, Section], ...] = ()
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class RegistriesD:
    """The merged configuration of a registries.d directory."""

    default_docker: Section | None = None
    docker: Mapping[str, Section] = field(default_factory=lambda: MappingProxyType({}))
    files: tuple[str, ...] = ()
    """The files read, in the order they were merged."""
    warnings: tuple[str, ...] = ()
    """Keys containers/image ignores (one line each, naming the file and line)."""
    directory: str = ""


# ---------------------------------------------------------------- YAML as yaml.v3 decodes it


@dataclass
class _Node:
    kind: str  # "scalar", "mapping", "sequence"
    line: int
    tag: str | None = None
    value: str = ""
    plain: bool = False
    items: list[Any] = field(default_factory=list)
    """Mapping: [(key, value), ...]; sequence: [node, ...]."""


def _first_document(data: bytes | str) -> _Node | None:
    """The first document as a node tree, built from PyYAML's events without recursion (so
    any nesting depth is read as yaml.v3 reads it), or None for an empty stream."""
    anchors: dict[str, _Node] = {}
    stack: list[tuple[_Node, list[_Node]]] = []  # (container, pending key for mappings)
    root: _Node | None = None

    def add(node: _Node) -> None:
        nonlocal root
        if not stack:
            root = node
            return
        container, pending = stack[-1]
        if container.kind == "sequence":
            container.items.append(node)
        elif pending:
            container.items.append((pending.pop(), node))
        else:
            pending.append(node)

    for event in yaml.parse(data, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.DocumentEndEvent):
            break  # yaml.v3's Unmarshal reads the first document only
        line = (event.start_mark.line + 1) if event.start_mark else 0
        if isinstance(event, yaml.ScalarEvent):
            node = _Node("scalar", line, event.tag if event.tag not in (None, "!") else None,
                         event.value, plain=event.style is None and event.tag is None)
        elif isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            kind = "mapping" if isinstance(event, yaml.MappingStartEvent) else "sequence"
            node = _Node(kind, line, event.tag if event.tag not in (None, "!") else None)
        elif isinstance(event, yaml.AliasEvent):
            target = anchors.get(event.anchor or "")
            if target is None:
                mark = event.start_mark if isinstance(event.start_mark, yaml.Mark) else None
                raise yaml.composer.ComposerError(
                    None, None, f"found undefined alias {event.anchor!r}", mark)
            add(target)
            continue
        elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            node, _ = stack.pop()
            add(node)
            continue
        else:
            continue
        anchor = getattr(event, "anchor", None)
        if anchor:
            anchors[anchor] = node
        if node.kind == "scalar":
            add(node)
        else:
            stack.append((node, []))
    return root


_NULLS = ("", "~", "null", "Null", "NULL")
_TRUE = ("true", "True", "TRUE")
_FALSE = ("false", "False", "FALSE")
# What a bool accepts beyond YAML 1.2's true/false (yaml.v3 keeps YAML 1.1's words for it).
_COMPAT_TRUE = ("y", "Y", "yes", "Yes", "YES", "on", "On", "ON")
_COMPAT_FALSE = ("n", "N", "no", "No", "NO", "off", "Off", "OFF")
_INT = re.compile(r"[-+]?(?:0b[01_]+|0o?[0-7_]+|0x[0-9a-fA-F_]+|[0-9][0-9_]*)")
_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)")
_TAGS = {"tag:yaml.org,2002:" + name: "!!" + name
         for name in ("str", "int", "float", "bool", "null", "map", "seq", "binary",
                      "timestamp", "merge")}


def _short_tag(node: _Node) -> str:
    """The tag yaml.v3 names in its messages (`!!str`, `!!int`, `!!map`...)."""
    if node.tag is not None:
        return _TAGS.get(node.tag, node.tag)
    if node.kind != "scalar":
        return "!!map" if node.kind == "mapping" else "!!seq"
    if not node.plain:
        return "!!str"
    text = node.value
    if text in _NULLS:
        return "!!null"
    if text in _TRUE or text in _FALSE:
        return "!!bool"
    if _INT.fullmatch(text) and text.strip("+-_"):
        return "!!int"
    if _FLOAT.fullmatch(text):
        return "!!float"
    return "!!str"


def _is_null(node: _Node) -> bool:
    return node.kind == "scalar" and _short_tag(node) == "!!null"


class _Decoder:
    """Collects yaml.v3's "unmarshal errors" (all of them, as it does) and the warnings."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def type_error(self, node: _Node, into: str) -> None:
        shown = ""
        if node.kind == "scalar":
            value = node.value
            shown = f" `{value[:7]}...`" if len(value) > 10 else f" `{value}`"
        self.errors.append(f"line {node.line}: cannot unmarshal {_short_tag(node)}{shown} "
                           f"into {into}")

    def pairs(self, node: _Node, into: str) -> list[tuple[str, _Node, int]] | None:
        """A mapping's (key as text, value, key line), merges (`<<`) applied; duplicates
        are errors. None (and an error) when `node` is no mapping."""
        if node.kind != "mapping":
            self.type_error(node, into)
            return None
        own: list[tuple[str, _Node, int]] = []
        seen: dict[tuple[str, str], int] = {}
        merged: list[tuple[str, _Node, int]] = []
        for key, value in node.items:
            if key.kind == "scalar" and key.plain and key.value == "<<":
                for source in (value.items if value.kind == "sequence" else [value]):
                    merged += self.pairs(source, into) or []
                continue
            identity = (key.kind, key.value)
            if identity in seen:
                self.errors.append(f"line {key.line}: mapping key {_go_quote(key.value)} "
                                   f"already defined at line {seen[identity]}")
                continue
            seen[identity] = key.line
            text = "" if _is_null(key) else key.value if key.kind == "scalar" else None
            if text is None:
                self.type_error(key, "string")
                continue
            own.append((text, value, key.line))
        names = {name for name, _, _ in own}
        return own + [pair for pair in merged if pair[0] not in names]

    def string(self, node: _Node) -> str:
        if node.kind != "scalar":
            self.type_error(node, "string")
            return ""
        return "" if _is_null(node) else node.value

    def boolean(self, node: _Node) -> bool | None:
        if _is_null(node):
            return None
        if node.kind == "scalar":
            tag = _short_tag(node)
            if tag == "!!bool":
                return node.value in _TRUE
            if tag == "!!str" and node.value in _COMPAT_TRUE + _COMPAT_FALSE:
                return node.value in _COMPAT_TRUE
        self.type_error(node, "bool")
        return None

    def unknown(self, key: str, line: int, where: str) -> None:
        self.warnings.append(f"{self.path}:{line}: {where}unknown key {_go_quote(key)} is "
                             "ignored by containers/image")

    def section(self, node: _Node, where: str) -> Section:
        values: dict[str, Any] = {}
        if not _is_null(node):
            for key, value, line in self.pairs(node, "docker.registryNamespace") or []:
                if key == "use-sigstore-attachments":
                    values[key] = self.boolean(value)
                elif key in SECTION_KEYS:
                    values[key] = self.string(value)
                else:
                    self.unknown(key, line, where)
        return Section(
            lookaside=values.get("lookaside", ""),
            lookaside_staging=values.get("lookaside-staging", ""),
            sigstore=values.get("sigstore", ""),
            sigstore_staging=values.get("sigstore-staging", ""),
            use_sigstore_attachments=values.get("use-sigstore-attachments"),
            origin=f"{self.path}:{node.line}")


def parse_registries_d(data: bytes | str, path: str) -> RegistriesDFile:
    """Decode one registries.d file; `path` names it in errors and origins."""
    try:
        root = _first_document(data)
    except yaml.YAMLError as error:
        raise yaml_error(path, error) from None
    except PARSER_FAILURES as error:
        raise RegistriesDError(f"{path}: invalid YAML: {parser_failure(error)}") from None
    decoder = _Decoder(path)
    default: Section | None = None
    docker: dict[str, Section] = {}
    if root is not None and not _is_null(root):
        for key, value, line in decoder.pairs(root, "docker.registryConfiguration") or []:
            if key == "default-docker":
                default = None if _is_null(value) else decoder.section(value, "default-docker: ")
            elif key == "docker":
                if _is_null(value):
                    continue
                where = "map[string]docker.registryNamespace"
                for scope, section, _ in decoder.pairs(value, where) or []:
                    docker[scope] = decoder.section(section, f"docker {_go_quote(scope)}: ")
            else:
                decoder.unknown(key, line, "")
    if decoder.errors:
        raise RegistriesDError(f"parsing {path}: yaml: unmarshal errors: "
                               + "; ".join(decoder.errors))
    return RegistriesDFile(path, default, tuple(docker.items()), tuple(decoder.warnings))


def merge_registries_d(files: Iterable[RegistriesDFile], directory: str = "") -> RegistriesD:
    """Merge files in order; a scope (or `default-docker`) in two files is an error."""
    default: Section | None = None
    default_from = ""
    docker: dict[str, Section] = {}
    docker_from: dict[str, str] = {}
    paths: list[str] = []
    warnings: list[str] = []
    for item in files:
        paths.append(item.path)
        warnings += item.warnings
        if item.default_docker is not None:
            if default is not None:
                raise RegistriesDError(
                    'Error parsing signature storage configuration: "default-docker" defined '
                    f"both in {_go_quote(default_from)} and {_go_quote(item.path)}")
            default, default_from = item.default_docker, item.path
        for scope, section in item.docker:
            if scope in docker:
                raise RegistriesDError(
                    'Error parsing signature storage configuration: "docker" namespace '
                    f"{_go_quote(scope)} defined both in {_go_quote(docker_from[scope])} and "
                    f"{_go_quote(item.path)}")
            docker[scope] = section
            docker_from[scope] = item.path
    return RegistriesD(default, MappingProxyType(docker), tuple(paths), tuple(warnings),
                       directory)


def load_registries_d(directory: str | os.PathLike[str]) -> RegistriesD:
    """Read every `*.yaml` file of `directory`, in name order (a missing directory is an
    empty configuration, as upstream; sub-directories and other names are skipped)."""
    directory = os.fspath(directory)
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return RegistriesD(directory=directory)
    except OSError as error:
        raise RegistriesDError(f"{directory}: {error.strerror or error}") from None
    files = []
    for name in names:
        path = os.path.join(directory, name)
        if not name.endswith(".yaml") or os.path.isdir(path):
            continue
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            continue  # removed since the listing (or a dangling link), as upstream
        except OSError as error:
            raise RegistriesDError(f"{path}: {error.strerror or error}") from None
        files.append(parse_registries_d(data, path))
    return merge_registries_d(files, directory)


# ---------------------------------------------------------------- lookup


def reference_scopes(ref: ImageReference) -> list[str]:
    """`PolicyConfigurationIdentity` then `PolicyConfigurationNamespaces`: the docker keys
    tried for `ref`, most precise first (no `""`: registries.d has `default-docker`)."""
    name = ref.name
    scopes = [name + ref.identity] if ref.identity else []
    while True:
        scopes.append(name)
        if "/" not in name:
            break
        name = name.rsplit("/", 1)[0]
    host = name.split(":", 1)[0]
    while "." in host:
        host = host.split(".", 1)[1]
        scopes.append("*." + host)
    return scopes


@dataclass(frozen=True)
class Choice:
    """Which section decided a setting: `scope` is a docker key, `default-docker`, or
    `built-in` when nothing in registries.d did."""

    scope: str
    key: str
    origin: str = ""

    def describe(self) -> str:
        if self.scope == "built-in":
            return "built-in default (nothing in registries.d)"
        where = "default-docker" if self.scope == "default-docker" else f"docker {self.scope!r}"
        return f"{where} {self.key}" + (f" ({self.origin})" if self.origin else "")


@dataclass(frozen=True)
class SignatureStorage:
    """Where the signatures of images pulled from one physical repository are read."""

    reference: ImageReference
    """The physical reference (the source that served the manifest)."""
    lookaside: str
    """The lookaside base for this repository: `<configured URL>/<repository path>`."""
    configured: str
    """The URL as registries.d (or the built-in default) gives it, before the path."""
    lookaside_from: Choice
    use_sigstore_attachments: bool
    attachments_from: Choice
    _base: _GoURL | None = field(default=None, repr=False, compare=False)

    def lookaside_url(self, digest: str, index: int) -> str:
        """The URL of signature `index` (0-based: `signature-1` first) of the manifest with
        `digest`; a pull reads 1, 2, ... until one is missing."""
        return lookaside_signature_url(self._base or self.lookaside, digest, index)

    def attachment_tag(self, digest: str) -> str:
        """The tag holding the sigstore attachments of `digest`, in this repository."""
        return sigstore_attachment_tag(digest)

    def describe(self) -> list[str]:
        attachments = ("on" if self.use_sigstore_attachments else "off")
        return [f"lookaside: {self.lookaside} ({self.lookaside_from.describe()})",
                f"sigstore attachments: {attachments} ({self.attachments_from.describe()})"]


def _lookaside_choice(config: RegistriesD, scopes: Sequence[str]) -> tuple[str, Choice] | None:
    for scope in scopes:
        section = config.docker.get(scope)
        found = section.read_lookaside() if section is not None else None
        if found is not None and section is not None:
            return found[1], Choice(scope, found[0], section.origin)
    if config.default_docker is not None:
        found = config.default_docker.read_lookaside()
        if found is not None:
            return found[1], Choice("default-docker", found[0], config.default_docker.origin)
    return None


def _attachments_choice(config: RegistriesD, scopes: Sequence[str]) -> tuple[bool, Choice]:
    key = "use-sigstore-attachments"
    for scope in scopes:
        section = config.docker.get(scope)
        if section is not None and section.use_sigstore_attachments is not None:
            return section.use_sigstore_attachments, Choice(scope, key, section.origin)
    default = config.default_docker
    if default is not None and default.use_sigstore_attachments is not None:
        return default.use_sigstore_attachments, Choice("default-docker", key, default.origin)
    return False, Choice("built-in", key)


def signature_storage(config: RegistriesD, ref: ImageReference, *,
                      default_lookaside: str = DEFAULT_LOOKASIDE) -> SignatureStorage:
    """Where a pull from the physical reference `ref` (with its tag or digest, as it was
    pulled) reads signatures. `default_lookaside` is the built-in base used when nothing
    is configured (`DEFAULT_LOOKASIDE` for root; `file://$HOME/` + `ROOTLESS_LOOKASIDE_DIR`
    rootless). Raises `RegistriesDError` for a lookaside URL that Go's url.Parse refuses."""
    scopes = reference_scopes(ref)
    chosen = _lookaside_choice(config, scopes)
    if chosen is None:
        top, choice = default_lookaside, Choice("built-in", "lookaside")
    else:
        top, choice = chosen
    try:
        url = _GoURL.parse(top)
    except ValueError as error:
        raise RegistriesDError(f"Invalid signature storage URL {top}: parse {_go_quote(top)}: "
                               f"{error}") from None
    url = url.with_path(url.path + "/" + ref.path)
    attachments, attachments_from = _attachments_choice(config, scopes)
    return SignatureStorage(ref, str(url), top, choice, attachments, attachments_from,
                            url)


def lookaside_signature_url(base: str | _GoURL, digest: str, index: int) -> str:
    """`lookasideStorageURL`: `<base>@<algorithm>=<hex>/signature-<index + 1>`."""
    try:
        validate_digest(digest)
    except InvalidReference as error:
        raise RegistriesDError(f"{digest}: {error}") from None
    url = base if isinstance(base, _GoURL) else _GoURL.parse(base)
    algorithm, encoded = digest.split(":", 1)
    return str(url.with_path(f"{url.path}@{algorithm}={encoded}/signature-{index + 1}"))


def sigstore_attachment_tag(digest: str) -> str:
    """`sigstoreAttachmentTag`: `sha256:<hex>` is stored under the tag `sha256-<hex>.sig`."""
    try:
        validate_digest(digest)
    except InvalidReference as error:
        raise RegistriesDError(f"{digest}: {error}") from None
    return digest.replace(":", "-", 1) + ".sig"


# ---------------------------------------------------------------- Go's net/url, the parts used

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")
_HOST_EXTRA = frozenset("!$&'()*+,;=:[]<>\"")


def _should_escape(char: str, mode: str) -> bool:
    """net/url's shouldEscape for the modes used: path, host, userinfo, fragment."""
    if char.isascii() and char.isalnum():
        return False
    if mode == "host" and char in _HOST_EXTRA:
        return False
    if char in "-_.~":
        return False
    if char in "$&+,/:;=?@":
        if mode == "userinfo":
            return char in "@/?:"
        if mode == "fragment":
            return False
        if mode == "path":
            return char == "?"
        return True
    return not (mode == "fragment" and char in "!()*")


def _escape(text: str, mode: str) -> str:
    """net/url's escape: `%XX` (upper case) for each byte that must be escaped; a host keeps
    its non-ASCII characters."""
    out = []
    for char in text:
        if char.isascii():
            out.append(f"%{ord(char):02X}" if _should_escape(char, mode) else char)
        elif mode == "host":
            out.append(char)
        else:
            out.extend(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))
    return "".join(out)


def _unescape(text: str, mode: str) -> str:
    data = text.encode("utf-8", "surrogateescape")
    out = bytearray()
    index = 0
    while index < len(data):
        byte = data[index]
        if byte == ord("%"):
            chunk = data[index:index + 3]
            if len(chunk) < 3 or not all(chr(c) in "0123456789abcdefABCDEF" for c in chunk[1:]):
                raise ValueError(f"invalid URL escape {_go_quote(chunk.decode(errors='replace'))}")
            out.append(int(chunk[1:].decode(), 16))
            index += 3
            continue
        if mode == "host" and byte < 0x80 and _should_escape(chr(byte), "host"):
            raise ValueError(f"invalid character {_go_quote(chr(byte))} in host name")
        out.append(byte)
        index += 1
    return bytes(out).decode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class _GoURL:
    """The fields of Go's url.URL that Parse fills and String writes back."""

    scheme: str = ""
    opaque: str = ""
    user: tuple[str, str | None] | None = None
    host: str = ""
    path: str = ""
    omit_host: bool = False
    force_query: bool = False
    raw_query: str = ""
    fragment: str | None = None
    raw_fragment: str = ""

    @classmethod
    def parse(cls, raw: str) -> _GoURL:
        """url.Parse: raises ValueError with Go's message."""
        rest, hash_mark, fragment_text = raw.partition("#")
        fragment = None
        if hash_mark:
            fragment = _unescape(fragment_text, "fragment")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in rest):
            raise ValueError("net/url: invalid control character in URL")
        if rest == "" and not hash_mark:
            return cls()
        scheme = ""
        for index, char in enumerate(rest):
            if char.isascii() and char.isalpha():
                continue
            if char.isascii() and (char.isdigit() or char in "+-."):
                if index == 0:
                    break
                continue
            if char == ":":
                if index == 0:
                    raise ValueError("missing protocol scheme")
                scheme, rest = rest[:index].lower(), rest[index + 1:]
            break
        force_query, raw_query = False, ""
        if rest.endswith("?") and rest.count("?") == 1:
            force_query, rest = True, rest[:-1]
        elif "?" in rest:
            rest, raw_query = rest.split("?", 1)
        if not rest.startswith("/"):
            if scheme:
                return cls(scheme=scheme, opaque=rest, force_query=force_query,
                           raw_query=raw_query, fragment=fragment,
                           raw_fragment=fragment_text if hash_mark else "")
            if ":" in rest.split("/", 1)[0]:
                raise ValueError("first path segment in URL cannot contain colon")
        user: tuple[str, str | None] | None = None
        host = ""
        omit_host = False
        if (scheme or not rest.startswith("///")) and rest.startswith("//"):
            authority, slash, remainder = rest[2:].partition("/")
            rest = slash + remainder
            user, host = cls._authority(authority)
        elif scheme and rest.startswith("/"):
            omit_host = True
        return cls(scheme, "", user, host, _unescape(rest, "path"), omit_host, force_query,
                   raw_query, fragment, fragment_text if hash_mark else "")

    @staticmethod
    def _authority(authority: str) -> tuple[tuple[str, str | None] | None, str]:
        user: tuple[str, str | None] | None = None
        at = authority.rfind("@")
        host_text = authority[at + 1:]
        if at >= 0:
            info = authority[:at]
            if any(not (c.isascii() and (c.isalnum() or c in "-._:~!$&'()*+,;=%@"))
                   for c in info):
                raise ValueError("net/url: invalid userinfo")
            name, separator, password = info.partition(":")
            user = (_unescape(name, "userinfo"), _unescape(password, "userinfo") if separator
                    else None)
        if host_text.startswith("["):
            close = host_text.rfind("]")
            if close < 0:
                raise ValueError("missing ']' in host")
            port = host_text[close + 1:]
        else:
            colon = host_text.rfind(":")
            port = host_text[colon:] if colon >= 0 else ""
        if port and not (port.startswith(":") and port[1:].isascii()
                         and (port[1:].isdigit() or port == ":")):
            raise ValueError(f"invalid port {_go_quote(port)} after host")
        return user, _unescape(host_text, "host")

    def with_path(self, path: str) -> _GoURL:
        return _GoURL(self.scheme, self.opaque, self.user, self.host, path, self.omit_host,
                      self.force_query, self.raw_query, self.fragment, self.raw_fragment)

    def __str__(self) -> str:
        out = []
        if self.scheme:
            out.append(self.scheme + ":")
        if self.opaque:
            out.append(self.opaque)
        else:
            if (self.scheme or self.host or self.user is not None) and not (
                    self.omit_host and not self.host and self.user is None):
                if self.host or self.path or self.user is not None:
                    out.append("//")
                if self.user is not None:
                    name, password = self.user
                    out.append(_escape(name, "userinfo"))
                    if password is not None:
                        out.append(":" + _escape(password, "userinfo"))
                    out.append("@")
                out.append(_escape(self.host, "host"))
            path = _escape(self.path, "path")
            if path and not path.startswith("/") and self.host:
                out.append("/")
            if not out and ":" in path.split("/", 1)[0]:
                out.append("./")
            out.append(path)
        if self.force_query or self.raw_query:
            out.append("?" + self.raw_query)
        if self.fragment is not None:
            raw = self.raw_fragment
            valid = all(c == "%" or c in "!$&'()*+,;=:@[]" or not _should_escape(c, "fragment")
                        for c in raw)
            out.append("#" + (raw if valid and raw else _escape(self.fragment, "fragment")))
        return "".join(out)


def _go_quote(text: str) -> str:
    """Go's `%q` of a string, for the names in messages."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif char in "\a\b\f\n\r\t\v":
            out.append("\\" + "abfnrtv"["\a\b\f\n\r\t\v".index(char)])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif not char.isprintable():
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(char)
    return "".join(out) + '"'
