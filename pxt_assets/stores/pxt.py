"""Pixeltable Cloud's home bucket: `pxt://<org>:<db>/buckets/home[/key]` (legacy `pxtfs://<org>:<db>/home[/key]`).

No bucket to create and no credentials file: the API key (`[pixeltable] api_key` / `PIXELTABLE_API_KEY`)
asks the control plane (`PIXELTABLE_API_URL`, Pixeltable's own by default) for temporary credentials to an
S3-compatible bucket (`get_bucket_credentials`: endpoint, physical bucket, keys, TTL, quota state). Files are
then read and written through the S3 store's code with a client of their own, whose botocore
`RefreshableCredentials` ask again before the keys expire, in whatever process holds them (a sensor, a
worker, a notebook left open). URIs stay logical: `.fileurl` shows `pxt://...`, never the physical bucket.

Presigned URLs come from the control plane (`get_presigned_urls`, at most 100 keys a call, batched across
rows by `net.presigned_url`): they are never signed locally with the temporary keys, whose TTL would cut
the URL's life short. A quota refusal (`no_space_left`, or the control plane's STORE_FULL / PLAN_LIMIT /
PAYMENT_REQUIRED) refuses writes with the control plane's words; reads and deletes keep working.

The wire protocol is Pixeltable 0.7.21's (`pixeltable/service/pxtfs_protocol.py`, `utils/cloud_utils.py`).
"""

from __future__ import annotations

import datetime as dt
import http.client
import logging
import re
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.config
import botocore.credentials
import botocore.session
import requests

from pxt_assets.config import current_settings
from pxt_assets.redaction import register_secret
from pxt_assets.stores import retry
from pxt_assets.stores.base import StoreError, check_expiration
from pxt_assets.stores.s3 import S3Location, S3Store

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://internal-api.pixeltable.com"
MAX_PRESIGN_KEYS = 100  # keys per get_presigned_urls call: the control plane's limit
QUOTA_RECHECK_S = 60.0  # how often a write refused for lack of space asks about the quota again
_TIMEOUT_S = 30  # a control plane starting cold takes 17-19 s to answer
_USER_ACTION_CODES = frozenset({"STORE_FULL", "PLAN_LIMIT", "PAYMENT_REQUIRED"})
_KEY_HINT = "set [pixeltable] api_key in config.toml or the PIXELTABLE_API_KEY environment variable"

_URI = re.compile(r"^pxt://(?P<org>[^/:?#]+):(?P<db>[^/?#]+)/buckets/(?P<bucket>[^/?#]+)(?:/(?P<key>.*))?$")
_LEGACY = re.compile(r"^pxtfs://(?P<org>[^/:?#]+):(?P<db>[^/?#]+)/(?P<bucket>[^/?#]+)(?:/(?P<key>.*))?$")


class LegacyURIWarning(FutureWarning):
    """A `pxtfs://` URI: accepted, stored in the `pxt://` form."""


def logical_uri(uri: str) -> str:
    """The `pxt://org:db/buckets/<bucket>/key` form of a home-bucket URI; a legacy `pxtfs://` one is accepted
    with a deprecation warning."""
    if uri.startswith("pxtfs://"):
        m = _LEGACY.match(uri)
        if m is None:
            raise StoreError(f"invalid Pixeltable Cloud URI {uri!r}: expected pxt://<org>:<db>/buckets/home/...",
                             kind="invalid")
        new = f"pxt://{m['org']}:{m['db']}/buckets/{m['bucket']}/{m['key'] or ''}"
        warnings.warn(f"{uri!r}: pxtfs:// is deprecated; stored as {new!r}", LegacyURIWarning, stacklevel=3)
        return new
    return uri


@dataclass(frozen=True)
class HomeRef:
    org: str
    db: str
    bucket: str
    key: str

    @property
    def base(self) -> str:
        return f"pxt://{self.org}:{self.db}/buckets/"


