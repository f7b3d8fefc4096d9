"""Coverage-guided fuzzing (atheris, libFuzzer) of every reader of outside input.

    python -m tests.fuzz TARGET [CORPUS_DIR] [libFuzzer flags: -runs=N -max_total_time=S]
    python -m tests.fuzz --list

Each target feeds the bytes to the same loader the CLI and the proxy use. The only outcomes
allowed are success or the loader's own error, on one line, naming the file; any other
exception is a crash, which libFuzzer reports with the input that caused it (written to
`crash-*`). `make fuzz` runs every target for a while; the suite runs each one briefly
(tests/test_fuzz.py) from the seeds below.
"""

from __future__ import annotations

import functools
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["proxy", "harness"]):
    from mirrorlab.harness.scenario import load_scenario
    from mirrorlab.proxy.authfile import load_auth_files
    from mirrorlab.proxy.blobs import parse_range as _parse_range
    from mirrorlab.proxy.errors import MirrorlabError
    from mirrorlab.proxy.openshift.crs import load_crs
    from mirrorlab.proxy.openshift.render import render
    from mirrorlab.proxy.policy import load_policy
    from mirrorlab.proxy.reference import InvalidReference, parse_docker_reference, validate_digest
    from mirrorlab.proxy.registries_conf import RegistriesConfPaths, load_registries_conf
    from mirrorlab.proxy.routing import route

SEEDS = Path(__file__).parent / "golden" / "seed"


def _one_line(error: Exception, names: str = "") -> None:
    text = str(error)
    if len(text.splitlines()) != 1 or (names and names not in text):
        raise AssertionError(f"unhelpful error {type(error).__name__}: {text!r}")


@functools.cache
def _work() -> Path:
    """Where targets write their inputs: $MIRRORLAB_FUZZ_WORK (the suite and `make fuzz` set
    it to a directory they own), else a new temporary one. Made on first use, so that
    importing this module (tests/test_fuzz.py does, for the target names) leaves nothing."""
    if given := os.environ.get("MIRRORLAB_FUZZ_WORK"):
        Path(given).mkdir(parents=True, exist_ok=True)
        return Path(given)
    return Path(tempfile.mkdtemp(prefix="mirrorlab-fuzz-"))


def _file(data: bytes, name: str) -> str:
    path = _work() / name
    path.write_bytes(data)
    return str(path)


