"""Prometheus metrics of one proxy: requests, attempts per source and outcome, bytes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest


class Metrics:
    """A private registry, so several proxies (tests, benchmarks) can live in one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "mirrorlab_requests", "Client requests by kind and response status",
            ["kind", "status"], registry=self.registry)
        self.attempts = Counter(
            "mirrorlab_attempts", "Source attempts by physical host and outcome",
            ["kind", "host", "outcome"], registry=self.registry)
        self.fallbacks = Counter(
            "mirrorlab_fallbacks", "Requests served by a source other than the first tried",
            ["kind"], registry=self.registry)
        self.rescues = Counter(
            "mirrorlab_rescues", "Responses served in resilient mode that the named node "
            "modes (sticky, blob) would have failed", ["kind", "modes"], registry=self.registry)
        self.client_aborts = Counter(
            "mirrorlab_client_aborts", "Client connections gone before their response was "
            "complete (not counted against any source)", ["kind"], registry=self.registry)
        self.bytes = Counter(
            "mirrorlab_bytes", "Blob bytes received from upstream, by physical host",
            ["host"], registry=self.registry)
        self.latency = Histogram(
            "mirrorlab_upstream_seconds", "Time to the first response from a source",
            ["kind", "host"], registry=self.registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))

    def render(self) -> bytes:
        return generate_latest(self.registry)