def parse_home(uri: str) -> HomeRef:
    m = _URI.match(logical_uri(uri))
    if m is None:
        raise StoreError(f"invalid Pixeltable Cloud URI {uri!r}: expected pxt://<org>:<db>/buckets/home[/prefix/]",
                         kind="invalid")
    return HomeRef(m["org"], m["db"], m["bucket"], m["key"] or "")


# -- the control plane ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Account:
    """Who asks and where: the key, where it came from (named in auth errors, never the key), the URL."""

    key: str = field(repr=False)
    source: str
    url: str


def _account(uri: str) -> _Account:
    settings = current_settings()
    if not settings.api_key:
        raise StoreError(f"{uri} needs a Pixeltable API key: {_KEY_HINT}", kind="access_denied")
    source = settings.sources.get("api_key", "api_key")
    source = ("the PIXELTABLE_API_KEY environment variable" if "PIXELTABLE_API_KEY" in source
              else f"api_key in {settings.config_path}" if str(settings.config_path) in source else source)
    return _Account(settings.api_key, source, settings.api_url or DEFAULT_API_URL)


def _reason(resp: requests.Response) -> str:
    phrase = http.client.responses.get(resp.status_code, "")
    text = resp.text.strip()
    _, sep, written = text.partition(" : ")  # the control plane's error body: '<status phrase> : <details>'
    return (written.strip() if sep else text.removeprefix(phrase).strip(" :")) or phrase or f"HTTP {resp.status_code}"


def _post(account: _Account, body: dict[str, Any], doing: str) -> dict[str, Any]:
    """One control-plane operation, retried on transient failures within the retry budget."""
    def attempt() -> dict[str, Any]:
        try:
            resp = requests.post(account.url, json=body, headers={"X-api-key": account.key}, timeout=_TIMEOUT_S)
        except requests.exceptions.Timeout as e:
            raise StoreError(f"Pixeltable Cloud did not answer in time ({doing}): {e}", kind="timeout") from None
        except requests.exceptions.RequestException as e:
            raise StoreError(f"cannot reach Pixeltable Cloud at {account.url} ({doing}): {e}",
                             kind="unreachable") from None
        code = resp.headers.get("X-Pixeltable-Error-Code")
        if resp.status_code >= 400 and code in _USER_ACTION_CODES:
            raise StoreError(f"Pixeltable Cloud refused to {doing} ({code}): {_reason(resp)}", kind="store_full")
        if resp.status_code in (401, 403):
            verb = "was rejected" if resp.status_code == 401 else "is valid but not permitted"
            raise StoreError(f"The API key from {account.source} {verb} to {doing}: {_reason(resp)}",
                             kind="access_denied")
        if resp.status_code != 200:
            kind = retry.code_for_status(resp.status_code) or ("not_found" if resp.status_code == 404 else "invalid")
            raise StoreError(f"Pixeltable Cloud answered HTTP {resp.status_code} to {doing}: {_reason(resp)}",
                             kind=kind, retry_after=retry.retry_after_s(resp.headers))
        try:
            return resp.json()
        except ValueError:  # never quoted: the answer may hold credentials or signed URLs
            raise StoreError(f"Pixeltable Cloud sent a malformed answer to {doing}", kind="store_error") from None

    return retry.call(attempt)


# -- one bucket's session -------------------------------------------------------------------------------


