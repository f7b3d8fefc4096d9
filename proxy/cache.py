"""The verified cache's store (`mirrorlab serve --cache DIR`): content-addressed files.

Layout of DIR:

    mirrorlab-cache               marker; a non-empty directory without it is refused
    blobs/<algorithm>/<hex>       a blob's bytes
    manifests/<algorithm>/<hex>   a manifest: one JSON line {"mediaType": ...}, then its bytes
    tags/<hash>.json              the last verified answer for a tag (for --serve-stale)
    tmp/<pid>-<n>.part            fills in progress

An entry is written to a temporary file, and enters under its digest only after the bytes
matched the digest: fsync, rename, fsync of the directory. A crash leaves at most a
temporary file, which no lookup ever sees and which the next start (or `prune`, `verify`)
removes once its process is gone. The index (size and recency of every entry) lives in
memory, rebuilt from the files at start; recency is kept in each file's mtime, so a restart
keeps the least-recently-used order. Eviction never removes an entry that is being read
(`pin`); a fill reserves its size first, evicting what it needs, or is not cached.

Nothing here knows HTTP or asyncio: `mirrorlab cache ls|verify|prune` uses it offline.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import json
import os
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import MirrorlabError
from .reference import InvalidReference, validate_digest

MARKER = "mirrorlab-cache"
MARKER_TEXT = "mirrorlab verified cache, format 1\n"
KINDS = ("blob", "manifest")
_FOLDERS = {"blob": "blobs", "manifest": "manifests"}
_TEMP_COUNTER = itertools.count(1)
HASH_PIECE = 1024 * 1024


class NotACache(MirrorlabError):
    """A directory that holds other things than a mirrorlab cache: never written or pruned."""


class CacheUnavailable(Exception):
    """This entry cannot be cached (no room, a disk error): it is served uncached."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Entry:
    kind: str
    digest: str
    size: int
    """Bytes on disk (for a manifest: its header line too)."""
    readers: int = 0
    """Responses reading it now: eviction passes it by."""
    checked: tuple[int, int, int, int] | None = None
    """The file (inode, size, mtime and ctime in ns) as it was when its bytes last matched
    the digest in this process: a file changed since (a write, even one that put its mtime
    back) is hashed again before it is served."""
    touched: float = 0.0
    """When its mtime was last set to now (at most once a minute)."""


def file_key(stat: os.stat_result) -> tuple[int, int, int, int]:
    return stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns


@dataclass(frozen=True)
class TagRecord:
    """The last verified answer of a source for a tag."""

    reference: str
    digest: str
    media_type: str
    source: str
    at: float
    """Unix time of the last answer that said so."""

    def to_json(self) -> dict[str, object]:
        return {"reference": self.reference, "digest": self.digest,
                "mediaType": self.media_type, "source": self.source, "at": self.at}


def digest_of_name(algorithm: str, name: str) -> str | None:
    """The digest a file under `<algorithm>/` stands for, or None for any other name."""
    digest = f"{algorithm}:{name}"
    try:
        validate_digest(digest)
    except InvalidReference:
        return None
    return digest


def hash_file(path: Path | str, algorithm: str, *, skip_line: bool = False) -> str:
    """`algorithm:hex` of a file's bytes (after its first line, for a manifest)."""
    hasher = hashlib.new(algorithm)
    with open(path, "rb", buffering=0) as handle:
        if skip_line:
            _split_header(handle.read(64 * 1024 + 1), hasher)
        while piece := handle.read(HASH_PIECE):
            hasher.update(piece)
    return f"{algorithm}:{hasher.hexdigest()}"


def _split_header(head: bytes, hasher: hashlib._Hash | None = None) -> tuple[str, bytes]:
    """A manifest entry's media type and the body bytes that follow it in `head`."""
    line, newline, rest = head.partition(b"\n")
    if not newline:
        raise ValueError("no header line")
    media_type = json.loads(line).get("mediaType")
    if not isinstance(media_type, str):
        raise ValueError("no mediaType in the header line")
    if hasher is not None:
        hasher.update(rest)
    return media_type, rest


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_root(root: Path, *, create: bool) -> Path:
    """The cache directory, checked: it holds the marker, or is new (then created)."""
    if (root / MARKER).is_file():
        return root
    if root.exists() and not root.is_dir():
        raise NotACache(f"{root} is not a directory")
    if root.is_dir() and any(root.iterdir()):
        raise NotACache(f"{root} is not empty and is no mirrorlab cache (no {MARKER} file): "
                        "it is never written to or pruned")
    if not create:
        raise NotACache(f"{root} is no mirrorlab cache (no {MARKER} file)")
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text(MARKER_TEXT)
    return root


