"""policy.json: strict parsing and the docker-transport decision for a logical reference.

The policy is looked up on the *logical* reference (what the user asked for), never on
the mirror that serves it. Exactly one requirement list applies, the most specific scope
that exists; all its requirements must allow (AND).

The file is read as containers/image reads it (signature/policy_config.go,
policy_config_sigstore.go, signature/internal/json.go): `json.Unmarshal` first checks the
syntax of the whole document, then the strict decoders walk it in document order and the
first problem met is the error, with upstream's text (Go's encoding/json texts for syntax
and type errors). mirrorlab only adds where it is: the file, the list (`transports.docker
["scope"]: `) and, for a syntax error, the line.

`signedBy` and `sigstoreSigned` are parsed as strictly as upstream parses them. Their
verdict needs the image's manifest and signatures: `mirrorlab.proxy.signatures.
evaluate_requirements` gives it from the decision's `requirements`. `evaluate_policy` alone,
for callers that fetch no signatures, answers what containers/image answers for an image
without signatures (`A signature was required, but no signature exists`) and sets
`needs_signatures` when the verdict would depend on them.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .errors import ConfigError
from .reference import (
    DOMAIN_PATTERN,
    ImageReference,
    InvalidReference,
    parse_normalized,
    validate_digest,
)

TRANSPORT = "docker"


@dataclass(frozen=True)
class Requirement:
    """One entry of a requirement list; `fields` keeps the parsed options for reports."""

    type: str
    fields: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Policy:
    default: tuple[Requirement, ...]
    transports: Mapping[str, Mapping[str, tuple[Requirement, ...]]]
    path: str = ""


SIGNATURE_REQUIREMENTS = frozenset({"signedBy", "sigstoreSigned"})
"""The requirement types that verify signatures (`verifiesSignatures` upstream)."""

NO_SIGNATURE = "A signature was required, but no signature exists"


@dataclass(frozen=True)
class PolicyDecision:
    allowed: bool
    scope: str
    """The scope whose list decided: a docker scope key, `""`, or `default`."""
    reason: str
    """Why not allowed, as containers/image says it for an image without signatures."""
    requirements: tuple[Requirement, ...] = ()
    needs_signatures: bool = False
    """The list verifies signatures and nothing in it refuses regardless of them: the
    verdict is `evaluate_requirements(requirements, ...)` on the served manifest and its
    signatures, not `allowed`."""


# ---------------------------------------------------------------- Go's encoding/json
#
# The document is decoded into plain values that keep what the Go decoders look at:
# objects as `_Object` (pairs in document order, duplicates kept), numbers as `_Number`
# (their text), strings as Go holds them (invalid UTF-8 and lone surrogates become
# U+FFFD), arrays as lists, true/false/null as bool/None.


@dataclass(frozen=True)
class _Object:
    pairs: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class _Number:
    text: str


class _SyntaxError(Exception):
    """encoding/json's SyntaxError: the text, and the offset of the byte it is about."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


MAX_DEPTH = 10000
"""encoding/json's maxNestingDepth: deeper arrays and objects are a syntax error."""


def go_quote(text: str) -> str:
    """Go's `%q` of a string (strconv.Quote): printable characters stay, `"` and `\\`
    are escaped, the rest written as `\\n`, `\\xNN`, `\\uNNNN` or `\\UNNNNNNNN`."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif char.isprintable() and not 0xD800 <= code <= 0xDFFF:
            out.append(char)
        elif char in _CONTROL_ESCAPES:
            out.append(_CONTROL_ESCAPES[char])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append("\ufffd")  # not a valid rune: Go writes the replacement character
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


_CONTROL_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
                    "\t": "\\t", "\v": "\\v"}


def _quote_char(byte: int) -> str:
    """The scanner's quoteChar: one byte, as a rune, in single quotes."""
    if byte == 0x27:
        return "'\\''"
    if byte == 0x22:
        return "'\"'"
    return "'" + go_quote(chr(byte))[1:-1] + "'"


_WHITESPACE = frozenset(b" \t\r\n")
_DIGITS = frozenset(b"0123456789")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_SIMPLE_ESCAPES = {ord('"'): '"', ord("\\"): "\\", ord("/"): "/", ord("b"): "\b",
                   ord("f"): "\f", ord("n"): "\n", ord("r"): "\r", ord("t"): "\t"}


