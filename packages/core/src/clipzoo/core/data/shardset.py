"""Shard sets: which shards make a training set, where they live, and reading each one safely.

A shard folder is valid only through its ``manifest.json`` (written last by the writer: the commit record).
:func:`resolve_shard_set` turns a spec into :class:`ShardRef` s (URL + the size/sha256 the manifest promises):

- a local folder or a folder URL (``s3://bucket/set/``, ``https://host/set/``, ``gs://...``): its manifest's
  shards; a folder without one is refused (an unfinished ingest, or a set clipzoo did not write) unless
  ``allow_unmanifested`` is set, which lists its ``*.tar`` instead;
- explicit shards stay allowed without a manifest: a brace pattern (``/data/x-{000000..000009}.tar``,
  ``s3://b/x-{0..9}.tar``), a ``glob:/data/*.tar`` pattern, a ``pipe:`` command, or a list of those.

:func:`shard_samples` reads one shard: its size is checked against the manifest when it is opened (before a
byte is read), and whatever goes wrong (size mismatch, tar read error, a missing object, a 403, a connection
that keeps dropping) comes out as one :class:`BadShardError` line naming the shard. Remote shards stream
through fsspec (s3fs for ``s3://``, fsspec's HTTP filesystem for ``http(s)://``, gcsfs for ``gs://``, which is
not tested here); a dropped connection is retried with backoff, resuming at the byte where it broke, so the
samples are exactly those of an unbroken read (which keeps the loader's resume exact). An optional local cache
keeps whole, verified copies of remote shards (bounded size, least recently used go first).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Mapping

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"  # the writer's name for it (clipzoo.core.data.writer.MANIFEST_NAME)
REMOTE_PREFIXES = ("s3://", "gs://", "gcs://", "http://", "https://")
_PACKAGES = {"s3": "s3fs (pip install 'clipzoo-core[s3]')", "gs": "gcsfs (pip install gcsfs; gs:// is untested here)",
             "gcs": "gcsfs (pip install gcsfs; gs:// is untested here)", "http": "aiohttp", "https": "aiohttp"}
_META_MEMBER = re.compile(r"__[^/]*__($|/)")  # webdataset's rule: __key__-like members are metadata, not data


class ShardSetError(ValueError):
    """A shard set that cannot be used as given (no manifest, unreachable, access denied); one line."""


class BadShardError(OSError):
    """One shard that cannot be read (size mismatch, tar error, missing, dropped connection); one line."""


def is_remote(url: str) -> bool:
    return url.startswith(REMOTE_PREFIXES)


class ShardRef(str):
    """One shard: its URL (the string itself) and what its manifest promises (``None`` where there is none).

    A ``str`` so that everything that takes shard URLs (brace lists, ``pipe:`` wrappers, the loader's state)
    keeps working, while the expected size and sha256 travel with the URL to the reader."""

    bytes: int | None
    sha256: str | None
    samples: int | None

    def __new__(cls, url: str, bytes: int | None = None, sha256: str | None = None, samples: int | None = None):
        self = super().__new__(cls, url)
        self.bytes, self.sha256, self.samples = bytes, sha256, samples
        return self

    @property
    def url(self) -> str:
        return str(self)

    def __reduce__(self):  # pickled to DataLoader workers with its manifest entry
        return (ShardRef, (str(self), self.bytes, self.sha256, self.samples))

    def __repr__(self) -> str:
        return f"ShardRef({str(self)!r}, bytes={self.bytes}, sha256={self.sha256!r}, samples={self.samples})"


@dataclass(frozen=True)
class Storage:
    """How remote shards are reached: fsspec storage options, retries and the optional local cache.

    ``options`` go to the fsspec filesystem (e.g. ``{"endpoint_url": "http://minio:9000"}`` or ``{"anon": True}``
    for s3fs); credentials otherwise come from the usual places (``AWS_*`` environment, ``~/.aws``), and an
    S3-compatible endpoint also from ``AWS_ENDPOINT_URL``. ``cache_dir`` switches the cache on; it holds at most
    ``cache_max_bytes``.
    """

    options: Mapping[str, Any] = field(default_factory=dict)
    retries: int = 3
    backoff_s: float = 0.5
    cache_dir: str | None = None
    cache_max_bytes: int = 20 << 30

    def filesystem(self, url: str):
        """The fsspec filesystem for ``url`` and the path inside it; a missing driver is one line."""
        import fsspec

        protocol = url.split("://", 1)[0]
        options = dict(self.options)
        if protocol == "s3" and "endpoint_url" not in options:
            endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
            if endpoint:  # botocore reads it too; given explicitly so that errors can name it
                options["endpoint_url"] = endpoint
        try:
            fs = fsspec.filesystem(protocol, **options)
        except ImportError as exc:
            raise ShardSetError(f"{url}: reading {protocol}:// needs {_PACKAGES.get(protocol, exc.name)} ({exc})") from None
        return fs, (url if protocol in ("http", "https") else fs._strip_protocol(url))

    def endpoint(self, url: str) -> str:
        if url.startswith("s3://"):
            return str(self.options.get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL_S3")
                       or os.environ.get("AWS_ENDPOINT_URL") or "the AWS default endpoint")
        return url.split("/", 3)[2] if "://" in url else url


# -- errors a user can act on -----------------------------------------------------------------------
def _transient_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean 'the connection broke' (worth a retry), as the installed drivers raise them."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError, EOFError, OSError]
    try:
        import aiohttp

        errors.append(aiohttp.ClientError)
    except ImportError:
        pass
    try:
        import botocore.exceptions

        errors.append(botocore.exceptions.BotoCoreError)
    except ImportError:
        pass
    return tuple(errors)


def _status(exc: BaseException) -> int | None:
    """The HTTP status behind an error, also where a driver re-raised it as another type (fsspec's HTTP
    filesystem turns any failed HEAD into FileNotFoundError, keeping the response error as its cause)."""
    for inner in (exc.__cause__, exc.__context__):
        if inner is not None and inner is not exc:
            status = _status(inner)
            if status is not None:
                return status
    status = getattr(exc, "status", None) or getattr(exc, "code", None)
    response = getattr(exc, "response", None)
    if status is None and isinstance(response, dict):  # botocore ClientError
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if isinstance(status, int) or (isinstance(status, str) and status.isdigit()) else None


def explain(exc: BaseException, url: str, storage: Storage) -> str:
    """One line for a failed access to ``url``: what happened and what to check."""
    status = _status(exc)
    if status in (401, 403) or isinstance(exc, PermissionError):
        what = ("the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or ~/.aws) and the bucket "
                "policy, or storage option anon: true for a public bucket") if url.startswith("s3://") else \
            "that the server allows this path (credentials, signed URL, or its access rules)"
        return f"{url}: access denied ({status or 403}); check {what}"
    if isinstance(exc, FileNotFoundError) or status == 404:
        return f"{url}: not found (404/no such object); check the bucket and path, and that the set was uploaded whole"
    if status is not None:
        return f"{url}: the server answered HTTP {status}; check the URL and the server"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return (f"{url}: cannot reach {storage.endpoint(url)} ({type(exc).__name__}: {text}); check the endpoint "
            f"(data.storage_options.endpoint_url or AWS_ENDPOINT_URL) and the network")


# -- resolving a spec to shards -----------------------------------------------------------------------
def _manifest_refs(base: str, data: Mapping[str, Any]) -> list[ShardRef]:
    from clipzoo.core.data.writer import Manifest

    manifest = Manifest.from_dict(data)
    sep = "" if base.endswith("/") else "/"
    return [ShardRef(f"{base}{sep}{s.name}", s.bytes, s.sha256, s.samples) for s in manifest.shards]


_NO_MANIFEST = ("no manifest.json: an unfinished or foreign shard set; re-run the ingest (or continue it with "
                "--resume), or, for shards clipzoo did not write, opt in with data.allow_unmanifested: true "
                "or name them with a brace or glob: pattern")


def read_manifest(folder: str, storage: Storage | None = None) -> dict[str, Any] | None:
    """The parsed manifest of a local folder or folder URL; ``None`` when it has none."""
    storage = storage or Storage()
    if not is_remote(folder):
        path = Path(folder) / MANIFEST_NAME
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    fs, path = storage.filesystem(folder)
    url = folder.rstrip("/") + "/" + MANIFEST_NAME
    manifest_path = path.rstrip("/") + "/" + MANIFEST_NAME
    try:
        with fs.open(manifest_path, "rb") as fh:
            return json.loads(fh.read().decode("utf-8"))
    except FileNotFoundError as exc:
        if _status(exc) not in (None, 404):  # a 403 (or 5xx) that the driver calls "not found"
            raise ShardSetError(explain(exc, url, storage)) from None
    except json.JSONDecodeError as exc:
        raise ShardSetError(f"{url}: not a JSON manifest ({exc})") from None
    except ShardSetError:
        raise
    except Exception as exc:  # noqa: BLE001  any driver error (connection, 403, bad endpoint) becomes one line
        raise ShardSetError(explain(exc, url, storage)) from None
    if not folder.startswith(("s3://", "gs://", "gcs://")):
        return None  # an HTTP server need not list folders: a missing manifest is all that can be said
    try:  # no manifest: is there a folder at all? A wrong bucket or prefix is said as such
        found = fs.ls(path.rstrip("/"), detail=False)
    except FileNotFoundError:
        found = []
    except Exception as exc:  # noqa: BLE001
        raise ShardSetError(explain(exc, folder, storage)) from None
    if not found:
        raise ShardSetError(f"{folder}: not found (no such bucket, or nothing under this prefix); check the URL")
    return None


def _list_tars(folder: str, storage: Storage) -> list[ShardRef]:
    if not is_remote(folder):
        return [ShardRef(str(p)) for p in sorted(Path(folder).glob("*.tar"))]
    fs, path = storage.filesystem(folder)
    try:
        names = sorted(n for n in fs.ls(path, detail=False) if str(n).endswith(".tar"))
    except Exception as exc:  # noqa: BLE001  any driver error becomes one line
        raise ShardSetError(explain(exc, folder, storage)) from None
    prefix = folder.split("://", 1)[0] + "://"
    return [ShardRef(n if "://" in n else prefix + n) for n in names]


def _is_folder_url(url: str) -> bool:
    return not re.search(r"[{}*?]", url) and not url.rstrip("/").endswith(".tar")


def names_a_folder(spec: str) -> bool:
    """Whether a shard-set spec names a folder (a local one, or a URL that is not a pattern or a .tar file)."""
    return _is_folder_url(spec) if is_remote(spec) else Path(spec).is_dir()


def resolve_shard_set(
    spec: str | Path | Iterable[str | Path], *, allow_unmanifested: bool = False, storage: Storage | None = None
) -> list[ShardRef]:
    """The shards a spec names (see the module docstring); an unusable spec is one :class:`ShardSetError` line."""
    from braceexpand import braceexpand

    storage = storage or Storage()
    if not isinstance(spec, (str, Path)):
        return [ref for item in spec for ref in resolve_shard_set(item, allow_unmanifested=allow_unmanifested,
                                                                  storage=storage)]
    spec = str(spec)
    if spec.startswith("pipe:"):
        return [ShardRef(u) for u in braceexpand(spec)]
    if spec.startswith("glob:"):
        urls = sorted(str(p) for p in Path("/").glob(spec[5:].lstrip("/"))) if spec[5:].startswith("/") else \
            sorted(str(p) for p in Path().glob(spec[5:]))
        if not urls:
            raise FileNotFoundError(f"{spec}: the pattern matches no file")
        return [ShardRef(u) for u in urls]
    folder = names_a_folder(spec)
    if folder:
        data = read_manifest(spec, storage)
        if data is not None:
            refs = _manifest_refs(spec, data)
        elif allow_unmanifested:
            refs = _list_tars(spec, storage)
            log.warning("%s: no manifest.json; reading its %d .tar files as an unchecked foreign set", spec, len(refs))
        else:
            raise ShardSetError(f"{spec}: {_NO_MANIFEST}")
        if not refs:
            raise ShardSetError(f"{spec}: the shard set holds no shards")
        return refs
    urls = list(braceexpand(spec))
    if not is_remote(spec):
        missing = [u for u in urls if not Path(u).is_file()]
        if missing:
            raise FileNotFoundError(
                f"shard(s) not found: {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
    return [ShardRef(u) for u in urls]


# -- opening one shard ------------------------------------------------------------------------------
class _RetryingReader(io.RawIOBase):
    """A remote object read front to back; a broken connection is reopened at the byte where it broke.

    Hand-written because neither fsspec nor webdataset resumes a broken read at its offset with a bounded,
    logged number of attempts (s3fs retries some calls itself; fsspec's HTTP files do not).
    """

    def __init__(self, fs, path: str, url: str, fh, storage: Storage):
        self.fs, self.path, self.url, self.storage = fs, path, url, storage
        self._fh = fh  # opened by the caller: opening asks for the size, which is checked before reading
        size = getattr(fh, "size", None)
        self.size = int(size) if size is not None else None
        self.pos, self.failures = 0, 0
        self._transient = _transient_errors()

    def readable(self) -> bool:
        return True

    def _open(self):
        fh = self.fs.open(self.path, "rb")
        if self.pos:
            fh.seek(self.pos)
        return fh

    def readinto(self, buffer) -> int:
        while True:
            try:
                if self._fh is None:
                    self._fh = self._open()
                data = self._fh.read(len(buffer))
                if not data and self.size is not None and self.pos < self.size:
                    raise ConnectionError(f"the stream ended at byte {self.pos} of {self.size}")
                buffer[: len(data)] = data
                self.pos += len(data)
                return len(data)
            except (FileNotFoundError, PermissionError, ShardSetError):
                raise
            except self._transient as exc:
                if _status(exc) in (401, 403, 404):
                    raise
                self._drop()
                self.failures += 1
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                if self.failures > self.storage.retries:
                    raise BadShardError(
                        f"{self.url}: the connection broke {self.failures} times (last at byte {self.pos}: {reason});"
                        f" check the network and the endpoint {self.storage.endpoint(self.url)}") from None
                wait = self.storage.backoff_s * 2 ** (self.failures - 1)
                log.warning("%s: connection broke at byte %d (%s); retry %d/%d in %.1f s", self.url, self.pos,
                            reason, self.failures, self.storage.retries, wait)
                time.sleep(wait)

    def _drop(self) -> None:
        if self._fh is not None:
            try:
                self._fh.close()
            except Exception:  # noqa: BLE001  a broken connection may fail to close; it is dropped either way
                pass
            self._fh = None

    def close(self) -> None:
        self._drop()
        super().close()


class _CachingReader(io.RawIOBase):
    """Passes a remote shard through and keeps a copy; the copy counts only when whole and its sha256 matches."""

    def __init__(self, raw: io.RawIOBase, ref: ShardRef, dest: Path, storage: Storage):
        self.raw, self.ref, self.dest, self.storage = raw, ref, dest, storage
        self.partial = dest.with_name(f"{dest.name}.partial{os.getpid()}")
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        self.out = open(self.partial, "wb")
        self.sha = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self.raw.readinto(buffer)
        if n:
            chunk = bytes(buffer[:n])
            self.out.write(chunk)
            self.sha.update(chunk)
            self.size += n
        return n

    def close(self) -> None:
        if self.closed:
            return
        try:
            if self.ref.bytes is not None and 0 < self.ref.bytes - self.size <= 1 << 20:
                while self.readinto(bytearray(1 << 16)):  # tar readers stop before the final padding: keep it
                    pass
        except Exception:  # noqa: BLE001  the copy is only kept when complete; the read itself has finished
            pass
        self.out.close()
        whole = self.ref.bytes is None or self.size == self.ref.bytes
        if whole and (self.ref.sha256 is None or self.sha.hexdigest() == self.ref.sha256):
            os.replace(self.partial, self.dest)
            _evict(self.storage, keep=self.dest)
        else:
            self.partial.unlink(missing_ok=True)
        self.raw.close()
        super().close()


def _cache_path(ref: ShardRef, storage: Storage) -> Path:
    key = ref.sha256 or hashlib.blake2b(ref.url.encode(), digest_size=16).hexdigest()
    return Path(storage.cache_dir) / f"{key}.tar"


def _evict(storage: Storage, keep: Path) -> None:
    """Least recently used copies go until the cache fits in ``cache_max_bytes``."""
    files = sorted(Path(storage.cache_dir).glob("*.tar"), key=lambda p: p.stat().st_mtime)
    total = sum(p.stat().st_size for p in files)
    for path in files:
        if total <= storage.cache_max_bytes:
            break
        if path != keep:
            total -= path.stat().st_size
            path.unlink(missing_ok=True)


def _check_size(ref: ShardRef, actual: int) -> None:
    if ref.bytes is not None and actual != ref.bytes:
        cut = "truncated" if actual < ref.bytes else "longer than listed"
        raise BadShardError(f"{ref.url}: size mismatch ({cut}): {actual} bytes, the manifest lists {ref.bytes}; "
                            f"re-run the ingest or restore the shard")


def open_shard(ref: ShardRef, storage: Storage | None = None) -> BinaryIO:
    """A readable binary stream of one shard, its size checked against the manifest before reading."""
    storage = storage or Storage()
    url = ref.url
    if url.startswith("pipe:"):
        from webdataset.gopen import gopen

        return gopen(url)
    if not is_remote(url):
        path = Path(url[7:] if url.startswith("file://") else url)
        try:
            _check_size(ref, path.stat().st_size)
            return open(path, "rb")
        except FileNotFoundError:
            raise BadShardError(f"{url}: missing (listed in the manifest); re-run the ingest or restore it") from None
    if storage.cache_dir:
        cached = _cache_path(ref, storage)
        if cached.is_file() and (ref.bytes is None or cached.stat().st_size == ref.bytes):
            os.utime(cached)  # most recently used
            return open(cached, "rb")
    fs, path = storage.filesystem(url)
    try:
        fh = fs.open(path, "rb")  # one HEAD (or its equivalent): the size, checked here before a byte is read
    except Exception as exc:  # noqa: BLE001  any driver error becomes one line naming the shard
        raise BadShardError(explain(exc, url, storage)) from None
    raw: io.RawIOBase = _RetryingReader(fs, path, url, fh, storage)
    if raw.size is not None:
        try:
            _check_size(ref, raw.size)
        except BadShardError:
            raw.close()
            raise
    if storage.cache_dir:
        raw = _CachingReader(raw, ref, _cache_path(ref, storage), storage)
    return io.BufferedReader(raw, buffer_size=1 << 20)


# -- reading samples ----------------------------------------------------------------------------------
def _members(stream: BinaryIO, url: str) -> Iterator[dict[str, Any]]:
    """(name, bytes) of each regular member, streamed: no member index is kept, nothing is extracted to disk."""
    with tarfile.open(fileobj=stream, mode="r|*") as tar:
        for info in tar:
            if not info.isreg() or _META_MEMBER.match(info.name):
                continue
            data = tar.extractfile(info).read()
            yield {"fname": info.name, "data": data, "__url__": url}
            tar.members = []
        # tarfile ends quietly at a damaged header after the first: what follows the end must be zero padding
        end = tar.offset
        while block := tar.fileobj.read(1 << 16):
            if block.strip(b"\0"):
                raise tarfile.ReadError(f"unreadable member header at byte {end}, the rest of the shard is lost")


def shard_samples(ref: ShardRef, storage: Storage | None = None) -> Iterator[dict[str, Any]]:
    """The raw (undecoded) webdataset samples of one shard; any failure is one :class:`BadShardError`."""
    from webdataset.tariterators import group_by_keys

    storage = storage or Storage()
    try:
        stream = open_shard(ref, storage)
    except (BadShardError, ShardSetError):
        raise
    except Exception as exc:  # noqa: BLE001  (e.g. a pipe: command that cannot start)
        raise BadShardError(explain(exc, ref.url, storage)) from None
    try:
        count = 0
        for sample in group_by_keys(_members(stream, ref.url)):
            count += 1
            yield sample
        if ref.samples is not None and count != ref.samples:
            raise BadShardError(f"{ref.url}: {count} samples read, the manifest lists {ref.samples}; re-run the "
                                f"ingest or restore the shard")
    except BadShardError:
        raise
    except (tarfile.TarError, OSError, EOFError, ValueError, *_transient_errors()) as exc:
        if isinstance(exc, (FileNotFoundError, PermissionError)) or _status(exc) is not None:
            raise BadShardError(explain(exc, ref.url, storage)) from None
        reason = str(exc.args[0] if exc.args else exc).splitlines()[0] or type(exc).__name__
        raise BadShardError(f"{ref.url}: tar read error ({reason}); the shard is corrupt or truncated, "
                            f"check it with 'clipzoo shards verify'") from None
    finally:
        stream.close()


def iter_samples(
    refs: Iterable[ShardRef | str],
    storage: Storage | None = None,
    on_bad_shard: str = "stop",
    on_skip: Callable[[ShardRef, str], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """The raw samples of several shards (refs or plain URLs/paths), in order: the one shard reader of core.

    A bad shard stops (raises :class:`BadShardError`) or, with ``"skip"``, is logged, given to ``on_skip`` and
    passed over."""
    for ref in refs:
        ref = ref if isinstance(ref, ShardRef) else ShardRef(str(ref))
        try:
            yield from shard_samples(ref, storage)
        except BadShardError as exc:
            if on_bad_shard != "skip":
                raise
            log.warning("skipping bad shard: %s", exc)
            if on_skip is not None:
                on_skip(ref, str(exc))


# -- health of a whole set (shards inspect / verify) ---------------------------------------------------
@dataclass
class Health:
    """What ``clipzoo shards inspect`` found: problems make a set unhealthy (exit non-zero)."""

    location: str
    has_manifest: bool
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return self.has_manifest and not self.problems


def check_set(folder: str, storage: Storage | None = None) -> tuple[Health, list[ShardRef], dict[str, Any] | None]:
    """Sizes and presence of every listed shard, extra ``.tar`` files and leftover ``.partial`` s (no hashing)."""
    storage = storage or Storage()
    data = read_manifest(folder, storage)
    health = Health(folder, data is not None)
    refs = _manifest_refs(folder, data) if data is not None else []
    if data is None:
        health.problems.append(f"{folder}: {_NO_MANIFEST}")
    # what is actually there: name -> size
    if is_remote(folder):
        fs, path = storage.filesystem(folder)
        try:
            entries = fs.ls(path, detail=True)
        except Exception as exc:  # noqa: BLE001  HTTP servers need not list folders
            entries = None
            health.notes.append(f"cannot list {folder} ({type(exc).__name__}); extra/leftover files not checked")
        present = None if entries is None else {str(e["name"]).rstrip("/").rsplit("/", 1)[-1]: e.get("size")
                                                for e in entries}
    else:
        present = {p.name: p.stat().st_size for p in Path(folder).iterdir() if p.is_file()}
    listed = {ref.url.rsplit("/", 1)[-1]: ref for ref in refs}
    for name, ref in listed.items():
        if present is not None and name in present and present[name] is not None:
            actual = int(present[name])
        else:
            try:
                fs, path = storage.filesystem(ref.url) if is_remote(ref.url) else (None, ref.url)
                actual = int(fs.size(path)) if fs is not None else Path(path).stat().st_size
            except FileNotFoundError as exc:
                if _status(exc) in (None, 404):
                    health.problems.append(f"{ref.url}: missing (listed in the manifest)")
                else:
                    health.problems.append(explain(exc, ref.url, storage))
                continue
            except Exception as exc:  # noqa: BLE001
                health.problems.append(explain(exc, ref.url, storage))
                continue
        if ref.bytes is not None and actual != ref.bytes:
            health.problems.append(f"{ref.url}: size mismatch: {actual} bytes, the manifest lists {ref.bytes}")
    if present is not None:
        for name in sorted(present):
            if name.endswith(".tar") and name not in listed:
                health.problems.append(f"{folder.rstrip('/')}/{name}: a .tar the manifest does not list "
                                       f"(left by another run?)")
            elif ".partial" in name or ".tmp" in name:
                health.problems.append(f"{folder.rstrip('/')}/{name}: a leftover partial file (an interrupted "
                                       f"or running write)")
    return health, refs, data


def sha256_of(ref: ShardRef, storage: Storage | None = None, progress: Callable[[int], None] | None = None) -> str:
    """The sha256 of one shard, streamed in 1 MiB blocks (``progress`` gets each block's length)."""
    storage = storage or Storage()
    digest = hashlib.sha256()
    # the source itself, never a cached copy, and not size-checked first: verify reports sizes on its own
    stream = open_shard(ShardRef(ref.url), Storage(options=storage.options, retries=storage.retries,
                                                   backoff_s=storage.backoff_s))
    with stream:
        while True:
            block = stream.read(1 << 20)
            if not block:
                break
            digest.update(block)
            if progress is not None:
                progress(len(block))
    return digest.hexdigest()
