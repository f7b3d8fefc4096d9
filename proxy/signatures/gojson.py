"""Strict JSON reading and Go's value formatting, as the signature code needs them.

containers/image reads every untrusted signature document (simple-signing payloads, the
Rekor SET and its payload) with `ParanoidUnmarshalJSONObject` (signature/internal/json.go):
duplicate and unknown keys are refused, each listed field must be present exactly once,
and a value is decoded as Go's encoding/json decodes it into the field's type. The
messages here are those texts; `go_quote` and `go_value` are Go's `%q` and `%#v` for the
values the messages show.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class JSONFormatError(ValueError):
    """A document that does not have the expected shape (upstream's JSONFormatError)."""


@dataclass(frozen=True)
class Pairs:
    """A JSON object with its keys in document order, duplicates kept."""

    items: tuple[tuple[str, Any], ...]


def _pairs(items: list[tuple[str, Any]]) -> Pairs:
    return Pairs(tuple(items))


def _go_constant(name: str) -> Any:
    raise ValueError(f"invalid character '{name[0]}' looking for beginning of value")


def loads(data: bytes | str) -> Any:
    """Decode one JSON document, objects as `Pairs`; syntax errors as `JSONFormatError`
    (the text is Python's, which names the position; Go's differs)."""
    try:
        text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
        return json.loads(text, object_pairs_hook=_pairs, parse_constant=_go_constant)
    except json.JSONDecodeError as error:
        if error.msg == "Extra data":
            raise JSONFormatError("Unexpected data after JSON object") from None
        if error.pos >= len(error.doc.rstrip()):
            raise JSONFormatError("unexpected EOF") from None
        raise JSONFormatError(f"invalid JSON: {error.msg}") from None
    except (ValueError, RecursionError) as error:
        raise JSONFormatError(str(error) or "invalid JSON") from None


def kind(value: Any) -> str:
    """The JSON kind as encoding/json names it in an UnmarshalTypeError."""
    if isinstance(value, Pairs):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "null"


def _type_error(value: Any, go_type: str) -> JSONFormatError:
    return JSONFormatError(f"json: cannot unmarshal {kind(value)} into Go value of type {go_type}")


def as_string(value: Any, current: str = "") -> str:
    """Decoding into a Go `string`: `null` leaves the field as it was."""
    if value is None:
        return current
    if not isinstance(value, str):
        raise _type_error(value, "string")
    return value


def as_float(value: Any, current: float = 0.0) -> float:
    if value is None:
        return current
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _type_error(value, "float64")
    return float(value)


def as_int64(value: Any, raw: str | None = None, current: int = 0) -> int:
    if value is None:
        return current
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _type_error(value, "int64")
    if isinstance(value, float) or not -(2**63) <= value < 2**63:
        shown = raw if raw is not None else _number_text(value)
        raise JSONFormatError(f"json: cannot unmarshal number {shown} into Go value of type int64")
    return value


def _number_text(value: float | int) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


def as_bytes(value: Any) -> bytes | None:
    """Decoding into a Go `[]byte`: a base64 string (standard alphabet, padded); `null`
    is nil."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise _type_error(value, "[]uint8")
    return go_base64_decode(value)


def go_base64_decode(text: str) -> bytes:
    """`base64.StdEncoding.DecodeString`, ignoring `\\r` and `\\n` as Go does. The error
    names the first byte outside the alphabet as Go does; for a bad length or padding the
    offset may differ from Go's."""
    cleaned = text.replace("\r", "").replace("\n", "")
    raw = cleaned.encode("utf-8", errors="surrogateescape")
    body = raw.rstrip(b"=")
    for index, byte in enumerate(body):
        if byte not in _BASE64_ALPHABET:
            raise ValueError(f"illegal base64 data at input byte {index}")
    try:
        return base64.b64decode(raw, validate=True)
    except binascii.Error:
        raise ValueError(f"illegal base64 data at input byte {len(body)}") from None


_BASE64_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


def parse_object(data: bytes | Any, resolver: Callable[[str], bool]) -> list[
        tuple[str, Any]]:
    """`ParanoidUnmarshalJSONObject`: the object's (key, value) pairs in order, after
    refusing what is not an object, duplicate keys, and keys `resolver` does not accept.
    `data` is a document (bytes) or a value already decoded by `loads` (a nested
    json.RawMessage upstream)."""
    value = loads(data) if isinstance(data, bytes) else data
    if not isinstance(value, Pairs):
        raise JSONFormatError(f"JSON object expected, got {_token(value)}")
    seen: set[str] = set()
    for key, _ in value.items:
        if key in seen:
            raise JSONFormatError(f"Duplicate key {go_quote(key)}")
        seen.add(key)
        if not resolver(key):
            raise JSONFormatError(f"Unknown key {go_quote(key)}")
    return list(value.items)


def parse_exact(data: bytes | Any, fields: Mapping[str, Callable[[Any], None]]
                ) -> None:
    """`ParanoidUnmarshalJSONObjectExactFields`: every key of `fields` exactly once, no
    other; each value is handed to its setter in document order (a setter raises a
    `JSONFormatError` for a value of the wrong type)."""
    items = parse_object(data, lambda key: key in fields)
    for key, value in items:
        fields[key](value)
    for key in fields:
        if key not in {k for k, _ in items}:
            raise JSONFormatError(f"Key {go_quote(key)} missing in a JSON object")


def _token(value: Any) -> str:
    """`%#v` of the first token encoding/json's Decoder.Token returns for `value`."""
    if isinstance(value, list):
        return "91"  # json.Delim('[')
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        number = float(value)
        if math.isfinite(number) and number.is_integer() and abs(number) < 1e21:
            return str(int(number))
        return go_float(number)
    return go_quote(str(value))


def go_float(number: float) -> str:
    """`%v` of a float64 (strconv 'g' with the shortest representation)."""
    text = repr(number)
    if "e" in text:
        mantissa, exponent = text.split("e")
        sign = "-" if exponent.startswith("-") else "+"
        digits = exponent.lstrip("+-").rjust(2, "0")
        return f"{mantissa.removesuffix('.0')}e{sign}{digits}"
    return text.removesuffix(".0")


def go_quote(text: str) -> str:
    """Go's `%q` of a string (strconv.Quote): printable characters stay, the rest are
    escaped."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char == '"':
            out.append('\\"')
        elif char == "\\":
            out.append("\\\\")
        elif char == "\ufffd" or (char.isprintable() and code != 0xAD) or char == " ":
            out.append(char)
        elif char in "\a\b\f\n\r\t\v":
            out.append({"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
                        "\t": "\\t", "\v": "\\v"}[char])
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def go_quote_bytes(data: bytes) -> str:
    """`%q` of `string(data)`: invalid UTF-8 bytes are written `\\xNN`."""
    out: list[str] = []
    text = data.decode("utf-8", errors="surrogateescape")
    for char in text:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        else:
            out.append(go_quote(char)[1:-1])
    return '"' + "".join(out) + '"'


def go_value_string(data: bytes) -> str:
    """`%#v` of a Go string: strconv.Quote (only `%#q` writes raw string literals)."""
    return go_quote_bytes(data)


def go_string_list(values: list[str]) -> str:
    """`%q` of a `[]string`: `["a" "b"]`."""
    return "[" + " ".join(go_quote(value) for value in values) + "]"
