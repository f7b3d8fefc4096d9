"""Shared helpers: write registries.conf fixtures to disk and load them as podman would."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from mirrorlab.proxy.registries_conf import (
    RegistriesConf,
    RegistriesConfPaths,
    load_registries_conf,
)

DIGEST = "sha256:" + "a" * 64
OTHER_DIGEST = "sha256:" + "b" * 64

# Set by test_render_golden: whether the golden files were compared with the chapter.
GOLDEN_CHAPTER_CHECK = pytest.StashKey[str]()

LoadConf = Callable[..., RegistriesConf]


@pytest.fixture
def load_conf(tmp_path: Path) -> LoadConf:
    """`load_conf(main_text, {"drop.conf": text})`: files under tmp_path, then loaded."""

    def load(main: str, drop_ins: Mapping[str, str] | None = None) -> RegistriesConf:
        main_path = tmp_path / "registries.conf"
        main_path.write_text(textwrap.dedent(main))
        drop_dir = tmp_path / "registries.conf.d"
        drop_dir.mkdir(exist_ok=True)
        for name, text in (drop_ins or {}).items():
            (drop_dir / name).write_text(textwrap.dedent(text))
        return load_registries_conf(RegistriesConfPaths(str(main_path), True, (str(drop_dir),)))

    return load


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter,
                            config: pytest.Config) -> None:
    mode = config.stash.get(GOLDEN_CHAPTER_CHECK, None)
    if mode is not None:
        terminalreporter.write_line(f"mirrorlab: {mode}")
