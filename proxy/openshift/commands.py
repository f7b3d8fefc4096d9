"""The `render` and `migrate-icsp` subcommands."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..errors import MirrorlabError
from .crs import load_crs
from .imagepolicies import FEATURE_SETS
from .machineconfig import machine_config_yaml
from .migrate import migrate
from .render import RenderedNode, RenderOptions, render
from .rollout import rollout


def _version(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    if not (major.isdigit() and minor.isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r} is not MAJOR.MINOR (e.g. 4.19)")
    return int(major), int(minor)


def write_tree(root: str, node: RenderedNode) -> list[str]:
    """Write every rendered file under `root` (the node's `/`); the paths written."""
    written = []
    for relative, data in node.files.items():
        target = Path(root) / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        written.append(str(target))
    return written


def _cmd_render(args: argparse.Namespace) -> int:
    options = RenderOptions(
        release_image=args.release_image, ocp_version=args.ocp_version,
        feature_set=args.feature_set,
        extra_config_maps=tuple(cm for path in args.ca_configmap
                                for cm in load_crs([path]).config_maps))
    crs = load_crs(args.paths)
    node = render(crs, options)
    previous = None
    if args.previous:
        previous_crs = load_crs(args.previous)
        previous = (previous_crs, render(previous_crs, options))
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise MirrorlabError(f"--out {args.out}: is a file, not a directory")
    for path in write_tree(args.out, node):
        relative = os.path.relpath(path, args.out)
        state = "regenerated" if node.regenerated.get(relative, True) else "template"
        print(f"wrote {path} ({state})")
    if args.machineconfig:
        target = Path(args.out) / f"99-{args.machineconfig}-generated-registries.yaml"
        target.write_text(machine_config_yaml(node, args.machineconfig))
        print(f"wrote {target} (MachineConfig)")
    for line in node.report:
        print(f"  {line}")
    if previous is not None:
        verdict, actions = rollout(previous[0], previous[1], crs, node)
        print(f"rollout: {verdict}")
        for action in actions:
            print(f"  {action.subject}: {action.action} ({action.reason})")
    return 0


def _cmd_migrate(args: argparse.Namespace) -> int:
    for path in migrate(args.files, args.dest_dir):
        print(f"wrote ImageDigestMirrorSet to {path}")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = commands.add_parser(
        "render", help="render cluster CRs into the node's registry files",
        description="Read image.config/cluster, ImageDigestMirrorSets, ImageTagMirrorSets, "
        "ImageContentSourcePolicies, ClusterImagePolicies, ImagePolicies and the CA ConfigMap "
        "from YAML, and write the files the "
        "Machine Config Operator puts on a node, byte for byte, under ROOT.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="YAML files or directories")
    p.add_argument("--out", required=True, metavar="ROOT", help="the node's / to write into")
    p.add_argument("--release-image", metavar="REF",
                   help="the cluster's release image (decides whether its registry may be "
                   "blocked)")
    p.add_argument("--ca-configmap", action="append", default=[], metavar="FILE",
                   help="the ConfigMap named by additionalTrustedCA")
    p.add_argument("--ocp-version", type=_version, default=(4, 19), metavar="X.Y",
                   help="target OpenShift version, for encoder details (default: 4.19)")
    p.add_argument("--feature-set", choices=FEATURE_SETS, default="Default",
                   help="the cluster's feature set: ClusterImagePolicy and ImagePolicy need "
                   "TechPreviewNoUpgrade before 4.20, the PKI root of trust before 4.21")
    p.add_argument("--machineconfig", nargs="?", const="worker", metavar="POOL",
                   help="also write 99-POOL-generated-registries.yaml (default pool: worker)")
    p.add_argument("--previous", nargs="+", metavar="PATH",
                   help="the CRs before the change: report what nodes would go through")
    p.set_defaults(func=_cmd_render)

    p = commands.add_parser(
        "migrate-icsp", help="convert ImageContentSourcePolicy files to ImageDigestMirrorSets",
        description="As `oc adm migrate icsp`: one ImageDigestMirrorSet file per input file.")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--dest-dir", default=".", metavar="DIR")
    p.set_defaults(func=_cmd_migrate)
