"""The `mirrorlab` command line.

Every input error (bad flag, file, reference) ends as one line `error: ...` on stderr
and exit status 2; a traceback means a bug in mirrorlab.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from .errors import MirrorlabError
from .explain import NodeConfig, explain, format_json, format_text
from .paths import NodeFiles

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
    group.add_argument("--auth-file", metavar="FILE", help="auth.json to use")
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
    )


def _cmd_explain(args: argparse.Namespace) -> int:
    config = NodeConfig.load(node_files(args))
    status = 0
    for index, text in enumerate(args.references):
        result = explain(config, text)
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
    p.add_argument("references", nargs="+", metavar="REFERENCE")
    p.set_defaults(func=_cmd_explain)
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
