"""JSON as Go's encoding/json reads it: syntax errors, type errors, quoting, base64, numbers.

containers/image reads policy.json and every untrusted signature document (simple-signing
payloads, the Rekor SET and its body) with `json.Unmarshal` and its strict decoders on
top (signature/internal/json.go: `ParanoidUnmarshalJSONObject`): the scanner checks the
syntax of the whole document first, then the decoders walk it in document order and the
first problem met is the error. Everything here is pure and every text is Go's:

- `decode`: the document's value, or its first `JSONSyntaxError` with the scanner's text
  and the offset of the byte it is about. Values keep what the Go decoders look at:
  objects as `Object` (pairs in document order, duplicates kept), numbers as `Number`
  (their text), strings as Go holds them (each invalid UTF-8 byte and each unpaired
  surrogate escape is U+FFFD), arrays as lists, true/false/null as bool/None;
- `walk` and `walk_exact`: `ParanoidUnmarshalJSONObject(ExactFields)`;
- `as_string`, `as_float`, `as_int64`, `as_bytes`, `as_any`: a value decoded into a Go
  `string`, `float64`, `int64`, `[]byte`, `any` (`null` leaves the destination as it
  was), with encoding/json's `UnmarshalTypeError` texts (`kind`, `type_error`);
- `token`, `go_float`, `go_quote`, `go_quote_bytes`, `go_string_list`: the `%#v`, `%v`
  and `%q` the messages show;
- `go_base64`: `base64.StdEncoding.DecodeString`, with its error offsets.

Every error is a `JSONError` (a ValueError); callers add where it is.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any


class JSONError(ValueError):
    """A document, or a value in it, that Go's decoders refuse; the text is Go's."""


class JSONSyntaxError(JSONError):
    """encoding/json's SyntaxError: the text, and the offset of the byte it is about."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


class TooDeep(JSONSyntaxError):
    """Arrays and objects nested deeper than `MAX_DEPTH` (the scanner's `exceeded max
    depth`)."""


class NumberTooLong(JSONError):
    """An integer of more digits than `decode`'s `digit_limit` (Go has no such limit)."""


@dataclass(frozen=True)
class Object:
    """A JSON object: its (key, value) pairs in document order, duplicates kept."""

    pairs: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class Number:
    """A JSON number, as its text: each Go type reads it its own way."""

    text: str


MAX_DEPTH = 10000
"""encoding/json's maxNestingDepth: deeper arrays and objects are a syntax error."""


# ---------------------------------------------------------------- the scanner


def decode(data: bytes | str, *, digit_limit: int = 0) -> Any:
    """`json.Unmarshal`'s view of `data`: checkValid and the value in one pass, the first
    syntax error raised as `JSONSyntaxError` (a `str` is taken as its UTF-8 bytes, lone
    surrogates included). With `digit_limit`, an integer of more digits is
    `NumberTooLong`, where the scanner meets it."""
    raw = data.encode("utf-8", errors="surrogatepass") if isinstance(data, str) else data
    return _Scanner(raw, digit_limit).document()


def quote_char(byte: int) -> str:
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

    def __init__(self, data: bytes, digit_limit: int) -> None:
        self.data = data
        self.end = len(data)
        self.digit_limit = digit_limit

    def fail(self, at: int, context: str) -> JSONSyntaxError:
        byte = self.data[at] if at < self.end else 0x20
        return JSONSyntaxError(f"invalid character {quote_char(byte)} {context}", at)

    def eof(self) -> JSONSyntaxError:
        return JSONSyntaxError("unexpected end of JSON input", self.end)

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
                    raise TooDeep(f"invalid character {quote_char(byte)} exceeded max depth", at)
                at = self.space(at + 1)
                if at == self.end:
                    raise self.eof()
                if byte == ord("["):
                    if data[at] != ord("]"):
                        frames.append(([], None))
                        continue
                    value, at = [], at + 1
                elif data[at] == ord("}"):
                    value, at = Object(()), at + 1
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
                    value, at = Object(tuple(items)), at + 1
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

    def number(self, at: int) -> tuple[Number, int]:
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
        limit = self.digit_limit
        digits = integer - start - (data[start] == ord("-"))
        if at == integer and limit and digits > limit:
            raise NumberTooLong(f"a number has more than {limit} digits")
        return Number(data[start:at].decode("ascii")), at

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


# ---------------------------------------------------------------- the strict decoders


Handler = Callable[[Any], object]
"""Decodes one value into its destination (`dec.Decode(valuePtr)`); raises on a bad one."""


def walk(value: Any, resolve: Callable[[str], Handler | None]) -> None:
    """ParanoidUnmarshalJSONObject: an object, whose keys, in document order, are each
    new and known (`resolve` gives the key's decoder), each value decoded before the
    next key is looked at."""
    if not isinstance(value, Object):
        raise JSONError(f"JSON object expected, got {token(value)}")
    seen: set[str] = set()
    for key, item in value.pairs:
        if key in seen:
            raise JSONError(f"Duplicate key {go_quote(key)}")
        seen.add(key)
        handler = resolve(key)
        if handler is None:
            raise JSONError(f"Unknown key {go_quote(key)}")
        handler(item)


