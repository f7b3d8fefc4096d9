"""The `mirrorlab` command line.

Every input error (bad flag, file, reference) ends as one line `error: ...` on stderr
and exit status 2; a traceback means a bug in mirrorlab.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from mirrorlab.harness.commands import add_commands as add_lab_commands
from mirrorlab.proxy.check_command import add_check_command
from mirrorlab.proxy.errors import MirrorlabError
from mirrorlab.proxy.explain import NodeConfig, explain, format_json, format_text
from mirrorlab.proxy.fallback import FallbackMode, add_fallback_argument
from mirrorlab.proxy.openshift.commands import add_commands as add_openshift_commands
from mirrorlab.proxy.paths import NodeFiles

EXIT_INPUT_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error instead of usage plus message."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_INPUT_ERROR, f"error: {self.prog}: {message} (see --help)\n")


def _add_node_files(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("node configuration (defaults: as podman reads them)")
    group.add_argument("--registries-conf", metavar="FILE", help="registries.conf to use")
    group.add_argument("--registries-conf-dir", metavar="DIR", help="drop-in directory to use")
    group.add_argument("--policy", metavar="FILE", help="policy.json to use")
    group.add_argument("--certs-dir", metavar="DIR",
                       help="per-host certificate directories (DIR/HOST[:PORT]/*.crt)")
    group.add_argument("--authfile", "--auth-file", dest="auth_file", metavar="FILE",
                       help="auth.json to use (spelled as podman and skopeo spell it; "
                       "--auth-file is the same)")
    group.add_argument("--registries-d", metavar="DIR",
                       help="registries.d directory: where each source's signatures are read")
    group.add_argument("--root", metavar="ROOT", default="",
                       help="a rendered tree that stands for the node's / (no per-user files)")


def node_files(args: argparse.Namespace) -> NodeFiles:
    return NodeFiles.from_environment(
        root=args.root,
        registries_conf=args.registries_conf,
        registries_conf_dir=args.registries_conf_dir,
        policy=args.policy,
        certs_dir=args.certs_dir,
        auth_file=args.auth_file,
        registries_d=args.registries_d,
    )


def _cmd_explain(args: argparse.Namespace) -> int:
    config = NodeConfig.load(node_files(args))
    status = 0
    for index, text in enumerate(args.references):
        result = explain(config, text, FallbackMode(args.fallback))
        if args.json:
            print(format_json(result), flush=True)
        else:
            if index:
                print()
            print(format_text(result), flush=True)
        if result.error is not None:
            print(f"error: {result.error}", file=sys.stderr)
            status = EXIT_INPUT_ERROR
    return status


def _any_registry(args: argparse.Namespace, host: str) -> bool:
    """Any registry on loopback (a node contacts whatever it is asked for); beyond it, only
    named ones unless told: an open proxy would reach any address for any client."""
    if args.any_registry is not None:
        return bool(args.any_registry)
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _listen(text: str) -> tuple[str, int]:
    """`--listen ADDRESS:PORT`, `[IPv6]:PORT`, or `:PORT` for loopback."""
    host, colon, port = text.rpartition(":")
    if not colon or not port or not (port.isascii() and port.isdigit()):
        raise MirrorlabError(f"--listen {text!r}: expected ADDRESS:PORT")
    if host.startswith("[") or host.endswith("]"):
        if not (host.startswith("[") and host.endswith("]")) or len(host) < 3:
            raise MirrorlabError(f"--listen {text!r}: expected ADDRESS:PORT")
        host = host[1:-1]
        if ":" not in host:
            raise MirrorlabError(f"--listen {text!r}: [{host}] is not an IPv6 address")
    elif ":" in host:
        raise MirrorlabError(f"--listen {text!r}: an IPv6 address goes in brackets: "
                             "[ADDRESS]:PORT")
    number = int(port) if len(port) <= 5 else 65536
    if number > 65535:
        raise MirrorlabError(f"--listen {text!r}: port {port} is not in 0-65535")
    return host or "127.0.0.1", number


def _gib(text: str) -> int:
    """A size in GiB (a decimal fraction allowed) as bytes."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of GiB") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: a size is a finite number >= 0")
    return int(value * 1024**3)


