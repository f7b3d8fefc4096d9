"""`mirrorlab explain`: what a pull of each reference would do, and why.

`NodeConfig` is everything a pull consults, loaded once; `explain` is pure over it except
for looking at certs.d directories, which is what a real client does per source too.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass, field
from typing import Any

from .authfile import AuthFile, Credentials, find_credentials, load_auth_files
from .certsd import CertFiles, CertsDirSettings, certs_dir_for, read_certs_dir
from .errors import ConfigError
from .fallback import FallbackMode, on_blob_failure
from .paths import NodeFiles
from .plan import PullSource, resolve_sources
from .policy import Policy, PolicyDecision, evaluate_policy, load_policy
from .reference import ImageReference, InvalidReference, parse_docker_reference
from .registries_conf import RegistriesConf, Registry, load_registries_conf
from .registries_d import (
    DEFAULT_LOOKASIDE,
    RegistriesD,
    SignatureStorage,
    load_registries_d,
    signature_storage,
)
from .spelling import Bypass, bypasses, relevant


@dataclass(frozen=True)
class NodeConfig:
    """The loaded configuration of a node (or of this user): what every pull consults."""

    registries: RegistriesConf
    policy: Policy
    certs: CertsDirSettings
    auth_files: tuple[AuthFile, ...]
    registries_d: RegistriesD = field(default_factory=RegistriesD)
    default_lookaside: str = DEFAULT_LOOKASIDE

    @classmethod
    def load(cls, files: NodeFiles) -> NodeConfig:
        return cls(
            registries=load_registries_conf(files.registries_conf_paths()),
            policy=load_policy(files.policy_path()),
            certs=files.certs_settings(),
            auth_files=tuple(load_auth_files(files.auth_file_paths())),
            registries_d=load_registries_d(files.registries_d_dir()),
            default_lookaside=files.default_lookaside(),
        )

    def signature_storage(self, source: PullSource) -> SignatureStorage:
        """Where a pull from `source` reads signatures (registries.d for its own name)."""
        return signature_storage(self.registries_d, source.reference,
                                 default_lookaside=self.default_lookaside)


@dataclass(frozen=True)
class SourceReport:
    source: PullSource
    certs: CertFiles | None
    certs_error: str | None
    credentials: Credentials | None
    signatures: tuple[str, ...] = ()
    """Where signatures are read from this source, when the policy verifies them."""

    def to_json(self) -> dict[str, Any]:
        src = self.source
        return {
            "signatures": list(self.signatures),
            "reference": str(src.reference),
            "mirror": src.mirror,
            "insecure": src.insecure,
            "blocked": src.blocked,
            "blocked_by": src.blocked_by,
            "pull_from_mirror": src.pull_from_mirror or None,
            "host": src.host,
            "connect_host": src.connect_host,
            "certs_dir": self.certs.directory if self.certs else None,
            "ca_files": list(self.certs.ca_files) if self.certs else [],
            "client_certs": [list(p) for p in self.certs.client_pairs] if self.certs else [],
            "certs_error": self.certs_error,
            "credentials": None if self.credentials is None else {
                "file": self.credentials.file,
                "key": self.credentials.key,
                "helper": self.credentials.helper,
            },
        }


@dataclass(frozen=True)
class Explanation:
    """The answer for one reference. `error` is set when the pull cannot even start."""

    text: str
    reference: ImageReference | None = None
    policy: PolicyDecision | None = None
    registry: Registry | None = None
    sources: tuple[SourceReport, ...] = ()
    error: str | None = None
    warnings: tuple[Bypass, ...] = ()
    """Blocked or restricted scopes governing this reference that a spelling escapes."""
    fallback: FallbackMode = FallbackMode.STICKY
    """The mode asked for (`--fallback`): the one `serve` and `check` would apply."""

    def blob_failures(self) -> list[dict[str, str]]:
        """Per source: what each mode does when a blob fails there after the source served
        the manifest (nothing for a blocked source: it serves nothing)."""
        names = [str(r.source.reference) for r in self.sources if not r.source.blocked]
        stories: list[dict[str, str]] = []
        for report in self.sources:
            if report.source.blocked:
                stories.append({})
                continue
            index = names.index(str(report.source.reference))
            stories.append({str(mode): on_blob_failure(mode, names, index)
                            for mode in FallbackMode})
        return stories

    def to_json(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "input": self.text,
            "reference": str(self.reference) if self.reference else None,
            "policy": None if self.policy is None else {
                "allowed": self.policy.allowed,
                "needs_signatures": self.policy.needs_signatures,
                "scope": self.policy.scope,
                "reason": self.policy.reason,
            },
            "registry": None if self.registry is None else {
                "prefix": self.registry.prefix,
                "location": self.registry.location,
                "origin": self.registry.origin,
            },
            "fallback": str(self.fallback),
            "sources": [{**source.to_json(), "on_blob_failure": story} for source, story
                        in zip(self.sources, self.blob_failures(), strict=True)],
            "warnings": [warning.to_json() for warning in self.warnings],
        }
        if self.error is not None:
            result["error"] = self.error
        return result


def _source_report(config: NodeConfig, source: PullSource,
                   decision: PolicyDecision) -> SourceReport:
    directory = certs_dir_for(source.host, config.certs)
    try:
        certs, certs_error = read_certs_dir(directory), None
    except ConfigError as error:
        certs, certs_error = CertFiles(directory), str(error)
    credentials = find_credentials(list(config.auth_files), source.reference.name)
    signatures: tuple[str, ...] = ()
    if decision.needs_signatures and not source.blocked:
        try:
            storage = config.signature_storage(source)
        except ConfigError as error:
            signatures = (f"signatures cannot be read: {error}",)
        else:
            signatures = tuple(storage.describe())
            if not storage.use_sigstore_attachments and any(
                    r.type == "sigstoreSigned" for r in decision.requirements):
                signatures += ("sigstore attachments are off for this source: a pull it "
                               "serves fails unless the lookaside holds the signature",)
    return SourceReport(source, certs, certs_error, credentials, signatures)


def explain(config: NodeConfig, text: str,
            fallback: FallbackMode = FallbackMode.STICKY) -> Explanation:
    """Normalize `text`, decide policy on it, and list every source in order."""
    try:
        ref = parse_docker_reference(text)
    except InvalidReference as error:
        return Explanation(text, error=f'invalid reference "{text}": {error}')
    decision = evaluate_policy(config.policy, ref)
    warnings = relevant(bypasses(config.registries, config.policy), str(ref))
    try:
        plan = resolve_sources(config.registries, ref)
    except ConfigError as error:
        return Explanation(text, ref, decision, error=str(error), warnings=warnings)
    reports = tuple(_source_report(config, source, decision) for source in plan.sources)
    return Explanation(text, ref, decision, plan.registry, reports, warnings=warnings,
                       fallback=fallback)


def _source_line(index: int, report: SourceReport) -> list[str]:
    src = report.source
    tags = ["mirror" if src.mirror else "primary"]
    if src.pull_from_mirror:
        tags.append(src.pull_from_mirror)
    if src.insecure:
        tags.append("insecure: HTTPS unverified, then HTTP")
    if src.blocked:
        tags.append(f"BLOCKED by [[registry]] {src.blocked_by!r}: fails without contact")
    if src.connect_host != src.host:
        tags.append(f"dials {src.connect_host}")
    lines = _wrap(f"  {index}. {src.reference}  ({'; '.join(tags)})", "       ")
    certs = report.certs
    if report.certs_error:
        lines.append(f"       certs.d: {certs.directory if certs else '?'}: {report.certs_error}")
    elif certs and (certs.ca_files or certs.client_pairs):
        parts = [f"{len(certs.ca_files)} CA file(s)"]
        if certs.client_pairs:
            parts.append(f"{len(certs.client_pairs)} client certificate(s)")
        lines.append(f"       certs.d: {certs.directory} ({', '.join(parts)})")
    else:
        lines.append(f"       certs.d: {certs.directory if certs else '-'} (none: system roots)")
    creds = report.credentials
    if creds is None:
        lines.append("       credentials: none (anonymous)")
    elif creds.helper:
        lines.append(f"       credentials: helper docker-credential-{creds.helper} for {creds.key}")
    else:
        lines.append(f"       credentials: {creds.file} key {creds.key!r}")
    for text in report.signatures:
        lines.extend(_wrap(f"       signatures: {text}", "         "))
    return lines


def _wrap(line: str, indent: str, width: int = 80) -> list[str]:
    """A long line as lines of a terminal's 80 columns (references are never broken)."""
    return textwrap.wrap(line, width, subsequent_indent=indent, break_long_words=False,
                         break_on_hyphens=False) or [line]


