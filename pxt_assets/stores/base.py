"""The one interface every storage provider implements.

Only modules under `stores/` talk to a storage SDK (or the filesystem / HTTP for media bytes). Everything
above works with URIs and this interface, the way fsspec's implementations sit behind one abstract class.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
import mimetypes
import pathlib
import re
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pxt_assets import fsutil
from pxt_assets.errors import ErrorCode
from pxt_assets.redaction import redact


class StoreError(Exception):
    """A storage operation failed. `kind` is its stable code (an ErrorCode: not_found, access_denied,
    throttled, ...); `retryable` whether the same request may succeed later (the retry loop's test), and
    `retry_after` the seconds a server asked us to wait (a Retry-After header), if it did."""

    def __init__(self, message: str, *, kind: str | ErrorCode = ErrorCode.STORE_ERROR,
                 retry_after: float | None = None) -> None:
        super().__init__(redact(message))  # a URL in the message may carry a signature or a token
        self.kind = ErrorCode.of(kind, ErrorCode.STORE_ERROR)
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.kind.retryable


class UnsupportedURIError(StoreError, ValueError):
    """A URI whose scheme or host no store handles."""

    def __init__(self, message: str) -> None:
        super().__init__(message, kind="unsupported")


def content_type_for(name: str) -> str:
    """The Content-Type to store an object under, from its file name."""
    guessed, _ = mimetypes.guess_type(name)
    return guessed or "application/octet-stream"


MAX_PRESIGN_SECONDS = 7 * 24 * 3600


def check_expiration(expiration_seconds: Any) -> None:
    """Presigned URLs live between 1 s and 7 days (the S3 and GCS maximum)."""
    if isinstance(expiration_seconds, bool) or not isinstance(expiration_seconds, (int, float)):
        raise StoreError(f"expiration_seconds must be a number of seconds, got {expiration_seconds!r}", kind="invalid")
    if not 1 <= expiration_seconds <= MAX_PRESIGN_SECONDS:
        raise StoreError(
            f"expiration_seconds must be between 1 and {MAX_PRESIGN_SECONDS} (7 days), got {expiration_seconds}",
            kind="invalid",
        )


@dataclass(frozen=True)
class SignedExpiry:
    """When a presigned URL stops working, read from the URL itself (see `signed_url_expiry`)."""

    #: seconds since the epoch (UTC)
    expires_at: float
    #: the URL's lifetime in seconds, when the URL says it (SigV4 and GCS V4 do; a SAS with a start time gives
    #: its validity window, which our signing opens a few minutes early for clock skew)
    lifetime: float | None


#: the query fields an expiry is read from (a regex, not a full parse: a select checks every stored URL)
_EXPIRY_FIELD = re.compile(r"[?&](x-amz-date|x-amz-expires|x-goog-date|x-goog-expires|se|st|sig|expires|signature"
                           r"|x-goog-signature)=([^&#]*)", re.IGNORECASE)


@functools.lru_cache(maxsize=4096)  # a batch's URLs share a few signing seconds
def _parse_compact_utc(value: str) -> float:
    """20240101T000000Z -> seconds since the epoch."""
    if len(value) != 16 or value[8] != "T" or value[15] != "Z":
        raise ValueError(value)
    return float(calendar.timegm((int(value[0:4]), int(value[4:6]), int(value[6:8]),
                                  int(value[9:11]), int(value[11:13]), int(value[13:15]), 0, 0, 0)))


def _parse_iso_utc(value: str) -> float:
    when = dt.datetime.fromisoformat(urllib.parse.unquote(value).replace("Z", "+00:00"))
    return (when if when.tzinfo is not None else when.replace(tzinfo=dt.timezone.utc)).timestamp()


def signed_url_expiry(url: Any) -> SignedExpiry | None:
    """When the presigned URL `url` expires, from its query string: SigV4 (S3, R2, B2, Tigris, the home
    bucket's control plane) `X-Amz-Date` + `X-Amz-Expires`; GCS V4 `X-Goog-Date` + `X-Goog-Expires`; an
    Azure SAS `se` (and `st`); V2-style `Expires` (seconds since the epoch). None for anything else (an http(s)
    URL passed through unchanged never expires as far as we know). Reads the URL only: nothing is signed or
    fetched."""
    if not isinstance(url, str) or "?" not in url or not url.startswith(("http://", "https://")):
        return None
    for date, expires in (("X-Amz-Date=", "X-Amz-Expires="), ("X-Goog-Date=", "X-Goog-Expires=")):
        i, j = url.find(date), url.find(expires)  # the signers' own spelling: no regex, no full parse
        if i > 0 and j > 0:
            i, j = i + len(date), j + len(expires)
            end = url.find("&", j)
            try:
                lifetime = float(url[j:end] if end > 0 else url[j:].split("#", 1)[0])
                return SignedExpiry(_parse_compact_utc(url[i:i + 16]) + lifetime, lifetime)
            except (ValueError, OverflowError):
                return None
    q = {k.lower(): v for k, v in _EXPIRY_FIELD.findall(url)}
    try:
        for date, expires in (("x-amz-date", "x-amz-expires"), ("x-goog-date", "x-goog-expires")):
            if date in q and expires in q:
                lifetime = float(q[expires])
                return SignedExpiry(_parse_compact_utc(q[date]) + lifetime, lifetime)
        if "se" in q and "sig" in q:  # an Azure SAS: se (and st) are ISO 8601 UTC (2024-01-02T03:04:05Z)
            expires_at = _parse_iso_utc(q["se"])
            start = _parse_iso_utc(q["st"]) if q.get("st") else None
            return SignedExpiry(expires_at, expires_at - start if start is not None else None)
        if "expires" in q and ("signature" in q or "x-goog-signature" in q):
            return SignedExpiry(float(q["expires"]), None)
    except (ValueError, OverflowError):
        return None
    return None


@dataclass(frozen=True)
class ObjectInfo:
    """One object found by `ObjectStore.list_objects`."""

    #: the object's URI, in the same form as the listed prefix (a file:// URL for local files)
    uri: str
    #: last modified, in seconds since the epoch (UTC), as precise as the provider reports it: whole
    #: seconds for S3 and Azure, microseconds for GCS, the filesystem's resolution for local files
    mtime: float
    #: size in bytes
    size: int
    #: the provider's entity tag, where it reports one (`stat`; listings leave it out)
    etag: str | None = None


def check_page_size(page_size: Any) -> None:
    """A listing page size is None (the provider's default) or a positive int."""
    if page_size is None:
        return
    if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
        raise StoreError(f"page_size must be a positive integer or None, got {page_size!r}", kind="invalid")


def folder_prefix(key: str) -> str:
    """A listing prefix names a folder: "dir" lists "dir/...", never the sibling "dir2/..." or "dirx.jpg"."""
    return key if not key or key.endswith("/") else key + "/"


def epoch_seconds(when: dt.datetime) -> float:
    """Seconds since the epoch of an SDK timestamp (a naive one is taken as UTC, as the providers mean it)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.timestamp()


def bucket_error(error: StoreError, bucket: str) -> StoreError:
    """The message users see when a destination's bucket fails validation (as Pixeltable words it)."""
    if error.kind == "not_found":
        return StoreError(f"Bucket '{bucket}' not found", kind="not_found")
    if error.kind == "access_denied":
        return StoreError(f"Access denied to bucket '{bucket}'", kind="access_denied")
    return error


class ObjectStore(ABC):
    """Read (and, unless read-only, write) files addressed by URI."""

    #: a short provider name shown in messages and metadata ("local", "http", "s3", ...)
    provider: str = ""
    #: whether files can be written here (a destination) or only read (a source)
    writable: bool = True
    #: whether reading a file needs a local copy through the file cache (False for local files)
    remote: bool = True

    @abstractmethod
    def download(self, uri: str, dest: pathlib.Path) -> None:
        """Write the bytes at `uri` to the local file `dest`, streaming (never the whole file in memory)."""

    def upload(self, src: pathlib.Path, uri: str, *, content_type: str | None = None) -> None:
        """Store the local file `src` at `uri` (atomically where the provider allows)."""
        raise StoreError(f"{self.provider} URIs are read-only: cannot write {uri}", kind="read_only")

    def read_bytes(self, uri: str) -> bytes:
        """The whole file at `uri` in memory, in one request where the provider allows (for small media that
        are decoded whole anyway, such as images). This default goes through `download` and a temp file."""
        scratch = fsutil.scratch_file(suffix=pathlib.PurePosixPath(uri.split("?")[0]).suffix[:8])
        try:
            self.download(uri, scratch)
            return scratch.read_bytes()
        finally:
            scratch.unlink(missing_ok=True)

    def write_bytes(self, data: bytes, uri: str, *, content_type: str | None = None) -> None:
        """Store `data` (produced in memory, such as an encoded image) at `uri`. This default goes through a
        temp file and `upload`; providers that can send bytes directly override it."""
        scratch = fsutil.scratch_file(suffix=pathlib.PurePosixPath(uri).suffix[:8])
        try:
            with open(scratch, "wb") as f:
                f.write(data)
            self.upload(scratch, uri, content_type=content_type)
        finally:
            scratch.unlink(missing_ok=True)

    def exists(self, uri: str) -> bool:
        raise StoreError(f"{self.provider} URIs cannot be checked for existence: {uri}", kind="unsupported")

    def delete(self, uri: str) -> None:
        raise StoreError(f"{self.provider} URIs are read-only: cannot delete {uri}", kind="read_only")

    def stat(self, uri: str) -> ObjectInfo | None:
        """The object at `uri` (modification time, size, ETag where the provider has one; one HEAD request),
        or None if there is none."""
        raise StoreError(f"{self.provider} URIs cannot be inspected: {uri}", kind="unsupported")

    def list_objects(self, prefix_uri: str, *, page_size: int | None = None) -> Iterator[ObjectInfo]:
        """Objects under the folder `prefix_uri` (recursively), with their modification time and size.

        Paged lazily: pages of `page_size` objects (None: the provider's default) are requested as the
        iterator is consumed, so a listing of millions never sits in memory. The prefix names a folder:
        `.../dir` and `.../dir/` both list `dir/...`, never a sibling `dir2/...`. Folder markers are skipped.
        Order is the provider's: lexicographic by name for S3, GCS and Azure, sorted for local files.

        A malformed URI or page size raises StoreError at the call; errors from the provider (a missing
        bucket or container: kind 'not_found', naming it) are raised while iterating.
        """
        raise StoreError(f"{self.provider} URIs cannot be listed: {prefix_uri}", kind="unsupported")

    def list(self, prefix_uri: str) -> Iterator[str]:
        """The URIs of the objects under `prefix_uri`: `list_objects` without the details."""
        return (info.uri for info in self.list_objects(prefix_uri))

    def contained(self, root_uri: str) -> ObjectStore:
        """This store, writing and deleting only inside the destination `root_uri`: for local folders, a view
        that follows no symlink below it (see LocalStore.contained); object stores have no links, so
        themselves."""
        return self

    def validate_destination(self, uri: str) -> None:
        """Raise StoreError if files cannot be written under `uri` (missing bucket/folder, denied access)."""
        if not self.writable:
            raise StoreError(f"{self.provider} URIs are read-only and cannot be a destination", kind="read_only")

    def presign(self, uri: str, expiration_seconds: int) -> str:
        """A time-limited HTTP(S) URL that reads `uri` without credentials. Computed locally: no network call."""
        raise StoreError(f"cannot generate a presigned URL for {self.provider} URI {uri}", kind="unsupported")

    def presign_many(self, uris: list[str], expiration_seconds: int) -> list[str | BaseException]:
        """`presign` for many URIs at once (a provider that signs remotely batches them); a URI that cannot
        be signed gets its StoreError in its place."""
        out: list[str | BaseException] = []
        for uri in uris:
            try:
                out.append(self.presign(uri, expiration_seconds))
            except StoreError as e:
                out.append(e)
        return out

    def join(self, prefix_uri: str, name: str) -> str:
        """The URI of object `name` under destination prefix `prefix_uri`."""
        return prefix_uri.rstrip("/") + "/" + name.lstrip("/")

    def canonical(self, uri: str) -> str:
        """One spelling per stored object, so a listed URI and a stored one compare equal whatever form each
        was written in (a path or a file:// URL; wasbs/abfss/https for Azure). Raises StoreError on a URI
        this store cannot take apart."""
        return uri

    def local_path(self, uri: str) -> pathlib.Path | None:
        """The file's path when it is directly readable on this machine (no cache needed), else None."""
        return None
