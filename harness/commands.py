"""`mirrorlab lab up|down|status` and `mirrorlab demo`."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from mirrorlab.proxy.errors import MirrorlabError
from mirrorlab.proxy.fallback import add_fallback_argument

from .backends import Handle
from .faults import FaultControl
from .lab import Lab, LabState, alive
from .scenario import Scenario, load_scenario

DEFAULT_WORKDIR = "lab"


def _usage(state: LabState) -> list[str]:
    scenario = load_scenario(None if state.scenario == "seed-failover" and not
                             Path(state.workdir, "scenario.path").exists()
                             else Path(state.workdir, "scenario.path").read_text())
    proxy = f"127.0.0.1:{state.proxy_port}"
    lines = [f"proxy: http://{proxy} (mirrorlab serve --root {state.workdir}/node)",
             f"node files: {state.workdir}/node/etc (registries.conf, policy.json, certs.d)",
             f"lab CAs: {state.workdir}/certs", "try:"]
    for registry in scenario.registries:
        for content in registry.content:
            tag = f":{content.tag}" if content.tag else f"@{state.digests[content.image]}"
            lines.append(f"  podman pull --tls-verify=false {proxy}/{registry.name}/"
                         f"{content.repo}{tag}")
    lines.append(f"  mirrorlab explain --root {state.workdir}/node REFERENCE")
    return lines


def _with_fallback(scenario: Scenario, mode: str | None) -> Scenario:
    """`--fallback` on the command line overrides the scenario's own mode."""
    return dataclasses.replace(scenario, fallback=mode) if mode else scenario


def _cmd_lab(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir)
    if args.action == "up":
        scenario = _with_fallback(load_scenario(args.scenario), args.fallback)
        try:
            state = Lab(scenario, workdir, args.backend).up()
        except RuntimeError as error:
            raise MirrorlabError(str(error)) from None
        if args.scenario:
            Path(state.workdir, "scenario.path").write_text(str(Path(args.scenario).resolve()))
        print(f"lab {scenario.name} is up in {state.workdir}; registries run as "
              f"{state.backend_plural} ({state.backend_reason})")
        for line in _usage(state):
            print(line)
        return 0
    if args.action == "images":
        from .backends import Podman, build_registry_image
        from .proxyimage import build_proxy_image

        podman = Podman(workdir)
        try:
            registry_image = build_registry_image(podman, workdir)
            proxy_image = build_proxy_image(podman, workdir, Path(__file__).resolve().parents[1])
        except (RuntimeError, OSError) as error:
            raise MirrorlabError(f"building images: {error}") from None
        print(f"{registry_image}\n{proxy_image}\n(in the podman store {workdir / 'podman-store'}: "
              f"podman-compose --podman-args \"{' '.join(podman.base[1:])}\" up -d)")
        return 0
    if args.action == "down":
        stopped = Lab.down(workdir)
        print("\n".join(f"stopped {s}" for s in stopped) if stopped else
              f"no lab is up in {workdir}")
        return 0
    if not (workdir / "state.json").exists():
        print(f"no lab is up in {workdir}")
        return 0
    state = LabState.load(workdir)
    print(f"lab {state.scenario} in {state.workdir} ({state.backend} backend)")
    print(f"  proxy 127.0.0.1:{state.proxy_port}: "
          f"{'running' if alive(state.proxy_pid) else 'NOT RUNNING'}")
    for registry in state.registries:
        fault = "?"
        try:
            fault = FaultControl(registry.control_port).fault().kind
        except OSError:
            fault = "fault proxy not answering"
        up = "stopped" if registry.stopped else _handle_state(registry.handle)
        print(f"  {registry.name}: registry {up} on 127.0.0.1:{registry.registry_port}, "
              f"front 127.0.0.1:{registry.front_port} (fault: {fault})")
    return 0


def _handle_state(handle: Handle) -> str:
    if handle.kind == "process":
        return "running" if alive(int(handle.ident)) else "NOT RUNNING"
    return f"container {handle.ident[:12]}"


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    scenario = _with_fallback(load_scenario(args.scenario), args.fallback)
    try:
        results, _ = run_demo(scenario, Path(args.workdir), backend=args.backend,
                              keep=args.keep)
    except RuntimeError as error:
        raise MirrorlabError(str(error)) from None
    return 0 if all(r.passed for r in results) else 1


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_bench

    try:
        import matplotlib  # noqa: F401  (the plot; checked before minutes of measuring)
    except ImportError:
        raise MirrorlabError("mirrorlab bench draws its plot with matplotlib: "
                             "pip install 'mirrorlab[bench]'") from None
    try:
        results = run_bench(Path(args.workdir), size_mib=args.size_mib,
                            large_mib=args.large_mib, reps=args.reps,
                            requests=args.requests, out=Path(args.out))
    except RuntimeError as error:
        raise MirrorlabError(str(error)) from None
    print((Path(args.out) / "results.md").read_text())
    print(f"ratios: {json.dumps(results['ratios'], indent=2)}")
    print(f"wrote results.json, results.md and results.png in {args.out}")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = commands.add_parser("lab", help="start, stop or inspect a lab of real registries",
                            description="A lab: the scenario's registries (real "
                            "docker-registry processes or containers), each behind a fault "
                            "proxy, seeded with generated images, and mirrorlab serve on the "
                            "rendered configuration.")
    p.add_argument("action", choices=("up", "down", "status", "images"),
                   help="images: build the registry and proxy images for compose.yaml")
    p.add_argument("scenario", nargs="?", help="scenario file (default: the built-in one)")
    p.add_argument("--workdir", default=DEFAULT_WORKDIR, help="lab directory (default: ./lab)")
    add_fallback_argument(p, "the proxy's fallback mode", default=None)
    p.add_argument("--backend", choices=("auto", "process", "container"), default="auto",
                   help="how registries run (auto: containers when podman can run them)")
    p.set_defaults(func=_cmd_lab)

    p = commands.add_parser("demo", help="play the failover demo (what `make demo` runs)",
                            description="Bring a lab up, pull with podman through mirrorlab "
                            "while mirrors die, and write a report.")
    p.add_argument("--scenario", metavar="FILE", help="another scenario file")
    p.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    add_fallback_argument(p, "the proxy's fallback mode", default=None)
    p.add_argument("--workdir", default=DEFAULT_WORKDIR)
    p.add_argument("--backend", choices=("auto", "process", "container"), default="auto")
    p.set_defaults(func=_cmd_demo)

    p = commands.add_parser("bench", help="measure mirrorlab against its baselines",
                            description="Blob throughput (direct, mirrorlab, distribution's "
                            "pull-through proxy cold and warm), manifest latency p50/p99 "
                            "(direct vs mirrorlab), CPU per GB and the ceiling it sets, the "
                            "proxy's peak memory, concurrent pulls, podman pull time and "
                            "failover cost, on loopback; "
                            "results.json, results.md and results.png.")
    p.add_argument("--size-mib", type=int, default=256,
                   help="blob size for throughput (default: %(default)s)")
    p.add_argument("--large-mib", type=int, default=1024,
                   help="a larger blob, streamed once to show memory flat in size "
                   "(default: %(default)s)")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--requests", type=int, default=200, help="manifest requests per case")
    p.add_argument("--out", default="bench", help="where results.json and results.md go")
    p.add_argument("--workdir", default="bench/work")
    p.set_defaults(func=_cmd_bench)
