"""Azure Blob Storage: wasb(s)://, abfs(s):// and https://<account>.blob.core.windows.net URIs.

All three URI forms name the same thing, a blob in a container of a storage account, and all are read and
written through the Blob API. `abfs(s)://` names an ADLS Gen2 (hierarchical namespace) account by its `dfs`
host; such accounts also serve the Blob API at their `blob` host, so one client type covers every form (and
Azurite, which only emulates blob, can stand in for all of them).

Settings (``[azure]`` in config.toml or ``AZURE_STORAGE_ACCOUNT_NAME/KEY/URL``) are re-read on every call, so
a changed key or endpoint takes effect without a restart; clients are cached per (endpoint, account, key).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import pathlib
import re
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Any

import requests.adapters
import urllib3.util
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import (
    BlobClient,
    BlobSasPermissions,
    BlobServiceClient,
    ContentSettings,
    ExponentialRetry,
    generate_blob_sas,
)

from pxt_assets.config import Settings, load_settings
from pxt_assets.stores import resources, retry
from pxt_assets.stores.base import (
    ObjectInfo,
    ObjectStore,
    StoreError,
    check_expiration,
    check_page_size,
    content_type_for,
    epoch_seconds,
    folder_prefix,
)

logger = logging.getLogger(__name__)

#: The URI forms this store accepts, shown in every "invalid URI" message.
URI_FORMS = (
    "wasbs://container@account.blob.core.windows.net/prefix/key (or wasb://)",
    "abfss://container@account.dfs.core.windows.net/prefix/key (or abfs://)",
    "https://account.blob.core.windows.net/container/prefix/key",
)

_BLOB_SUFFIX = ".blob.core.windows.net"
_DFS_SUFFIX = ".dfs.core.windows.net"
_HOST_SUFFIX = {"wasb": _BLOB_SUFFIX, "wasbs": _BLOB_SUFFIX, "abfs": _DFS_SUFFIX, "abfss": _DFS_SUFFIX}
# Azure's naming rules: accounts are 3-24 lowercase letters/digits; containers are 3-63 lowercase letters,
# digits and single dashes, starting and ending alphanumeric ($root, $web and $logs are system containers).
_ACCOUNT_RE = re.compile(r"^[a-z0-9]{3,24}$")
_CONTAINER_RE = re.compile(r"^(?:\$root|\$web|\$logs|[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62})$")
# Characters left unescaped when a blob name is written back into a URI: RFC 3986 path characters, so
# `unquote(quote(name)) == name` for every name while ordinary names stay readable.
_PATH_SAFE = "/-._~!$&'()*+,;=:@"

# A SAS start is backdated, so a server whose clock is a little behind still accepts a fresh URL.
_SAS_CLOCK_SKEW = dt.timedelta(minutes=5)
_MAX_CONCURRENCY = 4  # parallel range requests per large blob transfer (callers already run many transfers)
_POOL_SIZE = 64  # connections kept per host: 16 threads x 4 parallel range requests, without churn


@dataclasses.dataclass(frozen=True)
class AzureURI:
    """A parsed Azure URI: where the blob lives, and enough of the original to write URIs in its form."""

    uri: str
    scheme: str  # wasb, wasbs, abfs, abfss or https
    netloc: str  # as given: "container@account.blob.core.windows.net" or "account.blob.core.windows.net"
    account: str
    container: str
    blob: str  # decoded blob name; "" for a container (or a prefix naming the container root)
    sas: str  # a SAS query string carried by an https URI ("" if none); only used for reading

    def with_blob(self, name: str) -> str:
        """The URI of blob `name` in the same container, written in this URI's form."""
        quoted = urllib.parse.quote(name, safe=_PATH_SAFE)
        if self.scheme == "https":
            return f"https://{self.netloc}/{self.container}/{quoted}"
        return f"{self.scheme}://{self.netloc}/{quoted}"


def _invalid(uri: str, why: str) -> StoreError:
    forms = "; ".join(URI_FORMS)
    return StoreError(f"invalid Azure URI {uri!r}: {why}; expected one of: {forms}", kind="invalid")


