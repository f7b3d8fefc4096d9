"""YAML laid out as Go's yaml.v3 encoder with 4-space indentation writes it (what `oc adm
migrate icsp` prints): keys sorted, sequences indented under their key, a mapping inside a
sequence item starting on the dash line, strings quoted only when plain would not read back
as the same string."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

_PLAIN = re.compile(r"[A-Za-z0-9_./-][A-Za-z0-9_./@+-]*(?::[A-Za-z0-9_./@+-]+)*")


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return str(value)
    text = str(value)
    if _PLAIN.fullmatch(text) and yaml.safe_load(text) == text:
        return text
    return json.dumps(text, ensure_ascii=False)


def _mapping(value: Mapping[str, Any], keys_at: int, children_at: int) -> list[str]:
    lines = []
    for key in sorted(value):
        item = value[key]
        head = " " * keys_at + f"{_scalar(key)}:"
        if isinstance(item, Mapping) and item:
            lines += [head, *_mapping(item, children_at, children_at + 4)]
        elif isinstance(item, Sequence) and not isinstance(item, str) and item:
            lines += [head, *_sequence(item, children_at)]
        elif isinstance(item, Mapping):
            lines.append(head + " {}")
        elif isinstance(item, Sequence) and not isinstance(item, str):
            lines.append(head + " []")
        else:
            lines.append(f"{head} {_scalar(item)}")
    return lines


def _sequence(items: Sequence[Any], at: int) -> list[str]:
    lines = []
    for item in items:
        if isinstance(item, Mapping) and item:
            block = _mapping(item, at + 2, at + 4)
            block[0] = " " * at + "- " + block[0][at + 2:]
            lines += block
        else:
            lines.append(" " * at + f"- {_scalar(item)}")
    return lines


def dump(document: Mapping[str, Any]) -> str:
    return "\n".join(_mapping(document, 0, 4)) + "\n"