class _Scanner:
    """checkValid and the value decoding in one pass over the bytes: the first syntax
    error of the document, with the scanner's text, or the document's value. At the end
    of the input the scanner is handed a space, so a number or literal cut short reads
    `invalid character ' ' in ...`; anything else cut short is `unexpected end of JSON
    input`."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.end = len(data)

    def fail(self, at: int, context: str) -> _SyntaxError:
        byte = self.data[at] if at < self.end else 0x20
        return _SyntaxError(f"invalid character {_quote_char(byte)} {context}", at)

    def eof(self) -> _SyntaxError:
        return _SyntaxError("unexpected end of JSON input", self.end)

    def space(self, at: int) -> int:
        while at < self.end and self.data[at] in _WHITESPACE:
            at += 1
        return at

    def document(self) -> Any:
        data = self.data
        frames: list[tuple[list[Any], list[str] | None]] = []
        """Open arrays (items, None) and objects (pairs, [key being read])."""
        at = 0
        while True:
            # a value starts here
            at = self.space(at)
            if at == self.end:
                raise self.eof()
            byte = data[at]
            value: Any
            if byte in b"[{":
                if len(frames) + 1 > MAX_DEPTH:
                    raise ConfigError("invalid JSON: nested too deeply")
                at = self.space(at + 1)
                if at == self.end:
                    raise self.eof()
                if byte == ord("["):
                    if data[at] != ord("]"):
                        frames.append(([], None))
                        continue
                    value, at = [], at + 1
                elif data[at] == ord("}"):
                    value, at = _Object(()), at + 1
                else:
                    key, at = self.key(at, "looking for beginning of object key string")
                    frames.append(([], [key]))
                    continue
            elif byte == ord('"'):
                value, at = self.string(at)
            elif byte == ord("-") or byte in _DIGITS:
                value, at = self.number(at)
            elif byte in b"tfn":
                value, at = self.literal(at)
            else:
                raise self.fail(at, "looking for beginning of value")
            # the value is complete: close what it completes
            while True:
                if not frames:
                    at = self.space(at)
                    if at < self.end:
                        raise self.fail(at, "after top-level value")
                    return value
                items, pending = frames[-1]
                items.append(value if pending is None else (pending[0], value))
                at = self.space(at)
                if at == self.end:
                    raise self.eof()
                byte = data[at]
                if pending is None and byte == ord(","):
                    at += 1
                    break
                if pending is None and byte == ord("]"):
                    frames.pop()
                    value, at = items, at + 1
                    continue
                if pending is None:
                    raise self.fail(at, "after array element")
                if byte == ord(","):
                    at = self.space(at + 1)
                    if at == self.end:
                        raise self.eof()
                    pending[0], at = self.key(at, "looking for beginning of object key string")
                    break
                if byte == ord("}"):
                    frames.pop()
                    value, at = _Object(tuple(items)), at + 1
                    continue
                raise self.fail(at, "after object key:value pair")

    def key(self, at: int, context: str) -> tuple[str, int]:
        """An object key and its colon; `at` is past any space."""
        if self.data[at] != ord('"'):
            raise self.fail(at, context)
        key, at = self.string(at)
        at = self.space(at)
        if at == self.end:
            raise self.eof()
        if self.data[at] != ord(":"):
            raise self.fail(at, "after object key")
        return key, at + 1

    def string(self, at: int) -> tuple[str, int]:
        """A string literal from its opening quote, decoded as encoding/json unquotes."""
        data, end = self.data, self.end
        pieces: list[str | int] = []  # raw text, or the code unit of a \u escape
        at += 1
        start = at
        while True:
            if at == end:
                raise self.eof()
            byte = data[at]
            if byte == ord('"'):
                if at > start:
                    pieces.append(_utf8(data[start:at]))
                return _join_pieces(pieces), at + 1
            if byte < 0x20:
                raise self.fail(at, "in string literal")
            if byte != ord("\\"):
                at += 1
                continue
            if at > start:
                pieces.append(_utf8(data[start:at]))
            at += 1
            if at == end or (data[at] not in _SIMPLE_ESCAPES and data[at] != ord("u")):
                raise self.fail(at, "in string escape code")
            if data[at] != ord("u"):
                pieces.append(_SIMPLE_ESCAPES[data[at]])
                at += 1
            else:
                for digit in range(at + 1, at + 5):
                    if digit == end or data[digit] not in _HEX:
                        raise self.fail(digit, "in \\u hexadecimal character escape")
                pieces.append(int(data[at + 1:at + 5], 16))
                at += 5
            start = at

    def number(self, at: int) -> tuple[_Number, int]:
        data, end = self.data, self.end
        start = at
        if data[at] == ord("-"):
            at += 1
            if at == end or data[at] not in _DIGITS:
                raise self.fail(at, "in numeric literal")
        if data[at] == ord("0"):
            at += 1
        else:
            while at < end and data[at] in _DIGITS:
                at += 1
        integer = at
        if at < end and data[at] == ord("."):
            at += 1
            if at == end or data[at] not in _DIGITS:
                raise self.fail(at, "after decimal point in numeric literal")
            while at < end and data[at] in _DIGITS:
                at += 1
        if at < end and data[at] in b"eE":
            at += 1
            if at < end and data[at] in b"+-":
                at += 1
            if at == end or data[at] not in _DIGITS:
                raise self.fail(at, "in exponent of numeric literal")
            while at < end and data[at] in _DIGITS:
                at += 1
        limit = sys.get_int_max_str_digits()
        digits = integer - start - (data[start] == ord("-"))
        if at == integer and limit and digits > limit:
            # Go takes it; mirrorlab keeps its own text here (tests/test_malformed_files.py)
            raise ConfigError(f"invalid JSON: a number has more than {limit} digits")
        return _Number(data[start:at].decode("ascii")), at

    def literal(self, at: int) -> tuple[bool | None, int]:
        word = {ord("t"): "true", ord("f"): "false", ord("n"): "null"}[self.data[at]]
        for offset, char in enumerate(word[1:], start=1):
            if at + offset == self.end or self.data[at + offset] != ord(char):
                raise self.fail(at + offset, f"in literal {word} (expecting '{char}')")
        return {"true": True, "false": False, "null": None}[word], at + len(word)


def _utf8(raw: bytes) -> str:
    """Bytes of a string literal as Go reads them: each invalid byte is one U+FFFD."""
    text = raw.decode("utf-8", errors="surrogateescape")
    return re.sub("[\udc80-\udcff]", "\ufffd", text)


def _join_pieces(pieces: list[str | int]) -> str:
    """Join a literal's pieces; a \\u escape of a surrogate pairs with the escape right
    after it or is U+FFFD, as encoding/json's unquote does."""
    out: list[str] = []
    index = 0
    while index < len(pieces):
        piece = pieces[index]
        index += 1
        if isinstance(piece, str):
            out.append(piece)
        elif not 0xD800 <= piece <= 0xDFFF:
            out.append(chr(piece))
        else:
            low = pieces[index] if index < len(pieces) else None
            if piece <= 0xDBFF and isinstance(low, int) and 0xDC00 <= low <= 0xDFFF:
                out.append(chr(0x10000 + ((piece - 0xD800) << 10) + (low - 0xDC00)))
                index += 1
            else:
                out.append("\ufffd")
    return "".join(out)


