"""mirrorlab: test an image-mirroring configuration before a rollout.

One distribution, one namespace. The subpackages live in the repository's top-level
folders (`mirrorlab/proxy`, `mirrorlab/harness` and `mirrorlab/certs` point at them):

- `mirrorlab.proxy`: the pure pull model (references, registries.conf, policy, plans),
  OpenShift rendering, and the `serve` proxy at its edge;
- `mirrorlab.harness`: the lab (real registries, fault proxies, scenarios, demo, bench);
- `mirrorlab.certs`: the lab's certificate authorities.

`mirrorlab.proxy` imports neither of the others; `mirrorlab.harness` builds on it; only
the command line (`mirrorlab.cli`) sees all three.
"""

from mirrorlab.proxy.errors import ConfigError, MirrorlabError
from mirrorlab.proxy.explain import Explanation, NodeConfig, explain
from mirrorlab.proxy.paths import NodeFiles
from mirrorlab.proxy.plan import PullPlan, PullSource, resolve_sources
from mirrorlab.proxy.policy import PolicyDecision, evaluate_policy
from mirrorlab.proxy.reference import ImageReference, parse_docker_reference

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "Explanation",
    "ImageReference",
    "MirrorlabError",
    "NodeConfig",
    "NodeFiles",
    "PolicyDecision",
    "PullPlan",
    "PullSource",
    "evaluate_policy",
    "explain",
    "parse_docker_reference",
    "resolve_sources",
]