class _Bucket:
    """A home bucket's S3 client (refreshable credentials), physical name and quota state, per process."""

    def __init__(self, account: _Account, ref: HomeRef) -> None:
        self.account, self.org, self.db, self.bucket = account, ref.org, ref.db, ref.bucket
        self.lock = threading.Lock()
        self.refreshes = 0
        first = self._fetch()
        self.endpoint = first["endpoint_url"]
        provider = first.get("storage_provider", "r2")
        if provider not in ("r2", "s3", "tigris", "b2"):
            raise StoreError(f"pxt://{ref.org}:{ref.db}/buckets/{ref.bucket}: storage provider {provider!r} is not "
                             "S3-compatible", kind="unsupported")
        ttl = max(float(first["ttl_seconds"]), 1.0)
        credentials = botocore.credentials.RefreshableCredentials.create_from_metadata(
            metadata=self._metadata(first), refresh_using=self._refresh, method="pxt-home-bucket",
            # refreshed ahead of expiry (advisory: in the background of a call; mandatory: the call waits)
            advisory_timeout=min(60.0, ttl / 2), mandatory_timeout=min(30.0, ttl / 4))
        session = botocore.session.get_session()
        # the control plane's keys only: never the environment's or a profile's
        session.register_component("credential_provider", botocore.credentials.CredentialResolver(
            providers=[_Provider(credentials)]))
        self.client = boto3.session.Session(botocore_session=session).client(
            "s3", endpoint_url=self.endpoint, region_name="auto",
            config=botocore.config.Config(signature_version="s3v4", s3={"addressing_style": "path"},
                                          retries={"max_attempts": 3, "mode": "standard"},
                                          connect_timeout=15, read_timeout=60, max_pool_connections=32,
                                          user_agent_extra="pxt_assets"))

    @property
    def label(self) -> str:
        return f"pxt://{self.org}:{self.db}/buckets/{self.bucket}/"

    def _fetch(self) -> dict[str, Any]:
        creds = _post(self.account, {"operation_type": "get_bucket_credentials", "org": self.org, "db": self.db,
                                     "bucket_name": self.bucket, "prefix": None},
                      f"get credentials for {self.label}")
        missing = [k for k in ("access_key_id", "secret_access_key", "session_token", "endpoint_url",
                               "resolved_bucket_name", "ttl_seconds") if k not in creds]
        if missing:
            raise StoreError(f"Pixeltable Cloud's credentials for {self.label} lack {', '.join(missing)}",
                             kind="store_error")
        with self.lock:
            self.physical = creds["resolved_bucket_name"]
            self.no_space_left = bool(creds.get("no_space_left"))
            self.no_space_detail = creds.get("no_space_detail")
            self.quota_checked_at = time.monotonic()
        return creds

    @staticmethod
    def _metadata(creds: dict[str, Any]) -> dict[str, str]:
        for secret in (creds["secret_access_key"], creds["session_token"]):
            register_secret(secret)  # never printed, wherever it would appear
        expiry = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=float(creds["ttl_seconds"]))
        return {"access_key": creds["access_key_id"], "secret_key": creds["secret_access_key"],
                "token": creds["session_token"], "expiry_time": expiry.isoformat()}

    def _refresh(self) -> dict[str, str]:
        creds = self._fetch()
        self.refreshes += 1
        log.info("refreshed the credentials of %s (ttl %s s)", self.label, creds["ttl_seconds"])
        return self._metadata(creds)

    def check_writable(self, uri: str) -> None:
        """Raise kind 'store_full' if the quota refuses writes (asked again at most every QUOTA_RECHECK_S)."""
        if self.no_space_left and time.monotonic() - self.quota_checked_at >= QUOTA_RECHECK_S:
            self.quota_checked_at = time.monotonic()  # a failed check waits the interval out too
            try:
                self._fetch()
            except StoreError as e:
                log.warning("could not check the quota of %s: %s", self.label, e)
        if self.no_space_left:
            detail = self.no_space_detail or "no space left; only reads and deletes are allowed"
            raise StoreError(f"cannot write {uri}: Pixeltable Cloud home bucket {self.label} is full: {detail}",
                             kind="store_full")


class _Provider(botocore.credentials.CredentialProvider):
    METHOD = "pxt-home-bucket"
    CANONICAL_NAME = "custom-pxt-home-bucket"

    def __init__(self, credentials: botocore.credentials.RefreshableCredentials) -> None:
        self._credentials = credentials

    def load(self) -> botocore.credentials.RefreshableCredentials:
        return self._credentials


# -- the store ------------------------------------------------------------------------------------------