def _decode_document(data: bytes) -> Any:
    """The document's value; a syntax error as its text after `line N: `."""
    try:
        return _Scanner(data).document()
    except _SyntaxError as error:
        line = data.count(b"\n", 0, error.offset) + 1
        raise ConfigError(f"line {line}: {error}") from None


def _kind(value: Any) -> str:
    """The JSON kind as an UnmarshalTypeError names it."""
    if isinstance(value, _Object):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, _Number):
        return "number"
    return "string"


def _type_error(value: Any, go_type: str) -> ConfigError:
    return ConfigError(f"json: cannot unmarshal {_kind(value)} into Go value of type {go_type}")


def _go_float(text: str) -> str:
    """`%#v` of the float64 Decoder.Token makes of a number: strconv's shortest digits,
    `%e` form below 1e-4 and from 1e6 up (ParseFloat's overflow is the token's error)."""
    number = float(text)
    if number in (float("inf"), float("-inf")):
        raise ConfigError(f"json: cannot unmarshal number {text} into Go value of type float64")
    sign = "-" if text.startswith("-") else ""
    if number == 0:
        return sign + "0"
    digits_tuple, exponent = Decimal(repr(abs(number))).normalize().as_tuple()[1:]
    digits = "".join(map(str, digits_tuple))
    assert isinstance(exponent, int)
    power = exponent + len(digits) - 1
    if power < -4 or power >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if power < 0 else '+'}{abs(power):02d}"
    if power < 0:
        return f"{sign}0.{'0' * (-power - 1)}{digits}"
    whole = digits[:power + 1].ljust(power + 1, "0")
    fraction = digits[power + 1:]
    return sign + whole + ("." + fraction if fraction else "")


def _token(value: Any) -> str:
    """`%#v` of the first token Decoder.Token reads from `value`."""
    if isinstance(value, list):
        return "91"  # json.Delim('['), a rune
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, _Number):
        return _go_float(value.text)
    if isinstance(value, _Object):
        return "123"  # never asked: an object is what is expected
    return go_quote(value)


Handler = Callable[[Any], object]