def clean_temporary(root: Path, max_age: float = 86400.0) -> list[Path]:
    """Remove the temporary files of fills whose process is gone (a crash, a kill): any
    not named by a live process other than this one (which has none yet when it opens the
    cache), and any older than `max_age` (a reused process id)."""
    removed: list[Path] = []
    folder = root / "tmp"
    if not folder.is_dir():
        return removed
    now = time.time()
    for path in folder.iterdir():
        pid_text = path.name.split("-", 1)[0]
        try:
            old = now - path.stat().st_mtime > max_age
        except FileNotFoundError:
            continue
        if (pid_text.isdigit() and int(pid_text) != os.getpid() and _pid_alive(int(pid_text))
                and not old):
            continue  # another live process's fill
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed


@dataclass(frozen=True)
class Found:
    """An entry file as a scan finds it."""

    kind: str
    digest: str
    path: Path
    size: int
    mtime: float


def scan(root: Path) -> list[Found]:
    """Every entry file, least recently used first."""
    found: list[Found] = []
    for kind in KINDS:
        base = root / _FOLDERS[kind]
        if not base.is_dir():
            continue
        for folder in base.iterdir():
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                digest = digest_of_name(folder.name, path.name)
                if digest is None:
                    continue
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                found.append(Found(kind, digest, path, stat.st_size, stat.st_mtime))
    found.sort(key=lambda item: (item.mtime, item.kind, item.digest))
    return found


def verify_found(item: Found) -> str | None:
    """None when the entry's bytes match its digest, else why not."""
    algorithm = item.digest.split(":", 1)[0]
    try:
        actual = hash_file(item.path, algorithm, skip_line=item.kind == "manifest")
    except (OSError, ValueError) as error:
        return f"unreadable: {error}"
    if actual != item.digest:
        return f"content is {actual}"
    return None


def tag_path(root: Path, reference: str) -> Path:
    return root / "tags" / f"{hashlib.sha256(reference.encode()).hexdigest()[:40]}.json"


def read_tags(root: Path) -> dict[str, TagRecord]:
    records: dict[str, TagRecord] = {}
    folder = root / "tags"
    if not folder.is_dir():
        return records
    for path in folder.glob("*.json"):
        try:
            data = json.loads(path.read_bytes())
            record = TagRecord(str(data["reference"]), str(data["digest"]),
                               str(data["mediaType"]), str(data["source"]), float(data["at"]))
            validate_digest(record.digest)
        except (OSError, ValueError, KeyError, TypeError, InvalidReference):
            continue
        if path == tag_path(root, record.reference):
            records[record.reference] = record
    return records


