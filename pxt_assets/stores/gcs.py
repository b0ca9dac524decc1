"""Google Cloud Storage: gs://bucket/key.

Data clients come from Dagster's GCP integration (`dagster_gcp.GCSResource`), built once per (project,
emulator host) and shared by all threads. With `STORAGE_EMULATOR_HOST` set, google-cloud-storage itself
points the client at the emulator and uses anonymous credentials. Every call goes through the SDK's
`DEFAULT_RETRY` cut to a few seconds (quick retries of blips), inside stores/retry.py's loop, which rides out
longer outages within the retry budget and honours Retry-After.

Presigned URLs are V4 signed URLs computed locally with a service-account key: the signing credentials are
kept apart from the data client (see `GcsStore.presign`).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import pathlib
import re
import threading
from collections.abc import Iterator
from typing import Any

import google.auth
import google.auth.exceptions
import requests.exceptions
from google.api_core import exceptions as api_exceptions
from google.cloud import storage
from google.cloud.storage.exceptions import InvalidResponse
from google.cloud.storage.retry import DEFAULT_RETRY as _SDK_DEFAULT_RETRY
from google.oauth2 import service_account

from pxt_assets.stores import resources, retry
from pxt_assets.stores.base import (
    ObjectInfo,
    ObjectStore,
    StoreError,
    bucket_error,
    check_expiration,
    check_page_size,
    content_type_for,
    epoch_seconds,
    folder_prefix,
)

log = logging.getLogger(__name__)

_SCHEME = "gs://"
# GCS bucket names: lowercase letters, digits, '-', '_' and '.', starting and ending with a letter or digit;
# 3-63 characters, or up to 222 when made of dot-separated parts of at most 63.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_DEFAULT_ENDPOINT = "https://storage.googleapis.com"
# A partial response for listings: just what ObjectInfo needs, and the token of the next page.
_LIST_FIELDS = "items(name,size,updated),nextPageToken"
# The SDK's own retries stop after a few seconds; stores/retry.py retries on within the budget.
DEFAULT_RETRY = _SDK_DEFAULT_RETRY.with_timeout(4.0)
_KEY_HINT = "set GOOGLE_APPLICATION_CREDENTIALS to the path of a service-account key file (JSON)"


def parse(uri: str, *, object_required: bool = True) -> tuple[str, str]:
    """Split `gs://bucket/key` into (bucket, key); a malformed URI raises StoreError(kind='invalid').

    The key is taken verbatim: '?' and '#' are legal in object names, so the URI is not run through urlparse.
    With `object_required`, the URI must name an object (a non-empty key not ending in '/').
    """
    if not isinstance(uri, str) or uri[: len(_SCHEME)].lower() != _SCHEME:
        raise StoreError(f"{uri!r} is not a GCS URI: expected gs://bucket/key", kind="invalid")
    bucket, _, key = uri[len(_SCHEME):].partition("/")
    if not bucket:
        raise StoreError(f"invalid GCS URI {uri!r}: no bucket name; expected gs://bucket/key", kind="invalid")
    too_long = len(bucket) > 63 and (len(bucket) > 222 or any(len(p) > 63 for p in bucket.split(".")))
    if not _BUCKET.match(bucket) or too_long:
        raise StoreError(f"invalid bucket name {bucket!r} in GCS URI {uri!r}", kind="invalid")
    if object_required and (not key or key.endswith("/")):
        raise StoreError(f"GCS URI {uri!r} does not name an object: expected gs://bucket/key", kind="invalid")
    return bucket, key


def _emulator_host() -> str | None:
    return os.environ.get("STORAGE_EMULATOR_HOST") or None


def _store_error(what: str, uri: str, e: BaseException) -> StoreError | None:
    """The StoreError for an SDK exception (None for one that is not about the request)."""
    if isinstance(e, api_exceptions.RetryError) and e.cause is not None:
        return _store_error(what, uri, e.cause)  # the SDK's quick retries ran out: what failed last
    if isinstance(e, InvalidResponse):  # a download or resumable upload's unexpected status
        response = getattr(e, "response", None)
        status = getattr(response, "status_code", None)
        error = api_exceptions.from_http_status(status, f"HTTP {status}", response=response) if status else None
        return (_store_error(what, uri, error) if error is not None
                else StoreError(f"{what} {uri}: {e}", kind="store_error"))
    if isinstance(e, api_exceptions.NotFound):
        return StoreError(f"{what} {uri}: not found", kind="not_found")
    if isinstance(e, (api_exceptions.Forbidden, api_exceptions.Unauthorized)):
        return StoreError(f"{what} {uri}: access denied ({e.message})", kind="access_denied")
    if isinstance(e, api_exceptions.BadRequest):
        return StoreError(f"{what} {uri}: rejected as invalid ({e.message})", kind="invalid")
    if isinstance(e, api_exceptions.GoogleAPICallError):
        response = getattr(e, "response", None)
        return StoreError(f"{what} {uri}: {e}", kind=retry.code_for_status(e.code) or "store_error",
                          retry_after=retry.retry_after_s(getattr(response, "headers", None)))
    if isinstance(e, google.auth.exceptions.DefaultCredentialsError):
        return StoreError(f"{what} {uri}: no Google Cloud credentials found ({e}); {_KEY_HINT}, or run "
                          "`gcloud auth application-default login`", kind="access_denied")
    if isinstance(e, google.auth.exceptions.RefreshError):
        return StoreError(f"{what} {uri}: Google Cloud credentials rejected ({e})", kind="access_denied")
    if isinstance(e, requests.exceptions.Timeout):
        return StoreError(f"{what} {uri}: timed out ({e})", kind="timeout")
    if isinstance(e, (api_exceptions.RetryError, google.auth.exceptions.TransportError,
                      requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError,
                      ConnectionError)):
        return StoreError(f"{what} {uri}: cannot reach Google Cloud Storage ({e})", kind="unreachable")
    return None


@contextlib.contextmanager
def _translated(what: str, uri: str) -> Iterator[None]:
    """Turn SDK exceptions into StoreErrors with a stable code and a message naming the URI."""
    try:
        yield
    except (api_exceptions.GoogleAPICallError, api_exceptions.RetryError, google.auth.exceptions.GoogleAuthError,
            requests.exceptions.RequestException, ConnectionError, InvalidResponse) as e:
        error = _store_error(what, uri, e)
        if error is None:
            raise
        raise error from None


def _call(what: str, uri: str, fn: Any) -> Any:
    """`fn()` with its SDK errors translated, retried on transient ones within the retry budget."""
    def attempt() -> Any:
        with _translated(what, uri):
            return fn()

    return retry.call(attempt)


class GcsStore(ObjectStore):
    """gs://bucket/key objects, through google-cloud-storage clients shared by all threads."""

    provider = "gcs"
    writable = True
    remote = True

    def __init__(self) -> None:
        self._clients: dict[tuple[str | None, str | None, int], storage.Client] = {}
        self._clients_lock = threading.Lock()
        # Keyed by where credentials come from; a failure is cached too (as its message), so a batch of
        # presigns without a key does not probe the metadata server once per row.
        self._signers: dict[tuple[str | None, str | None], service_account.Credentials | str] = {}
        self._signers_lock = threading.Lock()
        self._url_client: storage.Client | None = None

    # -- clients ----------------------------------------------------------------------------------------
    def client(self) -> storage.Client:
        """The data client for the current project and emulator setting (created once, then shared)."""
        resource = resources.get("gcs")  # pxt.definitions(resources={"gcs": GCSResource(...)})
        key = (os.environ.get("GOOGLE_CLOUD_PROJECT") or None, _emulator_host(), id(resource))
        client = self._clients.get(key)
        if client is None:
            with self._clients_lock:
                client = self._clients.get(key)
                if client is None:
                    from dagster_gcp import GCSResource  # heavy import (BigQuery etc.): only when needed

                    # Credentials are left to the SDK: Application Default Credentials normally, anonymous
                    # when STORAGE_EMULATOR_HOST is set. Never the signing key (see presign). Callers create
                    # the client inside their _translated block, so a missing credential names their URI.
                    client = (resource or GCSResource(project=key[0])).get_client()
                    self._clients[key] = client
                    log.debug("GCS client for project=%s emulator=%s", key[0], key[1])
        return client

    def _blob(self, bucket: str, key: str) -> storage.Blob:
        # Bucket and Blob objects are cheap local handles (no request); a fresh pair per call keeps
        # threads from sharing their mutable metadata.
        return self.client().bucket(bucket).blob(key)

    # -- ObjectStore ------------------------------------------------------------------------------------
    def download(self, uri: str, dest: pathlib.Path) -> None:
        """Stream the object at `uri` into the local file `dest`."""
        bucket, key = parse(uri)
        log.debug("GCS download %s -> %s", uri, dest)
        try:
            _call("cannot download", uri,
                  lambda: self._blob(bucket, key).download_to_filename(str(dest), retry=DEFAULT_RETRY))
        except BaseException:
            # A truncated file must not pass for a complete copy.
            pathlib.Path(dest).unlink(missing_ok=True)
            raise

    def upload(self, src: pathlib.Path, uri: str, *, content_type: str | None = None) -> None:
        """Store the local file `src` at `uri` (GCS replaces an object atomically)."""
        bucket, key = parse(uri)
        content_type = content_type or content_type_for(uri)
        log.debug("GCS upload %s -> %s (%s)", src, uri, content_type)
        # Retrying an upload without if_generation_match is safe here: object names are deterministic, so a
        # repeated upload writes the same bytes to the same name.
        _call("cannot upload to", uri, lambda: self._blob(bucket, key).upload_from_filename(
            str(src), content_type=content_type, retry=DEFAULT_RETRY))

    def read_bytes(self, uri: str) -> bytes:
        bucket, key = parse(uri)
        return _call("cannot download", uri, lambda: self._blob(bucket, key).download_as_bytes(retry=DEFAULT_RETRY))

    def write_bytes(self, data: bytes, uri: str, *, content_type: str | None = None) -> None:
        bucket, key = parse(uri)
        # Safe to retry for the same reason as upload(): deterministic names, same bytes.
        _call("cannot upload to", uri, lambda: self._blob(bucket, key).upload_from_string(
            data, content_type=content_type or content_type_for(uri), retry=DEFAULT_RETRY))

    def exists(self, uri: str) -> bool:
        """Whether an object is stored at `uri` (False also when the bucket does not exist)."""
        bucket, key = parse(uri)
        return _call("cannot check", uri, lambda: self._blob(bucket, key).exists(retry=DEFAULT_RETRY))

    def stat(self, uri: str) -> ObjectInfo | None:
        bucket, key = parse(uri)
        blob = _call("cannot check", uri, lambda: self.client().bucket(bucket).get_blob(key, retry=DEFAULT_RETRY))
        if blob is None:
            return None
        return ObjectInfo(uri=uri, mtime=epoch_seconds(blob.updated), size=int(blob.size or 0), etag=blob.etag)

    def delete(self, uri: str) -> None:
        """Delete the object at `uri`; deleting a missing object is not an error."""
        bucket, key = parse(uri)
        log.debug("GCS delete %s", uri)
        def delete() -> None:
            try:
                self._blob(bucket, key).delete(retry=DEFAULT_RETRY)
            except api_exceptions.NotFound:
                pass

        _call("cannot delete", uri, delete)

    def list_objects(self, prefix_uri: str, *, page_size: int | None = None) -> Iterator[ObjectInfo]:
        """Objects under the folder `prefix_uri`, fetched a page (`page_size` objects) at a time.

        A prefix is a folder: `gs://b/dir` lists `gs://b/dir/...`, never a sibling such as `gs://b/dir2/x`.
        Zero-byte folder placeholders (names ending in '/', made by the console) are not files: skipped.
        `mtime` is the object's `updated` time (microseconds).
        """
        check_page_size(page_size)
        bucket, key = parse(prefix_uri, object_required=False)
        return self._iter_blobs(bucket, folder_prefix(key), prefix_uri, page_size)

    def _iter_blobs(self, bucket: str, prefix: str, prefix_uri: str,
                    page_size: int | None) -> Iterator[ObjectInfo]:
        log.debug("GCS list gs://%s/%s (page size %s)", bucket, prefix, page_size)
        try:
            # A page at a time with its token, each page one retried request: an outage in the middle of a
            # long listing resumes at the page that failed.
            token: str | None = None
            while True:
                def fetch_page(token: str | None = token) -> tuple[list[Any], str | None]:
                    blobs = self.client().list_blobs(bucket, prefix=prefix, page_size=page_size, page_token=token,
                                                     fields=_LIST_FIELDS, retry=DEFAULT_RETRY)
                    page = next(blobs.pages, None)
                    return (list(page) if page is not None else []), blobs.next_page_token

                items, token = _call("cannot list", prefix_uri, fetch_page)
                for blob in items:
                    if not blob.name.endswith("/"):
                        yield ObjectInfo(uri=f"{_SCHEME}{bucket}/{blob.name}",
                                         mtime=epoch_seconds(blob.updated), size=int(blob.size))
                if not token:
                    return
        except StoreError as e:
            if e.kind == "not_found":  # a missing prefix lists nothing: only the bucket can be missing
                raise StoreError(f"cannot list {prefix_uri}: bucket '{bucket}' not found",
                                 kind="not_found") from None
            raise

    def validate_destination(self, uri: str) -> None:
        """Check that the bucket of `uri` exists and is reachable with our credentials; writes nothing."""
        bucket, _ = parse(uri, object_required=False)
        log.debug("GCS validate destination %s", uri)
        try:
            _call("cannot use destination", uri, lambda: self.client().get_bucket(bucket, retry=DEFAULT_RETRY))
        except StoreError as e:
            raise bucket_error(e, bucket) from None

    def canonical(self, uri: str) -> str:
        bucket, key = parse(uri, object_required=False)
        return f"gs:{bucket}/{key}"

    def presign(self, uri: str, expiration_seconds: int) -> str:
        """A V4 signed GET URL for `uri`, valid `expiration_seconds` (1 s to 7 days), computed locally.

        Signing needs a service-account private key (GOOGLE_APPLICATION_CREDENTIALS, or Application Default
        Credentials that are a service-account key); without one this raises kind 'no_signing_credentials'.
        With STORAGE_EMULATOR_HOST set, the URL points at the emulator.
        """
        bucket, key = parse(uri)
        check_expiration(expiration_seconds)
        credentials = self._signing_credentials(uri)
        # Always explicit: the URL follows the environment now, not whatever it was when a client was made.
        endpoint = _emulator_host() or _DEFAULT_ENDPOINT
        if "://" not in endpoint:  # STORAGE_EMULATOR_HOST is meant to include the scheme, but is often bare
            endpoint = "http://" + endpoint
        blob = self._signing_url_client().bucket(bucket).blob(key)
        url = blob.generate_signed_url(
            version="v4",
            # GCS counts whole seconds; a fractional part would be dropped by the SDK anyway.
            expiration=datetime.timedelta(seconds=int(expiration_seconds)),
            method="GET",
            credentials=credentials,
            api_access_endpoint=endpoint,
        )
        log.debug("GCS presigned %s for %d s", uri, int(expiration_seconds))
        return url

    def join(self, prefix_uri: str, name: str) -> str:
        """The URI of object `name` under the folder `prefix_uri`, with exactly one '/' between them."""
        bucket, key = parse(prefix_uri, object_required=False)
        folder = key.rstrip("/")
        return f"{_SCHEME}{bucket}/" + (folder + "/" if folder else "") + name.lstrip("/")

    # -- signing ----------------------------------------------------------------------------------------
    def _signing_url_client(self) -> storage.Client:
        # generate_signed_url needs a client only for its universe domain. An anonymous one costs no
        # credential lookup or request, and keeps the signing key and the data client strictly apart:
        # a data client given a (test) key would try to fetch OAuth tokens with it and hang.
        client = self._url_client
        if client is None:
            with self._signers_lock:
                if self._url_client is None:
                    self._url_client = storage.Client.create_anonymous_client()
                client = self._url_client
        return client

    def _signing_credentials(self, uri: str) -> service_account.Credentials:
        """Service-account credentials that can sign locally, loaded once per credentials source."""
        source = (os.environ.get("GOOGLE_APPLICATION_CREDENTIALS") or None,
                  os.environ.get("CLOUDSDK_CONFIG") or None)
        with self._signers_lock:
            found = self._signers.get(source)
            if found is None:
                found = self._signers[source] = _load_signing_credentials(source[0])
        if isinstance(found, str):
            raise StoreError(f"cannot presign {uri}: {found}", kind="no_signing_credentials")
        return found


