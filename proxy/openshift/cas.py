"""Registry CA files from the `additionalTrustedCA` ConfigMap, as the machine-config daemon
writes them: one `ca.crt` per key, `..` in a key standing for `:` (keys cannot hold `:`)."""

from __future__ import annotations

import base64
import binascii
import re

from ..errors import ConfigError
from .crs import ConfigMap

_KEY = re.compile(r"[-._a-zA-Z0-9]+")


def _stored(value: str) -> bytes:
    """The operator stores a `data` value base64-decoded when it decodes, else verbatim."""
    try:
        return base64.b64decode(value.replace("\n", "").replace("\r", ""), validate=True)
    except (binascii.Error, ValueError):
        return value.encode()


def ca_files(config_map: ConfigMap) -> dict[str, bytes]:
    """`etc/docker/certs.d/<host[:port]>/ca.crt` -> bytes, `data` keys then `binaryData`."""
    files: dict[str, bytes] = {}
    values = [(key, _stored(config_map.data[key])) for key in sorted(config_map.data)]
    values += [(key, config_map.binary_data[key]) for key in sorted(config_map.binary_data)]
    for key, value in values:
        if not _KEY.fullmatch(key) or key in (".", ".."):
            raise ConfigError(config_map.origin.at(f"data[{key!r}]") + ": a ConfigMap key "
                              "must consist of alphanumerics, '-', '_' or '.'")
        files[f"etc/docker/certs.d/{key.replace('..', ':')}/ca.crt"] = value
    return files