def fuzz_reference(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    try:
        ref = parse_docker_reference(text)
    except InvalidReference as error:
        _one_line(error)
        return
    if parse_docker_reference(str(ref)) != ref:
        raise AssertionError(f"{text!r}: normal form {ref} does not parse back to itself")


def fuzz_request(data: bytes) -> None:
    """What the proxy reads from a request before any I/O: the name (path or `?ns=`),
    the tag or digest, and the Range header."""
    fdp = atheris.FuzzedDataProvider(data)
    name = fdp.ConsumeUnicodeNoSurrogates(200)
    ns = fdp.ConsumeUnicodeNoSurrogates(40) or None
    identity = fdp.ConsumeUnicodeNoSurrogates(100)
    header = fdp.ConsumeUnicodeNoSurrogates(60)
    total = fdp.ConsumeIntInRange(1, 1 << 40)
    try:
        found = route(name, ns)
        found.reference(identity)
    except ValueError as error:  # InvalidReference is one
        _one_line(error)
    if ":" in identity:
        try:
            validate_digest(identity)
        except InvalidReference as error:
            _one_line(error)
    try:
        window = _parse_range(header, total)
    except ValueError:
        return
    if window is not None and not 0 <= window[0] <= window[1] < total:
        raise AssertionError(f"range {header!r} of {total} gave {window}")


def loader(name: str, load: Callable[[str], object]) -> Callable[[bytes], None]:
    """A target writing the bytes to a file called `name` and reading it with `load`."""
    def target(data: bytes) -> None:
        path = _file(data, name)
        try:
            load(path)
        except MirrorlabError as error:
            _one_line(error, path)
    return target


TARGETS: dict[str, tuple[Callable[[bytes], None], list[str]]] = {
    # name: (target, seed files under tests/golden/seed matching these suffixes)
    "reference": (fuzz_reference, []),
    "request": (fuzz_request, []),
    "registries_conf": (loader("registries.conf", lambda path: load_registries_conf(
        RegistriesConfPaths(path, True, ()))), [".conf"]),
    "policy": (loader("policy.json", load_policy), [".json"]),
    "auth_file": (loader("auth.json", lambda path: load_auth_files([(path, False)])),
                  [".json"]),
    "crs": (loader("crs.yaml", lambda path: render(load_crs([path]))), [".yaml"]),
    "scenario": (loader("scenario.yaml", load_scenario), [".yaml"]),
}
# Nested past any recursion limit (the interpreter's is 1,000 frames, tomlkit's 100 levels)
# and small enough for libFuzzer to mutate quickly: the parsers' RecursionError was a crash.
DEEP = 5000
DEEP_JSON = [b"[" * DEEP + b"]" * DEEP, b'{"default": ' * DEEP + b"[]" + b"}" * DEEP]
DEEP_TOML = [b"unqualified-search-registries = " + b"[" * DEEP + b"]" * DEEP + b"\n",
             b"x = " + b"{a = " * DEEP + b"1" + b"}" * DEEP + b"\n",
             b".".join([b"a"] * DEEP) + b" = 1\n"]
DEEP_YAML = [b"[" * DEEP + b"]" * DEEP + b"\n", b"kind: " + b"{a: " * DEEP + b"1" + b"}" * DEEP]
EXTRA_SEEDS = {
    "reference": [b"quay.io/ns/app:v1", b"localhost:5000/a@sha256:" + b"a" * 64, b"busybox"],
    "request": [b"quay.io/ns/app\x00v1\x00bytes=0-9", b"library/busybox"],
    "registries_conf": DEEP_TOML,
    "policy": [*DEEP_JSON, b'{"default": [{"type": "reject", "n": ' + b"9" * 5000 + b"}]}"],
    "auth_file": [b'{"auths": {"quay.io": {"auth": "dXNlcjpwYXNz"}}}',
                  b'{"auths": ' + b'{"a": ' * DEEP + b"{}" + b"}" * DEEP + b"}", *DEEP_JSON],
    "crs": [*DEEP_YAML, b"kind: ConfigMap\nmetadata: {name: c, created: 2024-02-30}\n"],
    "scenario": [(Path(__file__).parents[1] / "harness/scenarios/seed-failover.yaml")
                 .read_bytes(), *DEEP_YAML, b"name: x\nimages: [[1]]\n"],
}


def seed_corpus(name: str, directory: Path) -> None:
    """Fill `directory` with the golden files (and a few hand-picked inputs) for `name`."""
    directory.mkdir(parents=True, exist_ok=True)
    _, suffixes = TARGETS[name]
    seeds = [p.read_bytes() for p in sorted(SEEDS.iterdir()) if p.suffix in suffixes]
    for index, seed in enumerate(seeds + EXTRA_SEEDS.get(name, [])):
        (directory / f"seed-{index}").write_bytes(seed)


def main() -> None:
    if sys.argv[1:] == ["--list"]:
        print(*TARGETS)
        return
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: python -m tests.fuzz {{{','.join(TARGETS)}}} [corpus] [flags]")
    name = sys.argv.pop(1)
    corpus = [arg for arg in sys.argv[1:] if not arg.startswith("-")]
    for directory in corpus:
        if not os.path.exists(directory) or (os.path.isdir(directory)
                                             and not os.listdir(directory)):
            seed_corpus(name, Path(directory))
    atheris.Setup(sys.argv, TARGETS[name][0])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