def _write_atomically(root: Path, final: Path, data: bytes) -> None:
    """Write through a temporary file: fsync, rename, fsync of the folder."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = new_temporary(root)
    try:
        with open(fd, "wb", closefd=True) as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(temp, final)
        _fsync_dir(final.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def new_temporary(root: Path) -> tuple[int, Path]:
    """A new temporary file under DIR/tmp, open for reading and writing."""
    folder = root / "tmp"
    folder.mkdir(exist_ok=True)
    path = folder / f"{os.getpid()}-{next(_TEMP_COUNTER)}-{os.urandom(4).hex()}.part"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    return fd, path


class CacheStore:
    """One cache directory as a running proxy sees it: the index, pins and reservations."""

    def __init__(self, root: Path | str, max_bytes: int | None = None) -> None:
        try:
            self._open(Path(root), max_bytes)
        except OSError as error:
            raise MirrorlabError(f"the cache {root}: {error.strerror or error}") from None

    def _open(self, root: Path, max_bytes: int | None) -> None:
        self.root = open_root(root, create=True)
        self.max_bytes = max_bytes
        self.entries: OrderedDict[tuple[str, str], Entry] = OrderedDict()
        """Least recently used first."""
        self.used = 0
        self.reserved = 0
        self.evictions = 0
        self.full_until = 0.0
        """Until when the disk is taken to be full (a blob of unknown size is then not
        tried: its source's answer would be dropped unread)."""
        self.cleaned = clean_temporary(self.root)
        for kind in KINDS:
            (self.root / _FOLDERS[kind]).mkdir(exist_ok=True)
        (self.root / "tags").mkdir(exist_ok=True)
        for item in scan(self.root):
            self.entries[(item.kind, item.digest)] = Entry(item.kind, item.digest, item.size)
            self.used += item.size
        self.tags = read_tags(self.root)

    # ------------------------------------------------------------ entries

    def path(self, kind: str, digest: str) -> Path:
        algorithm, _, hex_part = digest.partition(":")
        return self.root / _FOLDERS[kind] / algorithm / hex_part

    def lookup(self, kind: str, digest: str) -> Entry | None:
        return self.entries.get((kind, digest))

    def pin(self, entry: Entry) -> None:
        entry.readers += 1

    def unpin(self, entry: Entry) -> None:
        entry.readers = max(entry.readers - 1, 0)

    def touch(self, entry: Entry) -> None:
        """Most recently used now; kept in the file's mtime (at most once a minute) for
        the next start."""
        key = (entry.kind, entry.digest)
        if key in self.entries:
            self.entries.move_to_end(key)
        now = time.monotonic()
        if now - entry.touched < 60:
            return
        entry.touched = now
        path = self.path(entry.kind, entry.digest)
        try:
            os.utime(path)
            if entry.checked is not None:  # our own change: still the bytes that matched
                stat = os.stat(path)
                if stat.st_ino == entry.checked[0] and stat.st_size == entry.checked[1]:
                    entry.checked = file_key(stat)
        except OSError:
            pass

    def forget(self, kind: str, digest: str, *, remove: bool = True) -> None:
        """Drop an entry (gone from disk, or found bad): never served again."""
        entry = self.entries.pop((kind, digest), None)
        if entry is not None:
            self.used -= entry.size
        if remove:
            with contextlib.suppress(FileNotFoundError):
                self.path(kind, digest).unlink()

    def _evict_one(self) -> bool:
        """Remove the least recently used entry nobody reads; False when there is none."""
        for key, entry in self.entries.items():
            if entry.readers == 0:
                self.forget(*key)
                self.evictions += 1
                return True
        return False

    def reserve(self, size: int) -> None:
        """Room for a fill of `size` bytes within the bound, evicting what it takes; raises
        CacheUnavailable when the bound cannot hold it."""
        if self.max_bytes is not None:
            if size > self.max_bytes:
                raise CacheUnavailable(f"{size} bytes is more than the cache's bound of "
                                       f"{self.max_bytes}")
            while self.used + self.reserved + size > self.max_bytes:
                if not self._evict_one():
                    raise CacheUnavailable("the cache is full of entries being read")
        self.reserved += size

    def unreserve(self, size: int) -> None:
        self.reserved = max(self.reserved - size, 0)

    def allocate(self, fd: int, size: int) -> None:
        """Claim the disk blocks of a fill before it starts, so that a full disk shows now
        and not mid-stream; on ENOSPC, evict unread entries when that makes enough room."""
        if size == 0:
            return
        for _ in range(2):
            try:
                os.posix_fallocate(fd, 0, size)
                return
            except OSError as error:
                if error.errno in (errno.EOPNOTSUPP, errno.EINVAL):
                    return  # the file system cannot say: find out while writing
                if error.errno != errno.ENOSPC:
                    raise CacheUnavailable(f"allocating {size} bytes: {error.strerror}"
                                           ) from None
            stat = os.statvfs(self.root)
            free = stat.f_bavail * stat.f_frsize
            evictable = sum(e.size for e in self.entries.values() if e.readers == 0)
            if free + evictable < size:
                break
            while free < size and self._evict_one():
                stat = os.statvfs(self.root)
                free = stat.f_bavail * stat.f_frsize
        self.full_until = time.monotonic() + 10.0
        raise CacheUnavailable(f"no space on the cache's disk for {size} bytes")

    def disk_full(self) -> bool:
        return time.monotonic() < self.full_until

    def commit_file(self, fd: int, temp: Path, kind: str, digest: str, size: int) -> Entry:
        """A verified temporary file into the cache: fsync, rename, fsync of the folder.
        Blocking: run it in a thread. Returns the entry; the caller records it (`add`)."""
        final = self.path(kind, digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.ftruncate(fd, size)  # what fallocate claimed beyond the bytes (a shorter blob)
        os.fsync(fd)
        os.rename(temp, final)
        _fsync_dir(final.parent)
        return Entry(kind, digest, size, checked=file_key(os.fstat(fd)),
                     touched=time.monotonic())

    def add(self, entry: Entry) -> None:
        key = (entry.kind, entry.digest)
        old = self.entries.pop(key, None)
        if old is not None:
            self.used -= old.size
            entry.readers = old.readers
        self.entries[key] = entry
        self.used += entry.size

    # ------------------------------------------------------------ manifests and tags

    def manifest_bytes(self, media_type: str, body: bytes) -> bytes:
        return json.dumps({"mediaType": media_type}).encode() + b"\n" + body

    def write_manifest(self, digest: str, media_type: str, body: bytes) -> Entry:
        """Blocking (fsync): run it in a thread; the caller records the entry (`add`)."""
        data = self.manifest_bytes(media_type, body)
        _write_atomically(self.root, self.path("manifest", digest), data)
        return Entry("manifest", digest, len(data))

    def read_manifest(self, digest: str) -> tuple[str, bytes] | None:
        """The media type and body of a cached manifest, verified against its digest on
        every read; a bad or vanished one is dropped (None)."""
        entry = self.lookup("manifest", digest)
        if entry is None:
            return None
        try:
            data = self.path("manifest", digest).read_bytes()
            media_type, body = _split_header(data)
        except (OSError, ValueError):
            self.forget("manifest", digest)
            return None
        algorithm = digest.split(":", 1)[0]
        if f"{algorithm}:{hashlib.new(algorithm, body).hexdigest()}" != digest:
            self.forget("manifest", digest)
            raise CorruptEntry("manifest", digest)
        self.touch(entry)
        return media_type, body

    def tag_changed(self, record: TagRecord) -> bool:
        """Whether an answer for a tag is worth writing: the digest changed, or the record
        is a minute old (its time says how stale a stale answer is)."""
        old = self.tags.get(record.reference)
        return old is None or old.digest != record.digest or record.at - old.at >= 60

    def write_tag(self, record: TagRecord) -> None:
        """Blocking (fsync): run it in a thread; the caller records it in `tags`."""
        _write_atomically(self.root, tag_path(self.root, record.reference),
                          json.dumps(record.to_json()).encode())

    def stale(self, reference: str) -> tuple[TagRecord, str, bytes] | None:
        """The last verified answer for a tag and its manifest, when both are still here."""
        record = self.tags.get(reference)
        if record is None:
            return None
        found = self.read_manifest(record.digest)
        if found is None:
            return None
        return record, *found

    def summary(self) -> dict[str, object]:
        blobs = sum(1 for kind, _ in self.entries if kind == "blob")
        return {"dir": str(self.root), "entries": len(self.entries), "blobs": blobs,
                "manifests": len(self.entries) - blobs, "tags": len(self.tags),
                "bytes": self.used, "reserved_bytes": self.reserved,
                "max_bytes": self.max_bytes, "evictions": self.evictions,
                "being_read": sum(1 for e in self.entries.values() if e.readers)}


class CorruptEntry(Exception):
    """An entry whose bytes no longer match its digest: removed, and the request misses."""

    def __init__(self, kind: str, digest: str) -> None:
        super().__init__(f"cached {kind} {digest} does not match its digest: removed")
        self.kind, self.digest = kind, digest


# ------------------------------------------------------------ `mirrorlab cache`


def _dangling_tags(root: Path) -> Iterator[Path]:
    present = {item.digest for item in scan(root) if item.kind == "manifest"}
    for reference, record in read_tags(root).items():
        if record.digest not in present:
            yield tag_path(root, reference)


def verify_cache(root: Path) -> list[tuple[Found, str | None]]:
    """Re-hash every entry; remove the bad ones (and tag records left without their
    manifest). Each entry with None (intact) or why it was removed."""
    root = open_root(root, create=False)
    clean_temporary(root)
    results = []
    for item in scan(root):
        problem = verify_found(item)
        if problem is not None:
            with contextlib.suppress(FileNotFoundError):
                item.path.unlink()
        results.append((item, problem))
    for path in _dangling_tags(root):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return results


def prune_cache(root: Path, max_bytes: int) -> list[Found]:
    """Remove least recently used entries until the cache holds at most `max_bytes`."""
    root = open_root(root, create=False)
    clean_temporary(root)
    items = scan(root)
    total = sum(item.size for item in items)
    removed = []
    for item in items:
        if total <= max_bytes:
            break
        with contextlib.suppress(FileNotFoundError):
            item.path.unlink()
        total -= item.size
        removed.append(item)
    for path in _dangling_tags(root):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return removed


def list_cache(root: Path) -> tuple[list[Found], dict[str, TagRecord], int]:
    """Entries (least recently used first), tag records, and bytes of fills in progress."""
    root = open_root(root, create=False)
    temporary = sum(p.stat().st_size for p in (root / "tmp").glob("*")) \
        if (root / "tmp").is_dir() else 0
    return scan(root), read_tags(root), temporary


def age(seconds_since_epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds_since_epoch))
