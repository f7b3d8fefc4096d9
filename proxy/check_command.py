"""The `check` subcommand: will every image pull from the mirrors? Asked of the registries.

Every input is read and validated before anything is contacted (a bad one is a one-line
`error:` and exit status 2). The node configuration comes from `--root`, the files, or
`--crs` rendered on the fly by the same code as `render`. Images are walked a few at a
time (`--jobs`) and reported in input order as they finish. Exit status: 0 when every
image is `ok`, 1 when any fails or is not checked, 2 for bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from .check_inputs import (
    IMAGE_REFERENCES,
    ImageInput,
    deduplicated,
    from_arguments,
    from_kubernetes_file,
    from_list_file,
    images_of_image_references,
    parse_image,
)
from .check_payload import read_payload_file
from .check_report import format_json, format_summary, format_text
from .check_verdict import Judge, Status, Tally
from .check_walk import ImageWalk, Platform, Walker
from .errors import MirrorlabError
from .explain import NodeConfig
from .fallback import Fallback, FallbackMode, add_fallback_argument
from .paths import NodeFiles
from .reference import ImageReference
from .resolve_table import ResolveTable
from .upstream import Timeouts, Upstreams

EXIT_FAILED = 1
_FILE_FLAGS = ("root", "registries_conf", "registries_conf_dir", "policy")


@dataclass(frozen=True)
class CheckOptions:
    fallback: FallbackMode = FallbackMode.STICKY
    disconnected: bool = False
    assume_down: tuple[str, ...] = ()
    platform: Platform | None = None
    verify: bool = False
    jobs: int = 8
    json: bool = False
    width: int = 80
    timeouts: Timeouts = field(default_factory=Timeouts)
    resolve: ResolveTable = field(default_factory=ResolveTable)
    trusted_realms: tuple[str, ...] = ()


def terminal_width() -> int:
    """The terminal's width (or `COLUMNS`), kept within 60-100; 80 when unknown."""
    columns = shutil.get_terminal_size((80, 24)).columns
    return max(60, min(columns, 100))


class _Warnings(logging.Handler):
    """Collects what the upstream client warns about (a withheld credential), once each."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: dict[str, None] = {}

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        with contextlib.suppress(ValueError):
            data = json.loads(text)
            text = str(data.get("detail") or text) if isinstance(data, dict) else text
        self.messages[text] = None


@contextlib.contextmanager
def _quiet_proxy_log() -> Iterator[_Warnings]:
    """The attempt loop logs each attempt at INFO for `serve`; here the report says it all,
    so only warnings are kept, and printed after it."""
    logger = logging.getLogger("mirrorlab.proxy")
    handler = _Warnings()
    saved = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


class Run:
    """One `check` run: the walker, the judge, and the output as verdicts come."""

    def __init__(self, config: NodeConfig, options: CheckOptions, upstreams: Upstreams
                 ) -> None:
        self.options = options
        self.walker = Walker(config, upstreams, Fallback(options.fallback),
                             disconnected=options.disconnected,
                             assume_down=options.assume_down, platform=options.platform,
                             verify=options.verify)
        self.judge = Judge(config, options.fallback, self.walker.down_because)
        self.tally = Tally()
        self._jobs = asyncio.Semaphore(max(1, options.jobs))
        self._printed = 0
        self._walked = 0
        self._total = 0
        self._progress = sys.stderr.isatty() and not options.json

    async def walk(self, ref: ImageReference) -> ImageWalk:
        async with self._jobs:
            walk = await self.walker.walk(ref)
        self._walked += 1
        self._show_progress()
        return walk

    def _show_progress(self) -> None:
        """`checked N/M` on the terminal's last line (stderr), redrawn as images finish."""
        if self._progress and self._total:
            print(f"\r\033[Kchecked {self._walked}/{self._total}", end="", file=sys.stderr,
                  flush=True)

    def _clear_progress(self) -> None:
        if self._progress:
            print("\r\033[K", end="", file=sys.stderr, flush=True)

    def report(self, walk: ImageWalk, inputs: Sequence[ImageInput]) -> None:
        verdict = self.judge.judge(walk)
        self.tally.add(verdict)
        self._clear_progress()
        if self.options.json:
            print(format_json(verdict, inputs, walk), flush=True)
        else:
            if self._printed:
                print()
            print(format_text(verdict, inputs, self.options.width), flush=True)
        self._printed += 1
        self._show_progress()

    async def run(self, inputs: list[ImageInput], release: ImageInput | None) -> str | None:
        """Walk and report every image; the error reading the payload, if any."""
        payload_error = None
        groups = deduplicated(inputs)
        done: dict[ImageReference, ImageWalk] = {}
        if release is not None:
            release_walk = done[release.reference] = await self.walk(release.reference)
            try:
                data = await read_payload_file(self.walker, release_walk, IMAGE_REFERENCES)
                found = images_of_image_references(
                    data, f"--release-image {release.reference}: {IMAGE_REFERENCES}")
                groups = deduplicated([release, *inputs, *found])
            except MirrorlabError as error:
                payload_error = str(error)
                groups = deduplicated([release, *inputs])
        self._total = len(groups)
        tasks = {ref: asyncio.ensure_future(self.walk(ref)) for ref, _ in groups
                 if ref not in done}
        for ref, named in groups:
            walk = done[ref] if ref in done else await tasks[ref]
            self.report(walk, named)
        self._clear_progress()
        return payload_error



