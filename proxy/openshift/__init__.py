"""OpenShift's rendering of node registry configuration from cluster custom resources.

`crs` reads the YAML, `scopes` holds the grammars and the nesting relation, `mirrorsets`
merges mirror lists, `registries` edits registries.conf as the Machine Config Operator
does, `policy` builds policy.json, `imagepolicies` reads ClusterImagePolicy and
ImagePolicy and writes their signature requirements, sigstore-registries.yaml and the
per-namespace CRI-O policies, `cas` the certs.d files, and `render` ties them into the files
of a node.
"""