def parse(uri: str) -> AzureURI:
    """Split an Azure URI into account, container and blob name. Raises StoreError(kind="invalid")."""
    try:
        parsed = urllib.parse.urlsplit(uri)
    except ValueError as e:  # e.g. an unbalanced '[' in the host
        raise _invalid(uri, str(e)) from None
    scheme = parsed.scheme.lower()
    if parsed.fragment or uri.endswith("#"):
        raise _invalid(uri, "'#' is not allowed (percent-encode it as %23 in a blob name)")
    path = urllib.parse.unquote(parsed.path)

    if scheme in _HOST_SUFFIX:
        suffix = _HOST_SUFFIX[scheme]
        if parsed.query:
            raise _invalid(uri, f"{scheme}:// URIs take no query string")
        container, at, host = parsed.netloc.rpartition("@")
        if not at or not container:
            raise _invalid(uri, f"no container (expected {scheme}://container@account{suffix}/...)")
        blob = path[1:] if path.startswith("/") else path
    elif scheme == "https":
        suffix = _BLOB_SUFFIX
        if "@" in parsed.netloc:
            raise _invalid(uri, "https URIs name the container in the path, not before '@'")
        host = parsed.netloc
        container, _, blob = path.lstrip("/").partition("/")
        if not container:
            raise _invalid(uri, "no container (expected https://account.blob.core.windows.net/container/...)")
    else:
        raise _invalid(uri, f"scheme {scheme + '://'!r} is not an Azure scheme")

    host = host.lower()
    if not host.endswith(suffix):
        raise _invalid(uri, f"host {host!r} is not <account>{suffix}")
    account = host[: -len(suffix)]
    if not account:
        raise _invalid(uri, "no storage account")
    if not _ACCOUNT_RE.match(account):
        raise _invalid(uri, f"{account!r} is not a storage account name (3-24 lowercase letters and digits)")
    if not _CONTAINER_RE.match(container):
        raise _invalid(uri, f"{container!r} is not a container name (3-63 lowercase letters, digits, dashes)")
    return AzureURI(uri=uri, scheme=scheme, netloc=parsed.netloc, account=account, container=container,
                    blob=blob, sas=parsed.query if scheme == "https" else "")


def _parse_blob(uri: str) -> AzureURI:
    """parse(), requiring a blob name (a file, not a container or folder)."""
    ref = parse(uri)
    if not ref.blob or ref.blob.endswith("/"):
        raise _invalid(uri, "it names a container or folder, not a blob")
    return ref


def _parse_for_write(uri: str) -> AzureURI:
    """parse(), refusing a SAS query string: writes and listings always use the configured credentials."""
    ref = parse(uri)
    if ref.sas:
        raise _invalid(uri, "a query string (SAS token) is only used for reading a single blob")
    return ref


def _retry_policy() -> ExponentialRetry:
    # The SDK's own retry is one quick one (after about 1 s) for a blip, rewinding a streamed upload body;
    # longer outages and 429s (which the storage policy does not retry) are ridden out by stores/retry.py
    # around each call, within the retry budget, honouring Retry-After.
    return ExponentialRetry(initial_backoff=0, increment_base=1, retry_total=1, random_jitter_range=0.5)


def _transport() -> RequestsTransport:
    # The SDK's default session keeps 10 connections per host; with many threads sharing one client, the rest
    # are opened and thrown away on every request ("Connection pool is full, discarding connection").
    # Otherwise as the SDK sets it up: urllib3's own retries off, since the retry policy above does that.
    try:  # the SDK's adapter reads sockets in 32 KiB blocks (faster downloads); a private module, so optional
        from azure.core.pipeline.transport._bigger_block_size_http_adapters import (
            BiggerBlockSizeHTTPAdapter as Adapter,
        )
    except ImportError:
        Adapter = requests.adapters.HTTPAdapter  # noqa: N806
    session = requests.Session()
    adapter = Adapter(pool_maxsize=_POOL_SIZE,
                      max_retries=urllib3.util.Retry(total=False, redirect=False, raise_on_status=False))
    for scheme in ("http://", "https://"):
        session.mount(scheme, adapter)
    return RequestsTransport(session=session, session_owner=True)  # closed with the client


def _status_of(e: AzureError) -> int | None:
    return getattr(e, "status_code", None)