def _walk(value: Any, resolve: Callable[[str], Handler | None]) -> None:
    """ParanoidUnmarshalJSONObject: an object, whose keys, in document order, are each
    new and known (`resolve` gives the key's decoder), each value decoded before the
    next key is looked at."""
    if not isinstance(value, _Object):
        raise ConfigError(f"JSON object expected, got {_token(value)}")
    seen: set[str] = set()
    for key, item in value.pairs:
        if key in seen:
            raise ConfigError(f"Duplicate key {go_quote(key)}")
        seen.add(key)
        handler = resolve(key)
        if handler is None:
            raise ConfigError(f"Unknown key {go_quote(key)}")
        handler(item)


def _walk_exact(value: Any, fields: Mapping[str, Handler]) -> None:
    """ParanoidUnmarshalJSONObjectExactFields: only these keys, each exactly once. (When
    several are missing upstream names one at random, a Go map's order; here the first.)"""
    _walk(value, fields.get)
    assert isinstance(value, _Object)
    present = {key for key, _ in value.pairs}
    for key in fields:
        if key not in present:
            raise ConfigError(f"Key {go_quote(key)} missing in a JSON object")


class _Fields:
    """The values decoders set, by key; `got` is every key seen (upstream's gotX)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.got: set[str] = set()

    def into(self, key: str, decode: Callable[[Any], Any]) -> Handler:
        def handler(value: Any) -> None:
            self.got.add(key)
            self.values[key] = decode(value)
        return handler

    def __getitem__(self, key: str) -> Any:
        return self.values.get(key)


def _go_string(value: Any) -> str:
    """Decoding into a Go `string`; `null` leaves it empty."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _type_error(value, "string")
    return value


def _go_named_string(go_type: str) -> Callable[[Any], str]:
    def decode(value: Any) -> str:
        if value is not None and not isinstance(value, str):
            raise _type_error(value, go_type)
        return value or ""
    return decode


def _go_strings(value: Any) -> list[str] | None:
    """Decoding into a Go `[]string`: `null` is nil, a `null` item is empty."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise _type_error(value, "[]string")
    return [_go_string(item) for item in value]


_BASE64 = {byte: index for index, byte in enumerate(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}


def go_base64(text: str) -> bytes:
    """base64.StdEncoding.Decode of a Go string: padded, `\\r` and `\\n` skipped; the
    error names the offset Go names (`illegal base64 data at input byte N`)."""
    src = text.encode("utf-8", errors="surrogatepass")
    end = len(src)
    out = bytearray()
    at = 0

    def corrupt(offset: int) -> ConfigError:
        return ConfigError(f"illegal base64 data at input byte {offset}")

    def skip_newlines(offset: int) -> int:
        while offset < end and src[offset] in b"\r\n":
            offset += 1
        return offset

    while at < end:
        quantum: list[int] = []
        padded = False
        while len(quantum) < 4:
            if at == end:
                if not quantum:
                    return bytes(out)
                raise corrupt(at - len(quantum))
            byte = src[at]
            at += 1
            if byte in _BASE64:
                quantum.append(_BASE64[byte])
                continue
            if byte in b"\r\n":
                continue
            if byte != ord("=") or len(quantum) < 2:
                raise corrupt(at - 1)
            if len(quantum) == 2:  # a second "=" must follow
                at = skip_newlines(at)
                if at == end:
                    raise corrupt(end)
                if src[at] != ord("="):
                    raise corrupt(at - 1)
                at += 1
            at = skip_newlines(at)
            if at < end:
                raise corrupt(at)  # data after the padding
            padded = True
            break
        bits = 0
        for index, sextet in enumerate(quantum):
            bits |= sextet << (18 - 6 * index)
        out.extend(bits.to_bytes(3, "big")[:len(quantum) - 1])
        if padded:
            break
    return bytes(out)


def _go_bytes(value: Any) -> str | None:
    """Decoding into a Go `[]byte` (base64); the string is kept as written, `null` is nil."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise _type_error(value, "[]uint8")
    go_base64(value)
    return value