async def check(config: NodeConfig, options: CheckOptions, inputs: list[ImageInput],
                release: ImageInput | None) -> int:
    with _quiet_proxy_log() as warnings:
        upstreams = Upstreams(certs=config.certs, auth_files=config.auth_files,
                              resolve=options.resolve, timeouts=options.timeouts,
                              trusted_realms=options.trusted_realms)
        try:
            run = Run(config, options, upstreams)
            payload_error = await run.run(inputs, release)
        finally:
            await upstreams.close()
    if not options.json:
        print()
        print(format_summary(run.tally, str(options.fallback), options.width))
    for message in warnings.messages:
        print(f"warning: {message}", file=sys.stderr)
    if payload_error is not None:
        print(f"error: {payload_error}", file=sys.stderr)
        release_failed = run.tally.statuses[Status.FAILS] > 0
        return EXIT_FAILED if release_failed else 2
    return 0 if run.tally.all_ok else EXIT_FAILED


# ---------------------------------------------------------------- the command line


@contextlib.contextmanager
def _node_files(args: argparse.Namespace,
                node_files: Callable[[argparse.Namespace], NodeFiles]) -> Iterator[NodeFiles]:
    """The files to read: as `explain` reads them, or rendered from `--crs` into a
    temporary tree that stands for the node's `/`."""
    if not args.crs:
        yield node_files(args)
        return
    given = [f"--{name.replace('_', '-')}" for name in _FILE_FLAGS if getattr(args, name)]
    if given:
        raise MirrorlabError(f"--crs renders the node's files; it does not go with "
                             f"{', '.join(given)}")
    from .openshift.commands import write_tree
    from .openshift.crs import load_crs
    from .openshift.render import RenderOptions, render

    options = RenderOptions(
        release_image=args.release_image,
        extra_config_maps=tuple(cm for path in args.ca_configmap
                                for cm in load_crs([path]).config_maps))
    node = render(load_crs(args.crs), options)
    with tempfile.TemporaryDirectory(prefix="mirrorlab-check-") as root:
        write_tree(root, node)
        yield NodeFiles.from_environment(
            root=root, registries_conf=None, registries_conf_dir=None, policy=None,
            certs_dir=args.certs_dir, auth_file=args.auth_file)


def _inputs(args: argparse.Namespace) -> tuple[list[ImageInput], ImageInput | None]:
    inputs = from_arguments(args.images)
    for path in args.image_files:
        inputs += from_list_file(path)
    for path in args.pods:
        inputs += from_kubernetes_file(path)
    release = None
    if args.release_image:
        release = ImageInput(args.release_image, "--release-image",
                             parse_image(args.release_image, "--release-image"))
    if not inputs and release is None:
        raise MirrorlabError("no images to check: name them as arguments, or give --images, "
                             "--pods or --release-image")
    return inputs, release


