"""`mirrorlab check`: from what a walk saw to a verdict, its cause in words, and the fix.

Pure: nothing here touches the network. A verdict is `ok` (the image pulls in the chosen
mode), `fails`, or `not checked` (the content pulls but policy.json requires a signature,
which mirrorlab does not verify: never `ok`). A failure has one cause kind (to group
failures by), the cause as a sentence naming each source and what it answered, and fixes
in the order worth trying: each is enough on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from .authfile import find_credentials
from .certsd import certs_dir_for
from .check_walk import Fetch, ImageWalk, PlatformCheck
from .explain import NodeConfig
from .fallback import FallbackMode, blob_fallback_trigger
from .outcomes import Attempt, Outcome
from .plan import PullSource
from .reference import ImageReference
from .steps import Step


class Status(StrEnum):
    OK = "ok"
    FAILS = "fails"
    NOT_CHECKED = "not checked"


class Cause(StrEnum):
    """Why an image fails (or is not checked): what failures are grouped by."""

    POLICY = "rejected by policy.json"
    SIGNATURE = "signatures missing or not accepted"
    SIGNATURE_UNCHECKED = "signature requirement not checked"
    INVALID = "the pull plan cannot be built"
    MISSING_ON_MIRROR = "image missing on the mirror"
    MISSING_AT_SOURCE = "image missing at its source"
    MISSING_PLATFORM = "platform missing from the mirror's copy of an index"
    ABSENT_PLATFORM = "platform not in the image's index"
    MISSING_BLOB = "layer or config missing where the manifest came from"
    TAG_NEEDS_ITMS = "tag pull, only digest mirrors, source unreachable"
    DIGEST_NEEDS_IDMS = "digest pull, only tag mirrors, source unreachable"
    NO_MIRROR = "no mirror, source blocked or unreachable"
    CREDENTIALS = "credentials missing or refused"
    TLS = "TLS: the registry's CA is not trusted"
    CERTS = "certs.d files unusable"
    UNREACHABLE = "registry unreachable"
    REGISTRY_ERROR = "registry error"
    CORRUPT = "content does not match its digest"
    BAD_MANIFEST = "unreadable manifest"


@dataclass(frozen=True)
class Verdict:
    reference: ImageReference
    status: Status
    served_by: str | None = None
    """The physical repository that serves the top-level manifest."""
    cause_kind: Cause | None = None
    cause: str | None = None
    fixes: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    """What holds beyond the verdict: a node version that fails where this mode passes,
    a pull served by the source although mirrors exist, ..."""
    summary: str = ""
    """What was checked: platforms and blobs."""


@dataclass(frozen=True)
class Judge:
    """What wording needs besides the walk: the node's files, the mode, and why a source
    was assumed down."""

    config: NodeConfig
    mode: FallbackMode
    down_because: Callable[[PullSource], str | None]

    # ------------------------------------------------------------ one attempt

    def answer(self, attempt: Attempt, step: Step, kind: str = "manifest") -> tuple[str, str]:
        """Who answered (a repository or a host) and what, in a few words. For a blob, a
        404's error code is named (blob fallback depends on it)."""
        source = step.source
        name, host = source.reference.name, source.host
        outcome = attempt.outcome
        if outcome == Outcome.SERVED:
            return name, "served"
        if outcome == Outcome.BLOCKED:
            return source.blocked_by or host, "blocked"
        why = self.down_because(source)
        if outcome == Outcome.CONNECT and why is not None:
            return host, f"not contacted: {why}"
        if outcome == Outcome.NOT_FOUND:
            if kind == "manifest":
                return name, "404"
            return name, f"404 {attempt.code}" if attempt.code else "bare 404"
        if outcome in (Outcome.DENIED, Outcome.AUTH):
            credentials = find_credentials(list(self.config.auth_files), name)
            what = "token service refused" if outcome == Outcome.AUTH else "denied"
            if credentials is None:
                return host, f"{what}: no credentials in auth.json"
            return host, f"{what} with the credentials of {credentials.key!r}"
        if outcome == Outcome.TLS:
            trusted = "certificate" in attempt.detail.lower()
            return host, "TLS: certificate not trusted" if trusted else "TLS failed"
        words = {
            Outcome.CONNECT: "unreachable", Outcome.TIMEOUT: "timed out",
            Outcome.SERVER_ERROR: "server error", Outcome.TOO_MANY_REQUESTS: "429 rate limited",
            Outcome.CLIENT_ERROR: "refused the request", Outcome.CERTS: "certs.d unusable",
            Outcome.DIGEST: "wrong digest", Outcome.INTERRUPTED: "transfer cut",
            Outcome.TRUNCATED: "transfer cut short", Outcome.TOO_LARGE: "manifest over 4 MiB",
            Outcome.BAD_RESPONSE: "unusable answer", Outcome.COOLDOWN: "cooling down",
        }
        subject = host if outcome in (Outcome.CONNECT, Outcome.TIMEOUT, Outcome.CERTS) else name
        return subject, words.get(outcome, str(outcome))

    def brief(self, attempt: Attempt, step: Step | None, kind: str = "manifest") -> str:
        """An attempt in a few words: `mirror.example.com/ns/app (404)`, `quay.io blocked`."""
        if step is None:
            return f"{attempt.source} ({attempt.outcome})"
        subject, words = self.answer(attempt, step, kind)
        return f"{subject} {words}" if attempt.outcome == Outcome.BLOCKED else \
            f"{subject} ({words})"

    def listing(self, fetch: Fetch) -> str:
        return ", ".join(self.brief(a, fetch.steps.get(a.source), fetch.kind)
                         for a in fetch.attempts)

    def _certs_dir(self, host: str) -> str:
        """The host's certs.d directory as the node has it (a `--root` or `--crs` tree is
        the node's `/`)."""
        directory = certs_dir_for(host, self.config.certs)
        root = self.config.certs.root.rstrip("/")
        if root and directory.startswith(f"{root}/"):
            return directory[len(root):]
        return directory

    def fix_for(self, attempt: Attempt, step: Step, copy: str) -> tuple[Cause, str | None]:
        """The cause kind of one source's failure, and what makes that source serve.
        `copy` is what to mirror there (a reference with its tag or digest)."""
        source = step.source
        name, host = source.reference.name, source.host
        outcome = attempt.outcome
        if outcome == Outcome.NOT_FOUND:
            kind = Cause.MISSING_ON_MIRROR if source.mirror else Cause.MISSING_AT_SOURCE
            if not source.mirror:
                return kind, f"check the reference: {copy} does not exist at {name}"
            return kind, f"mirror {copy} to {name}"
        if outcome == Outcome.TLS:
            return Cause.TLS, (f"add the CA of {host} to the image config's "
                               f"additionalTrustedCA (on a node: {self._certs_dir(host)}/"
                               "ca.crt)")
        if outcome == Outcome.CERTS:
            return Cause.CERTS, f"repair {self._certs_dir(host)}: {attempt.detail}"
        if outcome in (Outcome.DENIED, Outcome.AUTH):
            credentials = find_credentials(list(self.config.auth_files), name)
            if credentials is None:
                return Cause.CREDENTIALS, (f"add credentials for {host} to the pull secret "
                                           "(the node's auth.json)")
            return Cause.CREDENTIALS, (f"renew the credentials of {credentials.key!r} in "
                                       f"{credentials.file}: {host} refuses them")
        if outcome in (Outcome.CONNECT, Outcome.TIMEOUT):
            if self.down_because(source) is not None:
                return Cause.UNREACHABLE, None
            return Cause.UNREACHABLE, f"make {host} reachable from the nodes"
        if outcome == Outcome.DIGEST:
            return Cause.CORRUPT, f"mirror {copy} to {name} again: its copy there differs"
        if outcome in (Outcome.SERVER_ERROR, Outcome.TOO_MANY_REQUESTS, Outcome.CLIENT_ERROR,
                       Outcome.BAD_RESPONSE, Outcome.INTERRUPTED, Outcome.TRUNCATED,
                       Outcome.TOO_LARGE):
            return Cause.REGISTRY_ERROR, f"look at {host}: {attempt.detail}"
        return Cause.UNREACHABLE, None

    # ------------------------------------------------------------ the image

    def judge(self, walk: ImageWalk) -> Verdict:
        ref = walk.reference
        decision = walk.policy
        if walk.rejected and decision is not None:
            scope = "the global default" if decision.scope == "default" else \
                f"scope {decision.scope!r}"
            return Verdict(ref, Status.FAILS, None, Cause.POLICY,
                           f"rejected by policy.json ({scope}): {decision.reason}; nothing "
                           "contacted",
                           (f"allow {ref.name} in policy.json (OpenShift: the image config's "
                            "allowedRegistries or blockedRegistries)",))
        if walk.plan_error is not None or walk.top is None:
            return Verdict(ref, Status.FAILS, None, Cause.INVALID,
                           f"{walk.plan_error or 'no plan'}; nothing contacted",
                           ("correct the [[registry]] entry that rewrites this reference",))
        top = walk.top
        if top.served_by is None:
            return self._top_failure(walk, top)
        served = top.served_by.source.reference.name
        summary = self._summary(walk)
        if walk.error is not None:
            return Verdict(ref, Status.FAILS, served, Cause.BAD_MANIFEST,
                           f"the manifest served by {served} cannot be read: {walk.error}",
                           summary=summary)
        if walk.index and walk.wanted is not None and not walk.platforms:
            has = ", ".join(str(p) for p in walk.available) or "none"
            return Verdict(ref, Status.FAILS, served, Cause.ABSENT_PLATFORM,
                           f"the index has no {walk.wanted} manifest (it has {has})",
                           (f"build {ref.name} for {walk.wanted}, or check the platform the "
                            "nodes run with --platform",), summary=summary)
        notes = self._notes(walk, top)
        failed = self._referenced_failure(walk)
        if failed is not None:
            kind, cause, fixes, more = failed
            return Verdict(ref, Status.FAILS, served, kind, cause, fixes,
                           tuple([*more, *notes]), summary)
        fixes = tuple(dict.fromkeys(fix for _, _, fix in self._rescues(walk) if fix))
        if walk.signatures:
            failed_signature = self._signature_failure(walk, served, summary, notes)
            if failed_signature is not None:
                return failed_signature
            notes = [*notes, f"signatures verified: {walk.signature_count} read from "
                     f"{served}"]
        return Verdict(ref, Status.OK, served, None, None, fixes, tuple(notes), summary)

    def _signature_failure(self, walk: ImageWalk, served: str, summary: str,
                           notes: list[str]) -> Verdict | None:
        """A node fails the pull when the serving source's signatures do not satisfy the
        policy, or cannot be read: no other source is asked for them."""
        ref = walk.reference
        storage = walk.signature_storage
        verdict = walk.signature_verdict
        if walk.signature_error is None and verdict is None:  # never read: say so
            requirement = " and ".join(dict.fromkeys(walk.signatures))
            scope = walk.policy.scope if walk.policy else "default"
            return Verdict(
                ref, Status.NOT_CHECKED, served, Cause.SIGNATURE_UNCHECKED,
                f"signature requirement not checked: policy.json requires {requirement} "
                f"({'the global default' if scope == 'default' else f'scope {scope!r}'}); "
                "the content pulls", (f"copy the signatures with the image to {served}",),
                tuple(notes), summary)
        if walk.signature_error is None and verdict is not None and verdict.allowed:
            return None
        if walk.signature_error is not None:
            cause = f"reading the signatures from {served} failed: {walk.signature_error}"
        else:
            assert verdict is not None
            cause = (f"{served} serves the image but its signatures do not satisfy "
                     f"policy.json: {verdict.reason}")
        fixes: list[str] = []
        if walk.signature_count == 0 and walk.signature_error is None:
            digest = walk.digest or ""
            fixes.append(f"copy the signatures with the image to {served} (the sigstore "
                         f"attachment is the tag sha256-{digest.split(':')[-1][:12]}….sig)")
            if storage is not None and not storage.use_sigstore_attachments and \
                    "sigstoreSigned" in walk.signatures:
                host = storage.reference.domain
                fixes.append(f"enable use-sigstore-attachments for {host} in registries.d "
                             "(OpenShift writes it for the mirrors of a ClusterImagePolicy "
                             "scope)")
        return Verdict(ref, Status.FAILS, served, Cause.SIGNATURE, cause, tuple(fixes),
                       tuple(notes), summary)

    def _top_failure(self, walk: ImageWalk, top: Fetch) -> Verdict:
        ref = walk.reference
        plan = walk.plan
        assert plan is not None
        listing = self.listing(top)
        pairs = [(a, top.steps[a.source]) for a in top.attempts if a.source in top.steps]
        mirrors = [(a, s) for a, s in pairs if s.source.mirror]
        contacted = [a for a, s in pairs if a.outcome != Outcome.BLOCKED
                     and self.down_because(s.source) is None]
        if contacted and all(a.outcome == Outcome.NOT_FOUND for a in contacted):
            cause = f"manifest unknown on every source: {listing}"
        elif not contacted:
            cause = f"no source may be contacted: {listing}"
        else:
            cause = f"no source serves the manifest: {listing}"
        if not mirrors:
            return self._no_mirror(walk, cause, pairs)
        absent = [(a, s) for a, s in pairs if not s.source.mirror
                  and a.outcome == Outcome.NOT_FOUND]
        if absent:  # nothing to mirror: the source itself says it does not exist
            kind, fix = self.fix_for(*absent[0], str(ref))
            return Verdict(ref, Status.FAILS, None, kind, cause, (fix,) if fix else ())
        kinds: list[Cause] = []
        fixes: list[str] = []
        for attempt, step in mirrors:
            kind, fix = self.fix_for(attempt, step, str(ref))
            kinds.append(kind)
            if fix is not None:
                fixes.append(fix)
        primary = [(a, s) for a, s in pairs if not s.source.mirror]
        for attempt, step in primary:
            if attempt.outcome not in (Outcome.BLOCKED, Outcome.NOT_FOUND) and \
                    self.down_because(step.source) is None:
                fixes.append(self.fix_for(attempt, step, str(ref))[1] or "")
        kind = next((k for k in kinds if k != Cause.UNREACHABLE), kinds[0])
        return Verdict(ref, Status.FAILS, None, kind, cause,
                       tuple(dict.fromkeys(f for f in fixes if f)))

    def _no_mirror(self, walk: ImageWalk, cause: str,
                   pairs: list[tuple[Attempt, Step]]) -> Verdict:
        """No mirror in the plan: the registry's own location was all there was."""
        ref = walk.reference
        plan = walk.plan
        assert plan is not None
        registry = plan.registry
        attempt, step = pairs[-1]
        unreachable = attempt.outcome == Outcome.BLOCKED or (
            attempt.outcome == Outcome.CONNECT and self.down_because(step.source) is not None)
        if not unreachable:
            kind, fix = self.fix_for(attempt, step, str(ref))
            return Verdict(ref, Status.FAILS, None, kind, cause, (fix,) if fix else ())
        scope = registry.prefix if registry is not None else ref.name
        excluded = registry.mirrors if registry is not None else ()
        if excluded and not ref.is_digested:
            return Verdict(
                ref, Status.FAILS, None, Cause.TAG_NEEDS_ITMS,
                f"a tag pull, and every mirror of {scope} is for digest pulls only "
                f"(ImageDigestMirrorSet): {cause}",
                (f"add an ImageTagMirrorSet for tag pulls of {scope}",
                 f"pull by digest: {ref.name}@sha256:..."))
        if excluded:
            return Verdict(
                ref, Status.FAILS, None, Cause.DIGEST_NEEDS_IDMS,
                f"a digest pull, and every mirror of {scope} is for tag pulls only "
                f"(ImageTagMirrorSet): {cause}",
                (f"add an ImageDigestMirrorSet for {scope}",))
        how = "NeverContactSource" if attempt.outcome == Outcome.BLOCKED else "unreachable"
        return Verdict(
            ref, Status.FAILS, None, Cause.NO_MIRROR,
            f"no mirror for {ref.name} and its source is {how}: {cause}",
            (f"add an ImageDigestMirrorSet for {scope} (and an ImageTagMirrorSet for tag "
             "pulls) with a mirror that holds it",))

    def _referenced_failure(self, walk: ImageWalk
                            ) -> tuple[Cause, str, tuple[str, ...], tuple[str, ...]] | None:
        """The first per-platform manifest or blob that failed, worded; the others counted."""
        failed: list[tuple[PlatformCheck, Fetch]] = []
        for check in walk.platforms:
            if check.error is not None:
                name = check.served_by.source.reference.name if check.served_by else "?"
                return (Cause.BAD_MANIFEST, f"the {check.platform} manifest served by {name} "
                        f"cannot be read: {check.error}", (), ())
            fetches = [check.manifest] if check.manifest is not None else []
            failed += [(check, f) for f in [*fetches, *check.blobs] if not f.ok]
        if not failed:
            return None
        check, fetch = failed[0]
        home = fetch.home
        assert home is not None
        where = home.source.reference.name
        others = len({f.digest for _, f in failed}) - 1
        more = f"; {others} more missing" if others else ""
        ref = walk.reference
        image = f"{ref.name}@{walk.digest}" if walk.digest else str(ref)
        at_home = [a for a in fetch.failures if a.source == str(home.source.reference)]
        first = at_home[0] if at_home else (fetch.failures[0] if fetch.failures else None)
        answer = self.answer(first, home, fetch.kind)[1] if first is not None else "failed"
        later = [self.brief(a, fetch.steps.get(a.source), fetch.kind) for a in fetch.failures
                 if a.source != str(home.source.reference) and a.outcome != Outcome.BLOCKED]
        then = f"; then {', '.join(later)}" if later else ""
        missing = first is not None and first.outcome == Outcome.NOT_FOUND
        verb = "missing on" if missing else "cannot be fetched from"
        notes: list[str] = []
        if fetch.what == "platform manifest":
            cause = (f"platform {fetch.platform} ({fetch.digest}) of the index {verb} "
                     f"{where} ({answer}){then}{more}")
            kind = Cause.MISSING_PLATFORM
            fixes = [f"mirror every platform of {image} to {where}"]
            if walk.wanted is None and fetch.platform is not None:
                fixes.append("if the nodes run one platform only, check just that one "
                             "with --platform")
        else:
            platform = f" of {fetch.platform}" if fetch.platform else ""
            cause = (f"{fetch.what} {fetch.digest}{platform} {verb} {where} "
                     f"({answer}){then}{more}")
            kind = Cause.MISSING_BLOB
            fixes = [f"mirror {image} to {where} again: its copy lacks this {fetch.what}"]
            notes += self._blob_mode_notes(walk, fetch, first)
        if first is not None and not missing:
            kind, fix = self.fix_for(first, fetch.steps.get(first.source, home), image)
            fixes = [fix] if fix else []
        return kind, cause, tuple(fixes), tuple(notes)

    def _blob_mode_notes(self, walk: ImageWalk, fetch: Fetch,
                         first: Attempt | None) -> list[str]:
        """What blob fallback (OCP 4.22) does with this failure, when it matters."""
        plan = walk.plan
        home = fetch.home
        if plan is None or home is None or first is None or self.mode is \
                FallbackMode.RESILIENT:
            return []
        names = [s.reference.name for s in plan.sources]
        name = home.source.reference.name
        after = [s for s in plan.sources[names.index(name) + 1:]
                 if not s.blocked and self.down_because(s) is None] if name in names else []
        moves_on = blob_fallback_trigger(first.outcome, first.code)
        if self.mode is FallbackMode.STICKY and after and moves_on:
            return [f"an OCP 4.22 node (blob fallback) would try {after[0].reference.name} "
                    "next: see --fallback blob"]
        if not moves_on:
            return ["blob fallback (OCP 4.22) would not help: it moves on for BLOB_UNKNOWN, "
                    "5xx and timeouts only"]
        return []

    def _rescues(self, walk: ImageWalk) -> list[tuple[Fetch, Attempt | None, str | None]]:
        """Fetches served at another source than their manifest's, which a node version
        fails: each with its source's failure and the fix that makes that source serve."""
        found = []
        image = f"{walk.reference.name}@{walk.digest}"
        for fetch in walk.fetches():
            home = fetch.home
            if not fetch.failing_node_modes() or home is None:
                continue
            failure = next((a for a in fetch.failures
                            if a.source == str(home.source.reference)), None)
            fix = None
            if failure is not None and failure.outcome == Outcome.NOT_FOUND:
                fix = (f"mirror {image} to {home.source.reference.name} again: its copy "
                       f"lacks this {fetch.what}")
            elif failure is not None:
                fix = self.fix_for(failure, home, image)[1]
            found.append((fetch, failure, fix))
        return found

    def _notes(self, walk: ImageWalk, top: Fetch) -> list[str]:
        notes = []
        for fetch, failure, _ in self._rescues(walk):
            assert fetch.home is not None and fetch.served_by is not None
            modes = fetch.failing_node_modes()
            who = ("every node (OCP up to 4.22)" if len(modes) == 2 else
                   "a node before OCP 4.22" if modes[0] is FallbackMode.STICKY else
                   "an OCP 4.22 node (blob fallback)")
            why = self.answer(failure, fetch.home, fetch.kind)[1] if failure else "failed"
            verb = "missing on" if failure and failure.outcome == Outcome.NOT_FOUND else \
                "failing on"
            notes.append(f"{who} fails this: {fetch.what} {fetch.digest} {verb} "
                         f"{fetch.home.source.reference.name} ({why}); served by "
                         f"{fetch.served_by.source.reference.name}")
        served = top.served_by
        if served is not None and not served.source.mirror:
            failed = [self.brief(a, top.steps.get(a.source)) for a in top.failures
                      if (step := top.steps.get(a.source)) is not None and step.source.mirror]
            if failed:
                notes.append(f"served by the source, not a mirror: {', '.join(failed)}; "
                             "air-gapped this fails (check with --disconnected)")
        return notes

    def _summary(self, walk: ImageWalk) -> str:
        blobs = len({f.digest for check in walk.platforms for f in check.blobs})
        counted = f"{blobs} blob{'s' if blobs != 1 else ''}"
        if walk.index:
            platforms = ", ".join(str(c.platform) for c in walk.platforms)
            return f"{platforms}; {counted}"
        return counted


@dataclass
class Tally:
    """Counts per status and, for the others than ok, the images per cause."""

    statuses: dict[Status, int] = field(default_factory=lambda: dict.fromkeys(Status, 0))
    causes: dict[Cause, list[str]] = field(default_factory=dict)

    def add(self, verdict: Verdict) -> None:
        self.statuses[verdict.status] += 1
        if verdict.status is not Status.OK and verdict.cause_kind is not None:
            self.causes.setdefault(verdict.cause_kind, []).append(str(verdict.reference))

    @property
    def total(self) -> int:
        return sum(self.statuses.values())

    @property
    def all_ok(self) -> bool:
        return self.statuses[Status.OK] == self.total
