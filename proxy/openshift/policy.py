"""policy.json as the Machine Config Operator writes it from allowed and blocked registries.

`allowedRegistries` makes the default `reject` and accepts each scope; `blockedRegistries`
rejects each scope. Scopes go to the `docker` transport verbatim, and to `atomic` only
when they have fewer than three `/`. Encoded like Go's `json.MarshalIndent(v, "", "  ")`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from ..errors import ConfigError
from .scopes import valid_registries_conf_scope

# The template of the operator's base MachineConfig, byte for byte (no final newline).
TEMPLATE_POLICY = b"""{
    "default": [
        {
            "type": "insecureAcceptAnything"
        }
    ],
    "transports":
        {
            "docker-daemon":
                {
                    "": [{"type":"insecureAcceptAnything"}]
                }
        }
}"""

ACCEPT = [{"type": "insecureAcceptAnything"}]
REJECT = [{"type": "reject"}]


def check_scopes(kind: str, scopes: Sequence[str], where: str = "") -> None:
    """The operator's check and message; `where` (file and field) goes before it."""
    for scope in scopes:
        if not valid_registries_conf_scope(scope):
            raise ConfigError(f'{where}invalid entry for {kind} registries "{scope}"')


def go_json(value: object) -> bytes:
    """`json.MarshalIndent(value, "", "  ")` for these maps: sorted keys, HTML escaped."""
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text.encode()


def build_policy(allowed: Sequence[str], blocked: Sequence[str],
                 payload_repository: str | None) -> bytes | None:
    """The generated policy.json, or None when the operator keeps the template."""
    if allowed and blocked and list(allowed) != [payload_repository]:
        raise ConfigError("invalid images config: only one of AllowedRegistries or "
                          "BlockedRegistries may be specified")
    if not allowed and not blocked:
        return None
    check_scopes("blocked", blocked)
    check_scopes("allowed", allowed)
    policy = json.loads(TEMPLATE_POLICY)
    scopes: dict[str, list[dict[str, str]]] = {}
    if allowed:
        policy["default"] = REJECT
        for scope in allowed:
            scopes[scope] = ACCEPT
    if blocked:
        policy["default"] = ACCEPT
        for scope in blocked:
            scopes[scope] = REJECT
    policy["transports"]["docker"] = scopes
    policy["transports"]["atomic"] = {k: v for k, v in scopes.items() if k.count("/") < 3}
    return go_json(policy)