def _error(e: AzureError, what: str, ref: AzureURI) -> StoreError:
    """A StoreError with a stable kind for an SDK error raised while doing `what` (a phrase with the URI)."""
    status = _status_of(e)
    code = getattr(e, "error_code", None)
    if isinstance(e, ResourceNotFoundError) or status == 404:
        if code == "ContainerNotFound":
            return StoreError(f"Container '{ref.container}' not found in account '{ref.account}' ({what})",
                              kind="not_found")
        return StoreError(f"Azure blob not found: {what}", kind="not_found")
    if isinstance(e, ClientAuthenticationError) or status in (401, 403):
        detail = f" ({code})" if code else ""
        return StoreError(f"access denied{detail} {what}; check AZURE_STORAGE_ACCOUNT_NAME/KEY or the "
                          "identity's role on the account", kind="access_denied")
    retry_after = retry.retry_after_s(getattr(getattr(e, "response", None), "headers", None))
    transient = retry.code_for_status(status)
    if transient:
        detail = f" {code}" if code else ""
        return StoreError(f"Azure error HTTP {status}{detail} {what}", kind=transient, retry_after=retry_after)
    if isinstance(e, ServiceResponseError):  # the connection broke or timed out after the request was sent
        kind = "timeout" if "timed out" in str(e.message).lower() else "unreachable"
        return StoreError(f"no answer from Azure storage {what}: {e.message}", kind=kind)
    if isinstance(e, ServiceRequestError):
        return StoreError(f"cannot reach Azure storage {what}: {e.message}", kind="unreachable")
    if isinstance(e, HttpResponseError):
        detail = f" {code}" if code else ""
        return StoreError(f"Azure error HTTP {status}{detail} {what}", kind="store_error")
    return StoreError(f"Azure error {what}: {e}", kind="store_error")


def _default_credential() -> Any:
    """What AzureBlobStorageDefaultCredential resolves to (DefaultAzureCredential), or None (anonymous)."""
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError:
        return None
    return DefaultAzureCredential()


@dataclasses.dataclass(frozen=True)
class _Endpoint:
    """Where and as whom to reach one account, resolved from the current settings."""

    account: str
    url: str  # blob service: https://acct.blob.core.windows.net, or e.g. Azurite's http://127.0.0.1:N/acct
    key: str | None = dataclasses.field(repr=False)  # the account key, when configured for this account
    # another credential from an AzureBlobStorageResource (a SAS token, DefaultAzureCredential), or None
    credential: Any = dataclasses.field(default=None, repr=False, compare=False)
    anonymous: bool = False  # the resource says so

    def blob_url(self, ref: AzureURI) -> str:
        return f"{self.url}/{ref.container}/{urllib.parse.quote(ref.blob, safe=_PATH_SAFE)}"


def _account_of(account_url: str) -> str:
    """The account an account URL names: `https://acct.blob.core.windows.net` or `http://host:port/acct`
    (Azurite, path-style)."""
    parts = urllib.parse.urlsplit(account_url)
    host = (parts.hostname or "").lower()
    if host.endswith(_BLOB_SUFFIX):
        return host[: -len(_BLOB_SUFFIX)]
    return parts.path.strip("/").split("/", 1)[0].lower()


def _endpoint(account: str, settings: Settings) -> _Endpoint:
    # The configured URL and key belong to the configured account; with no account name configured they
    # apply to whatever account a URI names (a single-account setup, or Azurite).
    configured = settings.azure_storage_account_name
    ours = configured is None or configured.lower() == account
    url = (settings.azure_storage_account_url if ours else None) or f"https://{account}{_BLOB_SUFFIX}"
    key = settings.azure_storage_account_key if ours else None
    return _Endpoint(account=account, url=url.rstrip("/"), key=key)