def _cache_dir(args: argparse.Namespace) -> str | None:
    if args.cache is None and (args.cache_max_gib is not None or args.serve_stale):
        raise MirrorlabError("--cache-max-gib and --serve-stale need --cache DIR")
    return str(args.cache) if args.cache is not None else None


def _cmd_cache(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from mirrorlab.proxy.cache import age, list_cache, prune_cache, verify_cache

    root = Path(args.dir)
    if args.cache_command == "ls":
        entries, tags, temporary = list_cache(root)
        if args.json:
            for item in reversed(entries):
                print(json.dumps({"kind": item.kind, "digest": item.digest, "bytes": item.size,
                                  "last_used": age(item.mtime)}))
            for record in tags.values():
                print(json.dumps({"kind": "tag", **record.to_json(), "since": age(record.at)}))
            return 0
        for item in reversed(entries):  # most recently used first
            print(f"{item.kind:9} {item.digest}  {item.size:>12}  {age(item.mtime)}")
        for record in sorted(tags.values(), key=lambda r: r.reference):
            print(f"{'tag':9} {record.reference} -> {record.digest}  {age(record.at)}  "
                  f"(from {record.source})")
        total = sum(item.size for item in entries)
        print(f"{len(entries)} entries, {total} bytes ({total / 1024**3:.2f} GiB), "
              f"{len(tags)} tag answers; {temporary} bytes of fills in progress")
        return 0
    if args.cache_command == "verify":
        results = verify_cache(root)
        bad = [(item, problem) for item, problem in results if problem is not None]
        for item, problem in bad:
            print(f"removed {item.kind} {item.digest}: {problem}")
        print(f"{len(results)} entries verified: {len(results) - len(bad)} intact, "
              f"{len(bad)} removed")
        return 1 if bad else 0
    removed = prune_cache(root, args.max_gib)
    freed = sum(item.size for item in removed)
    for item in removed:
        print(f"removed {item.kind} {item.digest} ({item.size} bytes, last used "
              f"{age(item.mtime)})")
    print(f"{len(removed)} entries removed, {freed} bytes freed")
    return 0


def _add_cache_command(commands: argparse._SubParsersAction[_Parser]) -> None:
    p = commands.add_parser(
        "cache", help="list, verify or prune a `serve --cache` directory",
        description="The verified cache of `mirrorlab serve --cache DIR`, offline (also "
        "while the proxy runs: an entry removed here is never served again).")
    sub = p.add_subparsers(dest="cache_command", required=True, parser_class=_Parser)
    ls = sub.add_parser("ls", help="entries, most recently used first, and tag answers")
    ls.add_argument("dir", metavar="DIR")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    verify = sub.add_parser("verify", help="re-hash every entry; remove the bad ones (exit "
                            "status 1 when any was removed)")
    verify.add_argument("dir", metavar="DIR")
    prune = sub.add_parser("prune", help="remove least recently used entries down to a size")
    prune.add_argument("dir", metavar="DIR")
    prune.add_argument("--max-gib", type=_gib, required=True, metavar="GIB",
                       help="what the cache may hold afterwards (0 empties it)")
    p.set_defaults(func=_cmd_cache)


def _cmd_serve(args: argparse.Namespace) -> int:
    import asyncio
    import ssl

    from mirrorlab.proxy.resolve_table import ResolveTable
    from mirrorlab.proxy.server import ServeOptions, configure_logging, serve
    from mirrorlab.proxy.upstream import Timeouts

    host, port = _listen(args.listen)
    context = None
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            raise MirrorlabError("--tls-cert and --tls-key go together")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as error:
            raise MirrorlabError(f"loading --tls-cert {args.tls_cert}: {error}") from None
    options = ServeOptions(
        files=node_files(args),
        resolve=ResolveTable.parse(args.resolve, offline=args.offline_names),
        default_registry=args.default_registry,
        short_names=args.short_names,
        buffer_budget=args.buffer_budget_mib * 1024 * 1024,
        timeouts=Timeouts(connect=args.connect_timeout, read=args.read_timeout),
        fallback=FallbackMode(args.fallback),
        cooldown_seconds=args.cooldown,
        any_registry=_any_registry(args, host),
        idle_timeout=args.idle_timeout,
        trusted_realms=tuple(args.trust_realm),
        cache_dir=_cache_dir(args),
        cache_max_bytes=args.cache_max_gib,
        serve_stale=args.serve_stale,
    )
    configure_logging()
    try:
        asyncio.run(serve(options, host, port, context))
    except OSError as error:
        raise MirrorlabError(f"listening on {args.listen}: {error.strerror or error}") from None
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mirrorlab", description=__doc__.splitlines()[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = commands.add_parser(
        "explain",
        help="show the sources a pull tries, in order, and the policy decision",
        description="For each reference: the normalized reference, the policy.json decision "
        "and the scope that made it, and every source containers/image would try, in order.",
    )
    _add_node_files(p)
    p.add_argument("--json", action="store_true", help="one JSON object per reference per line")
    add_fallback_argument(p, "the mode marked as selected where a failed blob is explained")
    p.add_argument("references", nargs="+", metavar="REFERENCE")
    p.set_defaults(func=_cmd_explain)

    p = commands.add_parser(
        "serve",
        help="run the pull proxy",
        description="An OCI distribution pull server: `podman pull ADDRESS/quay.io/ns/app:v1` "
        "pulls quay.io/ns/app:v1 through the mirror chain of the node configuration.",
    )
    _add_node_files(p)
    p.add_argument("--listen", default="127.0.0.1:5000", metavar="ADDRESS:PORT",
                   help="where to listen (default: %(default)s, loopback only)")
    p.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate")
    p.add_argument("--tls-key", metavar="FILE", help="the key of --tls-cert")
    p.add_argument("--resolve", action="append", default=[], metavar="HOST[:PORT]=ADDR:PORT",
                   help="connect to ADDR:PORT for HOST (TLS still checks HOST); repeatable")
    p.add_argument("--offline-names", action="store_true",
                   help="fail names missing from --resolve at once, without DNS")
    p.add_argument("--default-registry", default="docker.io", metavar="HOST",
                   help="registry for paths that name none (default: %(default)s)")
    p.add_argument("--short-names", choices=("default", "search"), default="default",
                   help="paths naming no registry: go to --default-registry, or resolve "
                   "them through [aliases] and unqualified-search-registries as podman does")
    p.add_argument("--connect-timeout", type=float, default=5.0, metavar="SECONDS")
    p.add_argument("--read-timeout", type=float, default=30.0, metavar="SECONDS")
    p.add_argument("--trust-realm", action="append", default=[], metavar="HOST",
                   help="send auth.json credentials to this token service even though it is "
                   "not on the registry's own site (containers/image sends them to any realm; "
                   "mirrorlab only to the same host or domain unless told)")
    p.add_argument("--idle-timeout", type=float, default=60.0, metavar="SECONDS",
                   help="close a client connection without a complete request for this long "
                   "(default: %(default)s)")
    add_fallback_argument(p, "what a failed blob or per-platform manifest does")
    p.add_argument("--any-registry", action="store_true", default=None,
                   help="contact any registry a client names (the default on loopback; "
                   "beyond loopback only those the configuration or --resolve names)")
    p.add_argument("--cooldown", type=float, default=30.0, metavar="SECONDS",
                   help="skip a host that keeps failing for this long (default: %(default)s)")
    p.add_argument("--buffer-budget-mib", type=int, default=16, metavar="MIB",
                   help="memory for verifying small blobs before sending, across all requests "
                   "(default: %(default)s); past it they stream with the last chunk held back")
    p.add_argument("--strict", dest="fallback", action="store_const",
                   const=str(FallbackMode.STICKY),
                   help="the same as --fallback sticky (node-faithful; kept for old scripts)")
    p.add_argument("--cache", metavar="DIR",
                   help="keep verified blobs and manifests (by digest) in DIR and serve "
                   "them from there; off by default (a hit contacts no source: prove a "
                   "configuration without it)")
    p.add_argument("--cache-max-gib", type=_gib, metavar="GIB",
                   help="bound the cache's size, evicting the least recently used entries "
                   "(default: only the disk's free space)")
    p.add_argument("--serve-stale", action="store_true",
                   help="with --cache: when every source of a tag is down, serve the last "
                   "verified answer for it, marked X-Mirrorlab-Cache: stale")
    p.set_defaults(func=_cmd_serve)

    _add_cache_command(commands)

    add_check_command(commands, _add_node_files, node_files)
    add_openshift_commands(commands)
    add_lab_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except MirrorlabError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