def _go_bytes_list(value: Any) -> list[str] | None:
    """Decoding into a Go `[][]byte`: `null` is nil, a `null` item is empty."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise _type_error(value, "[][]uint8")
    return [_go_bytes(item) or "" for item in value]


def _raw(value: Any) -> Any:
    """A json.RawMessage: kept as it is (`null` too, which is not nil)."""
    return value


def _type_field(value: Any, struct: str, field_type: str) -> str:
    """`json.Unmarshal(data, &prCommon)` (or prmCommon), plain encoding/json: for an
    object the last `type` key matched case-insensitively (a `null` one ignored), a
    value of another kind is the first error; `null` sets nothing."""
    if value is None:
        return ""
    if not isinstance(value, _Object):
        raise _type_error(value, f"signature.{struct}")
    found = ""
    for key, item in value.pairs:
        if len(key) != 4 or not key.isascii() or key.lower() != "type" or item is None:
            continue
        if not isinstance(item, str):
            raise ConfigError(f"json: cannot unmarshal {_kind(item)} into Go struct field "
                              f"{struct}.type of type {field_type}")
        found = item
    return found


# ---------------------------------------------------------------- policy.json


_NAME_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REMAP_DOMAIN = re.compile(DOMAIN_PATTERN, re.ASCII)
_REMAP_NAME = re.compile(rf"(?:{DOMAIN_PATTERN}/)?{_NAME_COMPONENT}(?:/{_NAME_COMPONENT})*",
                         re.ASCII)
_REMAP_DOMAIN_PREFIX = re.compile(rf"{DOMAIN_PATTERN}/", re.ASCII)


def _remap_prefix(text: str) -> None:
    """validateIdentityRemappingPrefix: a registry, or a repository that starts with one."""
    if _REMAP_DOMAIN.fullmatch(text) or (
            _REMAP_NAME.fullmatch(text) and _REMAP_DOMAIN_PREFIX.match(text)):
        return
    raise ConfigError(f"prefix {go_quote(text)} is not valid")


_IDENTITY_FIELDS = {"matchExact": (), "matchRepoDigestOrExact": (), "matchRepository": (),
                    "exactReference": ("dockerReference",),
                    "exactRepository": ("dockerRepository",),
                    "remapIdentity": ("prefix", "signedPrefix")}


def _signed_identity(value: Any) -> dict[str, Any]:
    """newPolicyReferenceMatchFromJSON: the type (plain decoding), then the strict
    decoder of that type, then its constructor's checks."""
    kind = _type_field(value, "prmCommon", "signature.prmTypeIdentifier")
    if kind not in _IDENTITY_FIELDS:
        raise ConfigError(f"Unknown policy reference match type {go_quote(kind)}")
    fields = _Fields()
    handlers = {"type": fields.into("type", _go_named_string("signature.prmTypeIdentifier"))}
    for key in _IDENTITY_FIELDS[kind]:
        handlers[key] = fields.into(key, _go_string)
    _walk_exact(value, handlers)
    if kind == "exactReference":
        _identity_reference(fields["dockerReference"], "dockerReference", needs_identity=True)
    elif kind == "exactRepository":
        _identity_reference(fields["dockerRepository"], "dockerRepository",
                            needs_identity=False)
    elif kind == "remapIdentity":
        _remap_prefix(fields["prefix"])
        _remap_prefix(fields["signedPrefix"])
    return dict(fields.values)


def _identity_reference(text: str, key: str, *, needs_identity: bool) -> None:
    """newPRMExactReference / newPRMExactRepository."""
    try:
        ref = parse_normalized(text)
    except InvalidReference as error:
        raise ConfigError(f"Invalid format of {key} {go_quote(text)}: {error}") from None
    if needs_identity and ref.tag is None and ref.digest is None:
        raise ConfigError(f"{key} {go_quote(text)} contains neither a tag nor digest")


_KEY_TYPES = ("GPGKeys", "signedByGPGKeys", "X509Certificates", "signedByX509CAs")


def _key_type(value: Any) -> str:
    """sbKeyType.UnmarshalJSON: a string (`null` is empty) of the known values."""
    text = _go_string(value)
    if text not in _KEY_TYPES:
        raise ConfigError(f"Unrecognized keyType value {go_quote(text)}")
    return text


def _signed_by(value: Any) -> list[tuple[str, Any]]:
    """prSignedBy.UnmarshalJSON, then newPRSignedBy."""
    fields = _Fields()
    handlers = {"type": fields.into("type", _go_named_string("signature.prTypeIdentifier")),
                "keyType": fields.into("keyType", _key_type),
                "keyPath": fields.into("keyPath", _go_string),
                "keyPaths": fields.into("keyPaths", _go_strings),
                "keyData": fields.into("keyData", _go_bytes),
                "signedIdentity": fields.into("signedIdentity", _raw)}
    _walk(value, handlers.get)
    identity = (_signed_identity(fields["signedIdentity"])
                if "signedIdentity" in fields.got else None)
    options = [key for key in ("keyPath", "keyPaths", "keyData") if key in fields.got]
    if not options:
        raise ConfigError("Exactly one of keyPath, keyPaths and keyData must be specified, "
                          "none of them present")
    if len(options) > 1:
        raise ConfigError("Exactly one of keyPath, keyPaths and keyData must be specified, "
                          "more than one present")
    key_type = fields["keyType"] or ""
    if key_type not in _KEY_TYPES:
        raise ConfigError(f"invalid keyType {go_quote(key_type)}")
    option = options[0]
    if not (fields[option] if option == "keyPath" else fields[option] is not None):
        raise ConfigError("exactly one of keyPath, keyPaths and keyData must be specified")
    result: list[tuple[str, Any]] = [("keyType", key_type), (option, fields[option])]
    if identity is not None:
        result.append(("signedIdentity", identity))
    return result