def _options(args: argparse.Namespace) -> CheckOptions:
    platform = None
    if args.platform:
        try:
            platform = Platform.parse(args.platform)
        except ValueError as error:
            raise MirrorlabError(f"--platform {error}") from None
    if args.jobs < 1:
        raise MirrorlabError(f"--jobs {args.jobs}: must be at least 1")
    for name in ("connect_timeout", "read_timeout"):
        if getattr(args, name) <= 0:
            raise MirrorlabError(f"--{name.replace('_', '-')} must be more than 0 seconds")
    return CheckOptions(
        fallback=FallbackMode(args.fallback), disconnected=args.disconnected,
        assume_down=tuple(args.assume_down), platform=platform, verify=args.verify_content,
        jobs=args.jobs, json=args.json, width=terminal_width(),
        timeouts=Timeouts(connect=args.connect_timeout, read=args.read_timeout),
        resolve=ResolveTable.parse(args.resolve, offline=args.offline_names),
        trusted_realms=tuple(args.trust_realm))


def _command(node_files: Callable[[argparse.Namespace], NodeFiles]
             ) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        options = _options(args)
        inputs, release = _inputs(args)
        with _node_files(args, node_files) as files:
            config = NodeConfig.load(files)
            return asyncio.run(check(config, options, inputs, release))

    return run


def add_check_command(commands: argparse._SubParsersAction,  # type: ignore[type-arg]
                      add_node_files: Callable[[argparse.ArgumentParser], None],
                      node_files: Callable[[argparse.Namespace], NodeFiles]) -> None:
    """Register `check`; the node-file options and their reading are the CLI's own (the
    same as `explain`'s), passed in so that this module does not import the CLI."""
    p = commands.add_parser(
        "check", help="ask the real registries whether every image would pull",
        description="For each image: walk its pull plan as a node does (policy, then each "
        "source in order for the manifest, then every platform, config and layer at the "
        "source that served it, under the fallback mode's rules) against the real "
        "registries, with the node's TLS and credentials; report ok, fails (with the "
        "cause and the fix) or not checked. Exit 0 when every image is ok, 1 otherwise, "
        "2 for bad input.")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image references to check")
    p.add_argument("--images", dest="image_files", action="append", default=[],
                   metavar="FILE", help="one image reference a line, # comments; repeatable")
    p.add_argument("--pods", action="append", default=[], metavar="FILE",
                   help="Kubernetes objects, JSON or YAML (oc get pods -A -o json, a List, "
                   "manifests): every container and init container image; repeatable")
    p.add_argument("--release-image", metavar="REF",
                   help="a release payload: check it and every image of its "
                   "release-manifests/image-references (read through the same plan)")
    add_node_files(p)
    p.add_argument("--crs", action="append", default=[], metavar="PATH",
                   help="cluster CRs (files or directories) rendered into node files on the "
                   "fly, as `mirrorlab render` does; instead of --root or the files")
    p.add_argument("--ca-configmap", action="append", default=[], metavar="FILE",
                   help="with --crs: the ConfigMap named by additionalTrustedCA")
    p.add_argument("--disconnected", action="store_true",
                   help="treat every source registry that is not also a mirror as "
                   "unreachable, without contacting it: would this work air-gapped?")
    p.add_argument("--assume-down", action="append", default=[], metavar="HOST",
                   help="treat HOST (or HOST:PORT) as unreachable, without contacting it; "
                   "repeatable")
    add_fallback_argument(p, "the node's rules for a missing blob or platform manifest")
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]",
                   help="check only this platform of an index (default: every platform)")
    p.add_argument("--verify-content", action="store_true",
                   help="download every blob and check its digest (default: HEAD)")
    p.add_argument("--json", action="store_true", help="one JSON object per image per line")
    p.add_argument("--jobs", type=int, default=8, metavar="N",
                   help="images checked at a time (default: %(default)s)")
    p.add_argument("--resolve", action="append", default=[], metavar="HOST[:PORT]=ADDR:PORT",
                   help="connect to ADDR:PORT for HOST (TLS still checks HOST); repeatable")
    p.add_argument("--offline-names", action="store_true",
                   help="fail names missing from --resolve at once, without DNS")
    p.add_argument("--trust-realm", action="append", default=[], metavar="HOST",
                   help="send auth.json credentials to this token service though it is not "
                   "on the registry's site (as `serve --trust-realm`)")
    p.add_argument("--connect-timeout", type=float, default=5.0, metavar="SECONDS")
    p.add_argument("--read-timeout", type=float, default=30.0, metavar="SECONDS")
    p.set_defaults(func=_command(node_files))


__all__ = ["CheckOptions", "add_check_command", "check", "terminal_width"]
