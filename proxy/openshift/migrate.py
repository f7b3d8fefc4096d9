"""`mirrorlab migrate-icsp`: ImageContentSourcePolicy files to ImageDigestMirrorSet files,
the way `oc adm migrate icsp` converts them (one output file per input file)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError
from .crs import ICSP, documents
from .yamlgo import dump


def icsp_to_idms(icsp: Mapping[str, Any]) -> dict[str, Any]:
    """Metadata copied whole (minus `creationTimestamp`), status dropped, mirrors kept."""
    metadata = {k: v for k, v in dict(icsp.get("metadata") or {}).items()
                if k != "creationTimestamp"}
    mirrors = []
    for entry in (icsp.get("spec") or {}).get("repositoryDigestMirrors") or []:
        converted: dict[str, Any] = {"source": entry.get("source")}
        if entry.get("mirrors"):
            converted["mirrors"] = list(entry["mirrors"])
        mirrors.append(converted)
    return {"apiVersion": "config.openshift.io/v1", "kind": "ImageDigestMirrorSet",
            "metadata": metadata, "spec": {"imageDigestMirrors": mirrors}}


def convert_file(path: str) -> tuple[str, str]:
    """The output file name and its text for one ICSP file."""
    docs = list(documents(path))
    if not docs:
        raise ConfigError(f"{path}: no ImageContentSourcePolicy in the file")
    for number, doc in enumerate(docs, start=1):
        if doc.get("kind") != ICSP:
            raise ConfigError(f"{path}: document {number} is a {doc.get('kind')!r}, not an "
                              f"{ICSP}")
        name = (doc.get("metadata") or {}).get("name")
        if not name:
            raise ConfigError(f"{path}: document {number}: metadata.name is required")
    text = "---\n".join(dump(icsp_to_idms(doc)) for doc in docs)
    first = docs[0]["metadata"]["name"]
    return f"imagedigestmirrorset_{first}.{secrets.randbits(63):06d}.yaml", text


def migrate(paths: list[str], dest_dir: str) -> list[str]:
    """Convert every file (all are checked before any is written); the paths written."""
    if os.path.exists(dest_dir) and not os.path.isdir(dest_dir):
        raise ConfigError(f"--dest-dir {dest_dir}: is a file, not a directory")
    converted = [convert_file(path) for path in paths]
    os.makedirs(dest_dir, exist_ok=True)
    written = []
    for name, text in converted:
        target = os.path.join(dest_dir, name)
        descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o777)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        written.append(target)
    return written