def _fulcio(value: Any) -> dict[str, Any]:
    """prSigstoreSignedFulcio.UnmarshalJSON, then newPRSigstoreSignedFulcio."""
    fields = _Fields()
    _walk(value, {"caPath": fields.into("caPath", _go_string),
                  "caData": fields.into("caData", _go_bytes),
                  "oidcIssuer": fields.into("oidcIssuer", _go_string),
                  "subjectEmail": fields.into("subjectEmail", _go_string)}.get)
    if fields["caPath"] and fields["caData"] is not None:
        raise ConfigError("caPath and caData cannot be used simultaneously")
    if not fields["caPath"] and fields["caData"] is None:
        raise ConfigError("At least one of caPath and caData must be specified")
    if not fields["oidcIssuer"]:
        raise ConfigError("oidcIssuer not specified")
    if not fields["subjectEmail"]:
        raise ConfigError("subjectEmail not specified")
    return {key: item for key, item in fields.values.items() if item is not None}


def _pki(value: Any) -> dict[str, Any]:
    """prSigstoreSignedPKI.UnmarshalJSON, then newPRSigstoreSignedPKI."""
    fields = _Fields()
    _walk(value, {"caRootsPath": fields.into("caRootsPath", _go_string),
                  "caRootsData": fields.into("caRootsData", _go_bytes),
                  "caIntermediatesPath": fields.into("caIntermediatesPath", _go_string),
                  "caIntermediatesData": fields.into("caIntermediatesData", _go_bytes),
                  "subjectEmail": fields.into("subjectEmail", _go_string),
                  "subjectHostname": fields.into("subjectHostname", _go_string)}.get)
    if fields["caRootsPath"] and fields["caRootsData"] is not None:
        raise ConfigError("caRootsPath and caRootsData cannot be used simultaneously")
    if not fields["caRootsPath"] and fields["caRootsData"] is None:
        raise ConfigError("At least one of caRootsPath and caRootsData must be specified")
    if fields["caIntermediatesPath"] and fields["caIntermediatesData"] is not None:
        raise ConfigError("caIntermediatesPath and caIntermediatesData cannot be used "
                          "simultaneously")
    if not fields["subjectEmail"] and not fields["subjectHostname"]:
        raise ConfigError("At least one of subjectEmail, subjectHostname must be specified")
    return {key: item for key, item in fields.values.items() if item is not None}


_SIGSTORE_KEYS = ("keyPath", "keyPaths", "keyData", "keyDatas", "fulcio", "pki")
_REKOR_KEYS = ("rekorPublicKeyPath", "rekorPublicKeyPaths", "rekorPublicKeyData",
               "rekorPublicKeyDatas")
_NOT_EMPTY = {"keyPaths": "keyPaths", "keyDatas": "keyDatas",
              "rekorPublicKeyPaths": "rekorPublickeyPaths",
              "rekorPublicKeyDatas": "rekorPublickeyDatas"}
"""The list options that must have entries, in the order upstream applies them, and the
name its error gives each (`rekorPublickey…`, as upstream spells it)."""


def _sigstore_signed(value: Any) -> list[tuple[str, Any]]:
    """prSigstoreSigned.UnmarshalJSON: the walk (fulcio and pki checked where they
    stand), signedIdentity, the options in upstream's order, newPRSigstoreSigned."""
    fields = _Fields()
    decoders: dict[str, Callable[[Any], Any]] = {
        "type": _go_named_string("signature.prTypeIdentifier"),
        "keyPath": _go_string, "keyPaths": _go_strings, "keyData": _go_bytes,
        "keyDatas": _go_bytes_list, "fulcio": _fulcio,
        "rekorPublicKeyPath": _go_string, "rekorPublicKeyPaths": _go_strings,
        "rekorPublicKeyData": _go_bytes, "rekorPublicKeyDatas": _go_bytes_list,
        "pki": _pki, "signedIdentity": _raw}
    _walk(value, {key: fields.into(key, decode) for key, decode in decoders.items()}.get)
    identity = (_signed_identity(fields["signedIdentity"])
                if "signedIdentity" in fields.got else None)
    for key, shown in _NOT_EMPTY.items():
        if key in fields.got and not fields[key]:
            raise ConfigError(f'"{shown}" contains no entries')

    def given(key: str) -> bool:
        if key in ("fulcio", "pki"):
            return key in fields.got
        return bool(fields[key]) if key.endswith("Path") else fields[key] is not None

    if sum(map(given, _SIGSTORE_KEYS)) != 1:
        raise ConfigError("exactly one of keyPath, keyPaths, keyData, keyDatas, fulcio, and pki "
                          "must be specified")
    rekor = sum(map(given, _REKOR_KEYS))
    if rekor > 1:
        raise ConfigError("at most one of rekorPublickeyPath, rekorPublicKeyPaths, "
                          "rekorPublickeyData and rekorPublicKeyDatas can be used simultaneously")
    if given("fulcio") and rekor == 0:
        raise ConfigError("At least one of rekorPublickeyPath, rekorPublicKeyPaths, "
                          "rekorPublickeyData and rekorPublicKeyDatas must be specified if "
                          "fulcio is used")
    if given("pki") and rekor > 0:
        raise ConfigError("rekorPublickeyPath, rekorPublicKeyPaths, rekorPublickeyData and "
                          "rekorPublicKeyDatas are not supported for pki")
    result = [(key, fields[key]) for key in (*_SIGSTORE_KEYS, *_REKOR_KEYS) if given(key)]
    if identity is not None:
        result.append(("signedIdentity", identity))
    return result