def format_text(explanation: Explanation) -> str:
    """A human-readable report; stable enough to diff between two configurations."""
    ref = explanation.reference
    lines = [str(ref) if ref else explanation.text]
    if ref is not None and str(ref) != explanation.text:
        lines[0] += f"  (from {explanation.text!r})"
    decision = explanation.policy
    if decision is not None:
        verdict = "allowed" if decision.allowed else "REJECTED"
        scope = (
            "global default" if decision.scope == "default" else f"docker scope {decision.scope!r}"
        )
        if decision.needs_signatures:
            lines.extend(_wrap(
                f"  policy: signatures required by {scope}: checked against the signatures "
                "of the source that serves the manifest (without them: "
                f"{decision.reason})", "    "))
        else:
            lines.append(f"  policy: {verdict} by {scope}: {decision.reason}")
    for warning in explanation.warnings:
        lines.extend(_wrap(f"  warning: {warning.message}", "    "))
    if explanation.error is not None:
        lines.append(f"  error: {explanation.error}")
        lines.append("  no source is contacted: the pull fails before any network request")
        return "\n".join(lines)
    registry = explanation.registry
    if registry is None:
        lines.append("  registries.conf: no [[registry]] matches; the reference is used as is")
    else:
        lines.extend(_wrap(
            f"  registries.conf: [[registry]] prefix {registry.prefix!r} -> location "
            f"{registry.location!r} ({registry.origin})", "    "))
    lines.append("  sources, in the order they are tried:")
    stories = explanation.blob_failures()
    for index, (report, story) in enumerate(zip(explanation.sources, stories, strict=True),
                                            start=1):
        lines.extend(_source_line(index, report))
        if story:
            chosen = str(explanation.fallback)
            lines.append("       if a blob fails here:")
            for mode, text in story.items():
                label = f"{mode} (selected)" if mode == chosen else mode
                lines.extend(_wrap(f"         {label}: {text}", "           "))
    return "\n".join(lines)


def format_json(explanation: Explanation) -> str:
    return json.dumps(explanation.to_json(), sort_keys=False)