class PxtStore(S3Store):
    """pxt:// URIs, read and written through the S3 store's code with each home bucket's own client."""

    provider = "pxt"

    def __init__(self) -> None:
        super().__init__()
        self._buckets: dict[tuple[str, str, str, str, str], _Bucket] = {}
        self._buckets_lock = threading.Lock()

    def bucket_for(self, uri: str) -> _Bucket:
        """The (per-process) session of the home bucket `uri` is in: made on first use, with one
        get_bucket_credentials call."""
        ref = parse_home(uri)
        account = _account(uri)
        key = (account.url, account.key, ref.org, ref.db, ref.bucket)
        with self._buckets_lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(account, ref)
        return bucket

    def parse(self, uri: str) -> S3Location:  # type: ignore[override]
        ref = parse_home(uri)
        bucket = self.bucket_for(uri)
        return S3Location("pxt", ref.bucket, ref.key, ref.base, bucket.endpoint, "auto", physical=bucket.physical)

    def clients_for(self, loc: S3Location) -> Any:
        uri = loc.uri(loc.key)
        return _Data(self.bucket_for(uri).client)

    def upload(self, src, uri, *, content_type=None):  # noqa: ANN001, ANN201
        self.bucket_for(uri).check_writable(uri)
        super().upload(src, uri, content_type=content_type)

    def write_bytes(self, data, uri, *, content_type=None):  # noqa: ANN001, ANN201
        self.bucket_for(uri).check_writable(uri)
        super().write_bytes(data, uri, content_type=content_type)

    def validate_destination(self, uri: str) -> None:
        """The key is set, the control plane grants credentials, the bucket answers and has room."""
        bucket = self.bucket_for(uri)
        bucket.check_writable(uri)
        self._call("cannot use", uri, bucket.client.head_bucket, Bucket=bucket.physical)

    def canonical(self, uri: str) -> str:
        ref = parse_home(uri)
        return f"pxt:{ref.org}:{ref.db}:{ref.bucket}/{ref.key}"

    def join(self, prefix_uri: str, name: str) -> str:
        return super().join(logical_uri(prefix_uri), name)

    def presign(self, uri: str, expiration_seconds: int) -> str:
        got = self.presign_many([uri], expiration_seconds)[0]
        if isinstance(got, BaseException):
            raise got
        return got

    def presign_many(self, uris: Sequence[str], expiration_seconds: int) -> list[str | BaseException]:
        """GET URLs from the control plane: one get_presigned_urls call per bucket per 100 keys."""
        check_expiration(expiration_seconds)
        out: list[str | BaseException] = [StoreError("not signed")] * len(uris)
        groups: dict[tuple[str, str, str], list[tuple[int, HomeRef]]] = {}
        for i, uri in enumerate(uris):
            try:
                ref = parse_home(uri)
                if not ref.key or ref.key.endswith("/"):
                    raise StoreError(f"cannot presign {uri}: it names a folder, not a file", kind="invalid")
                groups.setdefault((ref.org, ref.db, ref.bucket), []).append((i, ref))
            except StoreError as e:
                out[i] = e
        for (org, db, bucket), items in groups.items():
            account = _account(items[0][1].base)
            for start in range(0, len(items), MAX_PRESIGN_KEYS):
                chunk = items[start:start + MAX_PRESIGN_KEYS]
                keys = list(dict.fromkeys(ref.key for _, ref in chunk))
                try:
                    answer = _post(account, {"operation_type": "get_presigned_urls", "org": org, "db": db,
                                             "bucket_name": bucket, "keys": keys,
                                             "expires_in": int(expiration_seconds)},
                                   f"presign {len(keys)} files of pxt://{org}:{db}/buckets/{bucket}/")
                    urls = answer.get("urls")
                    if not isinstance(urls, dict):
                        raise StoreError("Pixeltable Cloud sent a malformed answer to get_presigned_urls",
                                         kind="store_error")
                except StoreError as e:
                    for i, _ in chunk:
                        out[i] = e
                    continue
                for i, ref in chunk:
                    url = urls.get(ref.key)
                    out[i] = url if isinstance(url, str) else StoreError(
                        f"Pixeltable Cloud returned no presigned URL for {uris[i]}", kind="store_error")
        return out


@dataclass
class _Data:
    """What S3Store's operations take from clients_for(): the data client."""

    data: Any