def _signed_base_layer(value: Any) -> list[tuple[str, Any]]:
    fields = _Fields()
    _walk_exact(value, {
        "type": fields.into("type", _go_named_string("signature.prTypeIdentifier")),
        "baseLayerIdentity": fields.into("baseLayerIdentity", _raw)})
    return [("baseLayerIdentity", _signed_identity(fields["baseLayerIdentity"]))]


def _type_only(value: Any) -> list[tuple[str, Any]]:
    _walk_exact(value, {"type": _go_named_string("signature.prTypeIdentifier")})
    return []


_REQUIREMENT_TYPES: dict[str, Callable[[Any], list[tuple[str, Any]]]] = {
    "insecureAcceptAnything": _type_only, "reject": _type_only, "signedBy": _signed_by,
    "signedBaseLayer": _signed_base_layer, "sigstoreSigned": _sigstore_signed}


def _requirement(value: Any) -> Requirement:
    """newPolicyRequirementFromJSON: the type (plain decoding), then that type's strict
    decoder."""
    kind = _type_field(value, "prCommon", "signature.prTypeIdentifier")
    parse = _REQUIREMENT_TYPES.get(kind)
    if parse is None:
        raise ConfigError(f"Unknown policy requirement type {go_quote(kind)}")
    return Requirement(kind, tuple(parse(value)))


def _requirements(value: Any) -> tuple[Requirement, ...]:
    """PolicyRequirements.UnmarshalJSON: an array (`null` is an empty one), not empty,
    each entry parsed in order."""
    if value is not None and not isinstance(value, list):
        raise _type_error(value, "[]json.RawMessage")
    if not value:
        raise ConfigError("List of verification policy requirements must not be empty")
    return tuple(_requirement(item) for item in value)


_ATOMIC_SCOPE = re.compile(r"[^/]*(/[^:/]*(/[^:/]*(:[^:/]*)?)?)?")


def _is_digest(text: str) -> bool:
    try:
        validate_digest(text)
    except InvalidReference:
        return False
    return True


def _clean_absolute_path(scope: str) -> bool:
    """An absolute path, not `/`, in filepath.Clean's form (dir, oci, oci-archive, sif)."""
    if not scope.startswith("/") or scope == "/":
        return False
    parts: list[str] = []
    for part in scope.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return scope == "/" + "/".join(parts)


_SCOPE_CHECKS: dict[str, Callable[[str], bool]] = {
    # ValidatePolicyConfigurationScope of the transports podman and skopeo register
    # (transports/alltransports); `""` is never checked, a transport not here takes any
    # scope (docker and the stubbed ostree: every string; containers-storage: not modelled)
    "atomic": lambda scope: _ATOMIC_SCOPE.fullmatch(scope) is not None,
    "docker-daemon": lambda scope: not _is_digest(scope),
    "dir": _clean_absolute_path,
    "oci": _clean_absolute_path,
    "oci-archive": _clean_absolute_path,
    "sif": _clean_absolute_path,
    "docker-archive": lambda scope: False,
    "tarball": lambda scope: False,
}


