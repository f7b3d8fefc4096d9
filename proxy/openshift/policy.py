"""policy.json as the Machine Config Operator writes it (helpers.go, updatePolicyJSON).

`allowedRegistries` makes the default `reject` and accepts each scope; `blockedRegistries`
rejects each scope; each ClusterImagePolicy scope gets its `sigstoreSigned` requirements
appended (an allowed scope that is also a policy scope gets no `insecureAcceptAnything`).
Scopes go to the `docker` transport verbatim, and to `atomic` only when they have fewer
than three `/`. Encoded like Go's `json.MarshalIndent(v, "", "  ")` from 4.17 on and
`json.Marshal` (compact) up to 4.16: map keys sorted, struct fields in declaration order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

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


def _escape_html(text: str) -> str:
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text


def go_json(value: object, indent: str | None = "  ", *, sort_keys: bool = True) -> bytes:
    """`json.MarshalIndent(value, "", indent)` (`json.Marshal` when `indent` is None): HTML
    escaped. With `sort_keys` every object is a Go map (keys sorted); without it the dicts
    are written in their order (structs), see `policy_json`."""
    if indent is None:
        text = json.dumps(value, separators=(",", ":"), sort_keys=sort_keys, ensure_ascii=False)
    else:
        text = json.dumps(value, indent=indent, sort_keys=sort_keys, ensure_ascii=False)
    return _escape_html(text).encode()


def policy_json(policy: Mapping[str, Any], indent: str | None = "  ") -> bytes:
    """A `signature.Policy` as Go encodes it: `default` then `transports` (struct order),
    transports and their scopes sorted (maps), requirements as they are (structs)."""
    transports = policy.get("transports") or {}
    ordered = {"default": policy["default"],
               "transports": {name: {scope: transports[name][scope]
                                     for scope in sorted(transports[name])}
                              for name in sorted(transports)}}
    return go_json(ordered, indent, sort_keys=False)


def policy_indent(version: tuple[int, int]) -> str | None:
    """MCO PR "Format policy.json" (4.17): indented from then on, compact before."""
    return "  " if version >= (4, 17) else None


def build_policy_object(allowed: Sequence[str], blocked: Sequence[str],
                        payload_repository: str | None,
                        cluster_scopes: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
                        ) -> dict[str, Any] | None:
    """`updatePolicyJSON` after its checks: the policy object, or None when the operator
    keeps the template bytes (no allowed, no blocked, no ClusterImagePolicy scope)."""
    cluster_scopes = cluster_scopes or {}
    if allowed and blocked and list(allowed) != [payload_repository]:
        raise ConfigError("invalid images config: only one of AllowedRegistries or "
                          "BlockedRegistries may be specified")
    if not allowed and not blocked and not cluster_scopes:
        return None
    check_scopes("blocked", blocked)
    check_scopes("allowed", allowed)
    policy: dict[str, Any] = json.loads(TEMPLATE_POLICY)
    scopes: dict[str, list[Any]] = {}
    if allowed:
        policy["default"] = REJECT
        for scope in allowed:
            if cluster_scopes.get(scope):
                continue  # the policy's requirements, not insecureAcceptAnything
            scopes[scope] = ACCEPT
    if blocked:
        policy["default"] = ACCEPT
        for scope in blocked:
            scopes[scope] = REJECT
    for scope, requirements in cluster_scopes.items():
        scopes[scope] = [*scopes.get(scope, []), *requirements]
    if scopes:
        policy["transports"]["docker"] = scopes
        policy["transports"]["atomic"] = {k: v for k, v in scopes.items() if k.count("/") < 3}
    return policy


def build_policy(allowed: Sequence[str], blocked: Sequence[str],
                 payload_repository: str | None,
                 cluster_scopes: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
                 version: tuple[int, int] = (4, 19)) -> bytes | None:
    """The generated policy.json, or None when the operator keeps the template."""
    policy = build_policy_object(allowed, blocked, payload_repository, cluster_scopes)
    return None if policy is None else policy_json(policy, policy_indent(version))
