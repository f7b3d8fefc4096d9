"""Errors a user can act on: the CLI prints them on one line and exits with status 2."""

from __future__ import annotations

import sys

# Control characters as Go's %q writes them, so that a value quoted from the input (a
# policy type "a\nb", a YAML key with a tab) can never break the message's single line.
_ESCAPES = {code: f"\\x{code:02x}" for code in [*range(0x20), 0x7F, 0x85]} | {
    ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t", 0x2028: "\\u2028", 0x2029: "\\u2029"}


class MirrorlabError(Exception):
    """Base of every error caused by input (files, references, flags), not by a bug.
    Its message is one line by construction."""

    def __init__(self, message: str = "", *args: object) -> None:
        super().__init__(str(message).translate(_ESCAPES), *args)


class ConfigError(MirrorlabError):
    """A configuration file that containers/image (or OpenShift) would refuse."""


PARSER_FAILURES = (ValueError, RecursionError)
"""What a parser raises, besides its own errors, on input it cannot take: RecursionError
for nesting deeper than the interpreter's stack (JSON and YAML nested 100,000 levels),
ValueError for a value Python refuses to build (an integer of more than 4,300 digits, a
date like 2024-02-30)."""


def parser_failure(error: BaseException) -> str:
    """One of `PARSER_FAILURES` said in a few words, for `FILE: invalid FORMAT: <this>`."""
    if isinstance(error, RecursionError):
        return "nested too deeply"
    text = " ".join(str(error).split())
    if "integer string conversion" in text:  # Python's own limit on int(str)
        return f"a number has more than {sys.get_int_max_str_digits()} digits"
    return text or type(error).__name__


def yaml_error(path: str, error: Exception) -> ConfigError:
    """A PyYAML error as one line naming the place: `FILE:LINE:COLUMN: invalid YAML: why`.

    PyYAML's own text spans lines (the context, then the problem, then a mark)."""
    mark = getattr(error, "problem_mark", None)
    position = getattr(error, "position", None)  # a ReaderError: a character YAML refuses
    where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
    why = getattr(error, "problem", None) or str(error).splitlines()[0]
    if mark is None and position is not None:
        why = f"{why} (character {position + 1})"
    return ConfigError(f"{path}{where}: invalid YAML: {' '.join(str(why).split())}")