def walk_exact(value: Any, fields: Mapping[str, Handler]) -> None:
    """ParanoidUnmarshalJSONObjectExactFields: only these keys, each exactly once. (When
    several are missing upstream names one at random, a Go map's order; here the first.)"""
    walk(value, fields.get)
    assert isinstance(value, Object)
    present = {key for key, _ in value.pairs}
    for key in fields:
        if key not in present:
            raise JSONError(f"Key {go_quote(key)} missing in a JSON object")


def kind(value: Any) -> str:
    """The JSON kind as an UnmarshalTypeError names it."""
    if isinstance(value, Object):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, Number):
        return "number"
    if value is None:
        return "null"
    return "string"


def type_error(value: Any, go_type: str) -> JSONError:
    """UnmarshalTypeError for a value of the wrong kind (no struct field named)."""
    return JSONError(f"json: cannot unmarshal {kind(value)} into Go value of type {go_type}")


def _number_error(number: Number, go_type: str) -> JSONError:
    """UnmarshalTypeError for a number the Go type cannot hold: its text is shown."""
    return JSONError(f"json: cannot unmarshal number {number.text} into Go value of type "
                     f"{go_type}")


def as_string(value: Any, current: str = "", go_type: str = "string") -> str:
    """Decoding into a Go `string` (or a named string type, `go_type`)."""
    if value is None:
        return current
    if not isinstance(value, str):
        raise type_error(value, go_type)
    return value


def as_float(value: Any, current: float = 0.0) -> float:
    """Decoding into a Go `float64`: strconv.ParseFloat, whose overflow is an error."""
    if value is None:
        return current
    if not isinstance(value, Number):
        raise type_error(value, "float64")
    number = float(value.text)
    if math.isinf(number):
        raise _number_error(value, "float64")
    return number


_INTEGER = re.compile(r"-?[0-9]{1,19}")


def as_int64(value: Any, current: int = 0) -> int:
    """Decoding into a Go `int64`: strconv.ParseInt of the number's text, so `1.0` and
    `1e3` are refused as well as what overflows."""
    if value is None:
        return current
    if not isinstance(value, Number):
        raise type_error(value, "int64")
    if not _INTEGER.fullmatch(value.text) or not -(2**63) <= int(value.text) < 2**63:
        raise _number_error(value, "int64")
    return int(value.text)


def as_bytes(value: Any) -> bytes | None:
    """Decoding into a Go `[]byte`: a base64 string (`go_base64`); `null` is nil."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise type_error(value, "[]uint8")
    return go_base64(value)


def as_any(value: Any) -> Any:
    """Decoding into a Go `any`: every number, however deep, becomes a float64, so the
    first one that overflows (in document order) is the error. The value is returned."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, Number):
            as_float(item)
        elif isinstance(item, list):
            pending.extend(reversed(item))
        elif isinstance(item, Object):
            pending.extend(reversed([member for _, member in item.pairs]))
    return value


# ---------------------------------------------------------------- what messages show


def token(value: Any) -> str:
    """`%#v` of the first token Decoder.Token reads from `value`."""
    if isinstance(value, list):
        return "91"  # json.Delim('['), a rune
    if isinstance(value, Object):
        return "123"  # json.Delim('{')
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Number):
        return go_float(as_float(value))
    return go_quote(value)


def go_float(number: float) -> str:
    """`%v` (and `%#v`) of a float64: strconv's shortest digits, the `%e` form below 1e-4
    and from 1e6 up."""
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    sign = "-" if math.copysign(1.0, number) < 0 else ""
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


def go_quote(text: str) -> str:
    """Go's `%q` of a string (strconv.Quote): printable characters stay, `"` and `\\`
    are escaped, the rest written as `\\n`, `\\xNN`, `\\uNNNN` or `\\UNNNNNNNN`. A
    surrogate is not a rune: Go's `string(r)` makes it U+FFFD, which is printed."""
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
            out.append("\ufffd")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


_CONTROL_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
                    "\t": "\\t", "\v": "\\v"}


def go_quote_bytes(data: bytes) -> str:
    """`%q` (and `%#v`) of `string(data)`: each invalid UTF-8 byte is written `\\xNN`."""
    out: list[str] = []
    for char in data.decode("utf-8", errors="surrogateescape"):
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        else:
            out.append(go_quote(char)[1:-1])
    return '"' + "".join(out) + '"'


def go_string_list(values: list[str]) -> str:
    """`%q` of a `[]string`: `["a" "b"]`."""
    return "[" + " ".join(go_quote(value) for value in values) + "]"


# ---------------------------------------------------------------- base64


_BASE64 = {byte: index for index, byte in enumerate(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}


def go_base64(text: str) -> bytes:
    """base64.StdEncoding.DecodeString of a Go string: padded, `\\r` and `\\n` skipped; the
    error names the offset Go names (`illegal base64 data at input byte N`)."""
    src = text.encode("utf-8", errors="surrogatepass")
    end = len(src)
    out = bytearray()
    at = 0

    def corrupt(offset: int) -> JSONError:
        return JSONError(f"illegal base64 data at input byte {offset}")

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
