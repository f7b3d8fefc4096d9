"""The `99-<pool>-generated-registries` MachineConfig: the regenerated files as Ignition
data URLs, so it can be compared with `oc get mc 99-worker-generated-registries -o yaml`."""

from __future__ import annotations

import base64
from typing import Any

import yaml

from .imagepolicies import CRIO_POLICIES_DIR, SIGSTORE_REGISTRIES_D
from .render import POLICY_JSON, REGISTRIES_CONF, SEARCH_DROP_IN, RenderedNode

IGNITION_VERSION = "3.5.0"
# The operator's file order inside the MachineConfig (registriesConfigIgnition); files it did
# not regenerate are left out. The per-namespace policies go after sigstore-registries.yaml,
# by namespace (sorted since 4.20; in map order before).
FILE_ORDER = (REGISTRIES_CONF, POLICY_JSON, SIGSTORE_REGISTRIES_D, CRIO_POLICIES_DIR,
              SEARCH_DROP_IN)


def _ordered(node: RenderedNode) -> list[str]:
    paths = []
    for path in FILE_ORDER:
        if path == CRIO_POLICIES_DIR:
            paths += sorted(p for p in node.files if p.startswith(CRIO_POLICIES_DIR + "/"))
        else:
            paths.append(path)
    return paths


def machine_config(node: RenderedNode, pool: str) -> dict[str, Any]:
    files = []
    for path in _ordered(node):
        if node.regenerated.get(path):
            encoded = base64.b64encode(node.files[path]).decode()
            files.append({
                "contents": {"source": f"data:text/plain;charset=utf-8;base64,{encoded}"},
                "mode": 420, "overwrite": True, "path": "/" + path,
            })
    return {
        "apiVersion": "machineconfiguration.openshift.io/v1",
        "kind": "MachineConfig",
        "metadata": {"labels": {"machineconfiguration.openshift.io/role": pool},
                     "name": f"99-{pool}-generated-registries"},
        "spec": {"config": {"ignition": {"version": IGNITION_VERSION},
                            "storage": {"files": files}}},
    }


def machine_config_yaml(node: RenderedNode, pool: str) -> str:
    return yaml.safe_dump(machine_config(node, pool), sort_keys=True, default_flow_style=False)