def parse_policy(text: str | bytes, path: str = "") -> Policy:
    """Parse policy.json as containers/image does (NewPolicyFromBytes): the syntax of the
    whole document first, then the strict decoders in document order; the first problem
    is the error, in upstream's words."""
    data = text.encode("utf-8", errors="surrogatepass") if isinstance(text, str) else text
    document = _decode_document(data)
    default: list[tuple[Requirement, ...]] = []
    transports: dict[str, dict[str, tuple[Requirement, ...]]] = {}

    def default_list(value: Any) -> None:
        default.append(_requirements(value))

    def transport_map(value: Any) -> None:
        _walk(value, lambda name: lambda scopes: transport_scopes(name, scopes))

    def transport_scopes(name: str, value: Any) -> None:
        check = _SCOPE_CHECKS.get(name)
        parsed = transports[name] = {}

        def scope_list(scope: str) -> Handler | None:
            if scope != "" and check is not None and not check(scope):
                return None

            def handler(requirements: Any) -> None:
                try:
                    parsed[scope] = _requirements(requirements)
                except ConfigError as error:
                    raise ConfigError(
                        f"transports.{name}[{go_quote(scope)}]: {error}") from None
            return handler

        _walk(value, scope_list)

    _walk(document, {"default": default_list, "transports": transport_map}.get)
    if not default:
        raise ConfigError("Default policy is missing")
    return Policy(default=default[0], transports=transports, path=path)


def load_policy(path: str) -> Policy:
    """Read and parse policy.json; the error names the file (NewPolicyFromFile)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise ConfigError(f"no policy.json file found at {path}") from None
    except OSError as error:
        raise ConfigError(f'reading policy "{path}": {error}') from None
    try:
        return parse_policy(data, path)
    except ConfigError as error:
        raise ConfigError(f"invalid policy in {go_quote(path)}: {error}") from None


# ---------------------------------------------------------------- evaluation


def policy_scopes(ref: ImageReference) -> list[str]:
    """The docker scope keys tried for `ref`, most specific first, ending with `""`."""
    return name_scopes(ref.name, ref.identity)


def name_scopes(name: str, identity: str = "") -> list[str]:
    """The docker scope keys tried for the repository `name` (`host[:port]/path`, or a
    host alone) with `identity` (`:tag`, `@digest` or nothing): compared as text."""
    scopes = [name + identity] if identity else []
    domain = name.split("/", 1)[0]
    while True:
        scopes.append(name)
        slash = name.rfind("/")
        if slash == -1:
            break
        name = name[:slash]
    host = domain.split(":", 1)[0]
    labels = host.split(".")
    scopes.extend("*." + ".".join(labels[i:]) for i in range(1, len(labels)))
    scopes.append("")
    return scopes


def verifies_signatures(requirements: tuple[Requirement, ...]) -> bool:
    """Does the list hold a requirement that verifies signatures?"""
    return any(r.type in SIGNATURE_REQUIREMENTS for r in requirements)


def needs_signatures(requirements: tuple[Requirement, ...]) -> bool:
    """Would the verdict depend on the image's signatures: the list verifies some, and no
    requirement refuses every image (`reject`, `signedBaseLayer`)?"""
    return verifies_signatures(requirements) and not any(
        r.type in ("reject", "signedBaseLayer") for r in requirements)


def _verdict(ref: ImageReference, requirements: tuple[Requirement, ...]) -> tuple[bool, str]:
    """IsRunningImageAllowed for an image without signatures: the first requirement that
    does not allow it decides."""
    for requirement in requirements:
        if requirement.type == "reject":
            # prReject.isRunningImageAllowed names the image by transports.ImageName: the
            # transport, then the docker transport's StringWithinTransport, `//` and
            # reference.FamiliarString (`docker://busybox:latest`)
            return False, f"Running image docker://{ref.familiar} is rejected by policy."
        if requirement.type in SIGNATURE_REQUIREMENTS:
            return False, NO_SIGNATURE
        if requirement.type == "signedBaseLayer":
            return False, "signedBaseLayer not implemented yet!"
    return True, "insecureAcceptAnything"


def requirements_for(policy: Policy, scopes: list[str]) -> tuple[str, tuple[Requirement, ...]]:
    """The scope that decides among `scopes` (most specific first), or `default`, and its
    requirement list."""
    found = policy.transports.get(TRANSPORT) or {}
    for scope in scopes:
        if scope in found:
            return scope, found[scope]
    return "default", policy.default


def evaluate_policy(policy: Policy, ref: ImageReference) -> PolicyDecision:
    """The decision for pulling the logical reference `ref` over the docker transport."""
    scopes = policy.transports.get(TRANSPORT)
    if scopes is not None:
        for scope in policy_scopes(ref):
            if scope in scopes:
                allowed, reason = _verdict(ref, scopes[scope])
                return PolicyDecision(allowed, scope, reason, scopes[scope],
                                      needs_signatures(scopes[scope]))
    allowed, reason = _verdict(ref, policy.default)
    return PolicyDecision(allowed, "default", reason, policy.default,
                          needs_signatures(policy.default))
