"""mirrorlab's pull model and proxy.

The pure core (`reference`, `registries_conf`, `matching`, `plan`, `policy`, `certsd`,
`authfile`) does no I/O beyond the loaders named `load_*`; the server and CLI sit on it.
"""

