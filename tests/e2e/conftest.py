"""Fixtures of the end-to-end suite: one lab per module, a fresh proxy and podman per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mirrorlab.harness.clients import PodmanClient as Podman
from mirrorlab.harness.faults import Fault

from .lab import (
    AuthLab,
    Lab,
    ProxyProcess,
    Upstreams,
    start_auth_lab,
    start_lab,
)


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = start_lab(tmp_path_factory.mktemp("lab"))
    try:
        yield lab
    finally:
        lab.stop()


@pytest.fixture
def clean_lab(lab: Lab) -> Iterator[Lab]:
    """The lab with no fault injected, before and after the test."""
    lab.faults.set(Fault())
    lab.faults.requests.clear()
    yield lab
    lab.faults.set(Fault())


@pytest.fixture
def podman(tmp_path: Path) -> Iterator[Podman]:
    client = Podman(tmp_path / "podman")
    yield client
    client.close()


@pytest.fixture(scope="session")
def auth_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthLab]:
    lab = start_auth_lab(tmp_path_factory.mktemp("authlab"))
    try:
        yield lab
    finally:
        lab.stop()


@pytest.fixture
def proxy_factory(tmp_path: Path) -> Iterator[object]:
    """`proxy_factory(lab, conf, policy=..., extra=(...))`: a `mirrorlab serve` process."""
    started: list[ProxyProcess] = []

    def start(lab: Upstreams, conf: str, **kwargs: object) -> ProxyProcess:
        proxy = ProxyProcess(tmp_path / f"proxy{len(started)}", conf, lab, **kwargs)  # type: ignore[arg-type]
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()