class AzureStore(ObjectStore):
    """Blobs in Azure Storage (and ADLS Gen2 through its Blob API), one instance shared by all threads."""

    provider = "azure"
    writable = True
    remote = True
    #: blobs per listing page (the service maximum); a test lowers it to exercise paging
    list_page_size: int = 5000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str, str | None], BlobServiceClient] = {}

    # -- clients -------------------------------------------------------------------------------------------

    def _resolve(self, ref: AzureURI) -> _Endpoint:
        resource = resources.get("azure")  # pxt.definitions(resources={"azure_blob": AzureBlobStorage...})
        if resource is not None and _account_of(resource.account_url) == ref.account:
            kind = resource.credential.credential_type
            raw = resource._raw_credential()
            return _Endpoint(account=ref.account, url=resource.account_url.rstrip("/"),
                             key=raw if kind == "key" else None, credential=raw if kind != "key" else None,
                             anonymous=kind == "anonymous")
        return _endpoint(ref.account, load_settings())

    def _service(self, ep: _Endpoint) -> BlobServiceClient:
        """The cached client for this endpoint and key, created on first use (thread-safe)."""
        cache_key = (ep.url, ep.account, ep.key, id(ep.credential), ep.anonymous)
        client = self._clients.get(cache_key)
        if client is not None:
            return client
        with self._lock:
            client = self._clients.get(cache_key)
            if client is None:
                client = self._clients[cache_key] = self._new_client(ep)
        return client

    def _new_client(self, ep: _Endpoint) -> BlobServiceClient:
        # Built as dagster_azure's AzureBlobStorageResource.get_client() builds it: BlobServiceClient with
        # the account URL and a key / DefaultAzureCredential / anonymous credential. Built directly, because
        # get_client() passes no client options (so neither the retry policy nor the transport below could be
        # set), and it is a context manager closing the client on exit, while this store keeps its clients
        # for the life of the process.
        if ep.credential is not None or ep.anonymous:  # from a resource: its SAS token or token credential
            credential, how = ep.credential, "the resource's credential"
        elif ep.key:
            # An explicit account name, not the bare key the resource passes: the SDK can only infer the name
            # from *.blob.core.windows.net or localhost URLs, not from a private endpoint's custom host.
            credential: Any = {"account_name": ep.account, "account_key": ep.key}
            how = "account key"
        elif ep.url.startswith("https://"):
            credential = _default_credential()
            how = "DefaultAzureCredential" if credential is not None else "anonymous"
        else:
            credential, how = None, "anonymous"  # token credentials need https (an emulator without a key)
        logger.debug("new Azure blob client for %s (account %s, %s)", ep.url, ep.account, how)
        return BlobServiceClient(account_url=ep.url, credential=credential, retry_policy=_retry_policy(),
                                 transport=_transport())

    def _blob(self, ref: AzureURI) -> tuple[BlobClient, bool]:
        """A client for the blob (True when it is a one-off client for a SAS URL, which the caller closes)."""
        ep = self._resolve(ref)
        if ref.sas:
            # An https URL carrying its own SAS (e.g. a presigned URL used as input media): read with that
            # token, whatever credentials are configured, at the endpoint the account resolves to.
            url = f"{ep.blob_url(ref)}?{ref.sas}"
            return BlobClient.from_blob_url(url, retry_policy=_retry_policy()), True
        return self._service(ep).get_blob_client(ref.container, ref.blob), False

    def close(self) -> None:
        """Close every cached client (their HTTP sessions); the store creates new ones if used again."""
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    # -- ObjectStore -----------------------------------------------------------------------------------

    def _read(self, uri: str, doing: str, fn: Any) -> Any:
        """`fn(blob client)` for the blob at `uri`, retried on transient failures: Azure errors become
        StoreErrors ("<doing> <uri>: ..."), and a one-off client (a SAS URL) is closed afterwards."""
        ref = _parse_blob(uri)

        def attempt() -> Any:
            blob, one_off = self._blob(ref)
            try:
                return fn(blob)
            except AzureError as e:
                raise _error(e, f"{doing} {uri}", ref) from None
            finally:
                if one_off:
                    blob.close()

        return retry.call(attempt)

    def download(self, uri: str, dest: pathlib.Path) -> None:
        """Stream the blob at `uri` into the local file `dest` (4 parallel range reads for a large blob)."""
        def fetch(blob: BlobClient) -> int:
            # download_blob() makes the first request, so a missing blob fails before `dest` is touched.
            downloader = blob.download_blob(max_concurrency=_MAX_CONCURRENCY)
            try:
                with open(dest, "wb") as f:
                    return downloader.readinto(f)
            except BaseException:
                pathlib.Path(dest).unlink(missing_ok=True)  # no truncated file left looking like a download
                raise

        size = self._read(uri, "reading", fetch)
        logger.debug("downloaded %s (%d bytes) to %s", uri, size, dest)

    def upload(self, src: pathlib.Path, uri: str, *, content_type: str | None = None) -> None:
        """Store the local file `src` at `uri`, replacing any blob there, streamed from the file.

        Large files go up as blocks committed in one final call, so readers see the old blob or the new one,
        never a mix. `content_type` defaults to one guessed from the blob name.
        """
        ref = self._writable_blob(uri)

        def put() -> None:  # the file is opened per attempt, so a retry sends it from its start
            with open(src, "rb") as f:
                self._put(ref, uri, f, os.fstat(f.fileno()).st_size, content_type)

        retry.call(put)
        logger.debug("uploaded %s to %s", src, uri)

    def write_bytes(self, data: bytes, uri: str, *, content_type: str | None = None) -> None:
        """Store `data` at `uri`, replacing any blob there (as `upload`, without a file)."""
        ref = self._writable_blob(uri)
        retry.call(lambda: self._put(ref, uri, data, len(data), content_type))

    @staticmethod
    def _writable_blob(uri: str) -> AzureURI:
        ref = _parse_for_write(uri)
        if not ref.blob or ref.blob.endswith("/"):
            raise _invalid(uri, "it names a container or folder, not a blob")
        return ref

    def _put(self, ref: AzureURI, uri: str, body: Any, length: int, content_type: str | None) -> None:
        blob, _ = self._blob(ref)
        settings = ContentSettings(content_type=content_type or content_type_for(ref.blob))
        try:
            blob.upload_blob(body, length=length, overwrite=True, content_settings=settings,
                             max_concurrency=_MAX_CONCURRENCY)
        except AzureError as e:
            raise _error(e, f"writing {uri}", ref) from None

    def read_bytes(self, uri: str) -> bytes:
        return self._read(uri, "reading", lambda blob: blob.download_blob(max_concurrency=_MAX_CONCURRENCY).readall())

    def exists(self, uri: str) -> bool:
        """Whether a blob exists at `uri` (False also when its container does not exist)."""
        return self._read(uri, "checking", lambda blob: blob.exists())

    def stat(self, uri: str) -> ObjectInfo | None:
        def props(blob: BlobClient) -> ObjectInfo | None:
            try:
                p = blob.get_blob_properties()
            except ResourceNotFoundError:
                return None
            return ObjectInfo(uri=uri, mtime=epoch_seconds(p.last_modified), size=int(p.size or 0), etag=p.etag)

        return self._read(uri, "checking", props)

    def delete(self, uri: str) -> None:
        """Delete the blob at `uri` with its snapshots; a blob that is already gone is not an error."""
        ref = _parse_for_write(uri)
        if not ref.blob or ref.blob.endswith("/"):
            raise _invalid(uri, "it names a container or folder, not a blob")
        blob, _ = self._blob(ref)

        def delete() -> None:
            try:
                # "include": a blob with snapshots cannot be deleted alone (409 SnapshotsPresent).
                blob.delete_blob(delete_snapshots="include")
            except ResourceNotFoundError:
                logger.debug("delete %s: already absent", uri)
            except AzureError as e:
                raise _error(e, f"deleting {uri}", ref) from None

        retry.call(delete)

    def list_objects(self, prefix_uri: str, *, page_size: int | None = None) -> Iterator[ObjectInfo]:
        """Blobs under the folder `prefix_uri`, with URIs in the same form (wasbs/abfss/https) as given.

        A prefix is a folder: `.../dir` lists `dir/a.jpg` but not `dirx/b.jpg`. Pages of `page_size` blobs
        (default `list_page_size`) are fetched lazily. ADLS Gen2 directory markers are skipped.
        """
        check_page_size(page_size)
        # Parsed here, not in the generator, so a malformed URI fails at the call rather than at first use.
        ref = _parse_for_write(prefix_uri)
        container = self._service(self._resolve(ref)).get_container_client(ref.container)
        return self._iter_blobs(container, ref, folder_prefix(ref.blob), prefix_uri,
                                page_size or self.list_page_size)

    def _iter_blobs(self, container: Any, ref: AzureURI, prefix: str, prefix_uri: str,
                    page_size: int) -> Iterator[ObjectInfo]:
        # A page at a time with its continuation token, each page one retried request: an outage in the
        # middle of a long listing resumes at the page that failed.
        token: str | None = None
        while True:
            def fetch_page(token: str | None = token) -> tuple[list[Any], str | None]:
                try:
                    # metadata is included to skip ADLS Gen2 directory markers (hdi_isfolder), not files.
                    pages = container.list_blobs(name_starts_with=prefix or None, include=["metadata"],
                                                 results_per_page=page_size).by_page(continuation_token=token)
                    page = list(next(pages, []))
                    return page, pages.continuation_token
                except AzureError as e:
                    raise _error(e, f"listing {prefix_uri}", ref) from None

            items, token = retry.call(fetch_page)
            for item in items:
                if (item.metadata or {}).get("hdi_isfolder") == "true":
                    continue
                yield ObjectInfo(uri=ref.with_blob(item.name), mtime=epoch_seconds(item.last_modified),
                                 size=int(item.size))
            if not token:
                return

    def validate_destination(self, uri: str) -> None:
        """Check that the container of `uri` exists and is reachable with the configured credentials.

        Reads the container's properties only: nothing is written.
        """
        ref = _parse_for_write(uri)
        container = self._service(self._resolve(ref)).get_container_client(ref.container)

        def check() -> None:
            try:
                container.get_container_properties()
            except AzureError as e:
                error = _error(e, f"checking destination {uri}", ref)
                if error.retryable:
                    raise error from None
                raise

        try:
            retry.call(check)
        except AzureError as e:
            status = _status_of(e)
            if isinstance(e, ResourceNotFoundError) or status == 404:
                raise StoreError(f"Container '{ref.container}' not found in account '{ref.account}'",
                                 kind="not_found") from None
            if isinstance(e, ClientAuthenticationError) or status in (401, 403):
                raise StoreError(f"Access denied to container '{ref.container}'",
                                 kind="access_denied") from None
            raise _error(e, f"checking destination {uri}", ref) from None

    def canonical(self, uri: str) -> str:
        ref = parse(uri)
        return f"azure:{ref.account}/{ref.container}/{ref.blob}"

    def presign(self, uri: str, expiration_seconds: int) -> str:
        """A read-only SAS URL for the blob, valid for `expiration_seconds` (1 s to 7 days).

        Signed locally with the account key (no network call). The URL points at the account URL in use,
        so with Azurite or a private endpoint it is that host.
        """
        ref = _parse_blob(uri)
        check_expiration(expiration_seconds)
        ep = self._resolve(ref)
        if not ep.key:
            raise StoreError(
                f"cannot presign {uri}: no account key for storage account '{ref.account}'. Set "
                f"AZURE_STORAGE_ACCOUNT_KEY (with AZURE_STORAGE_ACCOUNT_NAME={ref.account}) or "
                "storage_account_key in [azure] of config.toml; user-delegation SAS (signing as an Entra ID "
                "identity) is not supported",
                kind="no_signing_credentials")
        now = dt.datetime.now(dt.timezone.utc)
        sas = generate_blob_sas(
            account_name=ref.account, container_name=ref.container, blob_name=ref.blob, account_key=ep.key,
            permission=BlobSasPermissions(read=True),
            expiry=now + dt.timedelta(seconds=expiration_seconds), start=now - _SAS_CLOCK_SKEW,
            # https-only on real endpoints; an emulator at http:// must still be able to serve it
            protocol="https" if ep.url.startswith("https://") else None,
        )
        logger.debug("presigned %s for %s s", uri, expiration_seconds)
        return f"{ep.blob_url(ref)}?{sas}"

    def join(self, prefix_uri: str, name: str) -> str:
        """The URI of blob `name` under `prefix_uri`: exactly one '/' between them, `name` percent-encoded."""
        return prefix_uri.rstrip("/") + "/" + urllib.parse.quote(name.lstrip("/"), safe=_PATH_SAFE)
