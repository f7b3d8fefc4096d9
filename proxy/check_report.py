"""`mirrorlab check`: verdicts for people (wrapped to the terminal) and for programs (JSON).

Text: one block per image, the verdict in a column of its own, then the source that
serves, the cause and the fixes, wrapped to the width (at most 100 columns, 80 when the
width is unknown); digests are shortened to 12 hex digits (`--json` has them whole).
JSON: one object per image per line, with every attempt.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from .check_inputs import ImageInput
from .check_verdict import Status, Tally, Verdict
from .check_walk import ImageWalk

COLUMN = 13
"""Where everything after the verdict word starts (`not checked` and two spaces)."""
_DIGEST = re.compile(r"\b(sha256:[0-9a-f]{12})[0-9a-f]{52}\b"
                     r"|\b(sha512:[0-9a-f]{12})[0-9a-f]{116}\b")


def shorten(text: str) -> str:
    """Digests cut to 12 hex digits and `...`."""
    return _DIGEST.sub(lambda m: f"{m.group(1) or m.group(2)}...", text)


def _pieces(word: str, room: int) -> list[str]:
    """A word too long for a line, cut after a `/` or before an `@` (hard cuts last)."""
    if len(word) <= room:
        return [word]
    parts = [p for p in re.split(r"(?<=/)|(?=@)", word) if p]
    found: list[str] = []
    for part in parts:
        if found and len(found[-1]) + len(part) <= room:
            found[-1] += part
        else:
            found += [part[i:i + room] for i in range(0, len(part), room)]
    return found


def _wrap(text: str, width: int, first: str, rest: str) -> list[str]:
    """Words filled into lines of `width`; a long reference is cut at its `/` and `@`."""
    room = max(20, width - len(rest))
    pieces = [(piece, index > 0) for word in shorten(text).split()
              for index, piece in enumerate(_pieces(word, room))]
    lines: list[str] = []
    line, fresh = first, True
    for piece, continues in pieces:
        glue = "" if fresh or continues else " "
        if not fresh and len(line) + len(glue) + len(piece) > width:
            lines.append(line)
            line, fresh, glue = rest, True, ""
        line += glue + piece
        fresh = False
    lines.append(line.rstrip())
    return lines


def _origins(inputs: Sequence[ImageInput]) -> str | None:
    named = [i.origin for i in inputs if i.origin != "argument"]
    if not named:
        return None
    extra = f" (and {len(named) - 1} more)" if len(named) > 1 else ""
    where = f"named by {named[0]}" if named[0].startswith("--") else f"in {named[0]}"
    return f"{where}{extra}"


def format_text(verdict: Verdict, inputs: Sequence[ImageInput], width: int = 80) -> str:
    pad = " " * COLUMN
    lines = _wrap(str(verdict.reference), width, f"{verdict.status:<{COLUMN}}", pad)
    origin = _origins(inputs)
    if origin:
        lines += _wrap(origin, width, pad, pad + "  ")
    if verdict.served_by:
        served = f"from {verdict.served_by}"
        if verdict.summary:
            served += f": {verdict.summary}"
        lines += _wrap(served, width, pad, pad + "  ")
    if verdict.cause:
        lines += _wrap(f"cause: {verdict.cause}", width, pad, pad + "  ")
    for index, fix in enumerate(verdict.fixes):
        label = "fix: " if index == 0 else "or: "
        lines += _wrap(f"{label}{fix}", width, pad, pad + "  ")
    for note in verdict.notes:
        lines += _wrap(f"note: {note}", width, pad, pad + "  ")
    return "\n".join(lines)


def format_summary(tally: Tally, mode: str, width: int = 80) -> str:
    counts = ", ".join(f"{count} {status}" for status, count in tally.statuses.items()
                       if count or status is Status.OK)
    noun = "image" if tally.total == 1 else "images"
    lines = _wrap(f"{tally.total} {noun} checked ({mode} mode): {counts}", width, "", "  ")
    for cause, images in sorted(tally.causes.items(), key=lambda item: -len(item[1])):
        example = images[0] + (f" and {len(images) - 1} more" if len(images) > 1 else "")
        lines += _wrap(f"{cause}: {len(images)} ({example})", width, "  ", "    ")
    return "\n".join(lines)


def _attempts(walk: ImageWalk) -> list[dict[str, Any]]:
    found = []
    for fetch in walk.fetches():
        for attempt in fetch.attempts:
            item: dict[str, Any] = {
                "what": fetch.what, "digest": fetch.digest,
                "platform": str(fetch.platform) if fetch.platform else None,
                "source": attempt.source, "outcome": str(attempt.outcome),
                "detail": attempt.detail, "ms": round(attempt.elapsed_ms, 1),
            }
            if attempt.code:
                item["code"] = attempt.code
            if attempt.fallback:
                item["fallback"] = True
            found.append(item)
    return found


def to_json(verdict: Verdict, inputs: Sequence[ImageInput], walk: ImageWalk) -> dict[str, Any]:
    decision = walk.policy
    return {
        "image": str(verdict.reference),
        "inputs": [{"text": i.text, "origin": i.origin} for i in inputs],
        "verdict": str(verdict.status).replace(" ", "_"),
        "served_by": verdict.served_by,
        "digest": walk.digest,
        "cause_kind": verdict.cause_kind.name.lower() if verdict.cause_kind else None,
        "cause": verdict.cause,
        "fixes": list(verdict.fixes),
        "notes": list(verdict.notes),
        "policy": None if decision is None else {
            "allowed": decision.allowed, "scope": decision.scope, "reason": decision.reason,
            "needs_signatures": decision.needs_signatures},
        "signatures": None if not walk.signatures else {
            "read": walk.signature_count, "error": walk.signature_error,
            "allowed": walk.signature_verdict.allowed if walk.signature_verdict else None,
            "reason": walk.signature_verdict.reason if walk.signature_verdict else None},
        "platforms": [str(check.platform) for check in walk.platforms if check.platform],
        "checked": verdict.summary,
        "attempts": _attempts(walk),
    }


def format_json(verdict: Verdict, inputs: Sequence[ImageInput], walk: ImageWalk) -> str:
    return json.dumps(to_json(verdict, inputs, walk))