def _can_sign_locally(credentials: Any) -> bool:
    # Only a service-account key signs without a request: impersonated or Compute Engine credentials
    # have sign_bytes too, but it calls the IAM API.
    return (isinstance(credentials, service_account.Credentials)
            and hasattr(credentials, "sign_bytes")
            and bool(getattr(credentials, "service_account_email", None)))


def _load_signing_credentials(key_file: str | None) -> service_account.Credentials | str:
    """Signing credentials from GOOGLE_APPLICATION_CREDENTIALS or ADC, or why there are none."""
    if key_file:
        try:
            credentials = service_account.Credentials.from_service_account_file(key_file)
        except OSError as e:
            return f"GOOGLE_APPLICATION_CREDENTIALS={key_file!r} cannot be read ({e.strerror}); {_KEY_HINT}"
        except (ValueError, KeyError) as e:
            # Another credential type (authorized_user, external_account, ...): none of them signs locally,
            # and google.auth.default() would only load this same file.
            return (f"GOOGLE_APPLICATION_CREDENTIALS={key_file!r} is not a service-account key ({e}); "
                    f"{_KEY_HINT}")
        log.debug("GCS signing key %s for %s", key_file, credentials.service_account_email)
        return credentials
    try:
        credentials, _ = google.auth.default()
    except google.auth.exceptions.DefaultCredentialsError:
        return f"no Google Cloud credentials that can sign URLs were found; {_KEY_HINT}"
    if not _can_sign_locally(credentials):
        return (f"the Application Default Credentials ({type(credentials).__module__}."
                f"{type(credentials).__name__}) cannot sign URLs; {_KEY_HINT}")
    log.debug("GCS signing key from Application Default Credentials: %s", credentials.service_account_email)
    return credentials
