"""Amazon S3 and the S3-compatible services: Cloudflare R2, Backblaze B2, Tigris.

    s3://bucket/key                                          profile: s3_profile
    https://<account-id>.r2.cloudflarestorage.com/bucket/key profile: r2_profile     region 'auto'
    https://s3.<region>.backblazeb2.com/bucket/key           profile: b2_profile     region from the host
    https://fly.storage.tigris.dev/bucket/key                profile: tigris_profile region 'auto'
    https://t3.storage.dev/bucket/key                        profile: tigris_profile region 'auto'

Endpoints: for s3:// botocore's own resolution applies (AWS_ENDPOINT_URL, a profile's endpoint_url, AWS);
for the https forms the URI's host is the endpoint unless the profile sets endpoint_url (how tests and
proxies reach them). Data clients come from dagster-aws's S3Resource (standard retry mode: backoff on
throttling and 5xx); presigning uses a SigV4 client of the same session, since S3Resource's client signs
with SigV2. Clients are built once per (endpoint, profile, region) and shared by all threads.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import hmac
import logging
import os
import pathlib
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import boto3.exceptions
import botocore.exceptions
import botocore.session
import urllib3.exceptions
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from pxt_assets.config import current_settings
from pxt_assets.redaction import register_secret
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

# botocore's own quick retries (standard mode) for blips such as one dropped multipart part; outages are
# ridden out by stores/retry.py around each call, within the retry budget.
_MAX_ATTEMPTS = 3
_CHUNK = 1 << 20
# Several files move at once on our own thread pool; a few parts per file is enough on top of that.
_TRANSFER = TransferConfig(multipart_threshold=64 << 20, multipart_chunksize=16 << 20, max_concurrency=4)

_R2 = re.compile(r"^[a-z0-9-]+\.r2\.cloudflarestorage\.com$")
_B2 = re.compile(r"^s3\.([a-z0-9-]+)\.backblazeb2\.com$")
_TIGRIS = re.compile(r"^(fly\.storage\.tigris\.dev|t3\.storage\.dev)$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-_]{1,62}$")


@dataclass(frozen=True)
class S3Location:
    flavor: str  # s3, r2, b2, tigris
    bucket: str
    key: str
    base: str  # what precedes the bucket: 's3://' or 'https://host/'
    endpoint: str | None  # endpoint named by the URI (https forms)
    region: str | None
    physical: str | None = None  # the bucket's name at the provider, when the URI names it otherwise (pxt://)

    @property
    def api_bucket(self) -> str:
        """The bucket name requests carry."""
        return self.physical or self.bucket

    def uri(self, key: str) -> str:
        return f"{self.base}{self.bucket}/{key}"


def parse(uri: str) -> S3Location:
    """Split an S3-family URI; a malformed one raises StoreError(kind='invalid') naming it."""
    if uri.startswith("s3://") and "?" not in uri and "#" not in uri:
        # The common form, split without urlparse (presigning calls this once per URL).
        bucket, _, key = uri[5:].partition("/")
        if bucket and _BUCKET.match(bucket):
            return S3Location("s3", bucket, key.lstrip("/"), "s3://", None, None)
    parsed = urllib.parse.urlparse(uri)
    scheme, host = parsed.scheme.lower(), (parsed.hostname or "").lower()
    if scheme == "s3":
        bucket, key = parsed.netloc, parsed.path.lstrip("/")
        flavor, base, endpoint, region = "s3", "s3://", None, None
    elif scheme == "https":
        bucket, _, key = parsed.path.lstrip("/").partition("/")
        base, endpoint = f"https://{parsed.netloc}/", f"https://{parsed.netloc}"
        if _R2.match(host):
            flavor, region = "r2", "auto"
        elif m := _B2.match(host):
            flavor, region = "b2", m.group(1)
        elif _TIGRIS.match(host):
            flavor, region = "tigris", "auto"
        else:
            raise StoreError(f"{uri!r} is not an R2, B2 or Tigris URL", kind="invalid")
    else:
        raise StoreError(f"{uri!r} is not an S3 URI", kind="invalid")
    if not bucket or not _BUCKET.match(bucket):
        raise StoreError(f"invalid bucket name {bucket!r} in {uri!r}: expected {base}bucket/prefix/", kind="invalid")
    return S3Location(flavor, bucket, key, base, endpoint, region)


def _profile_endpoint(profile: str) -> str | None:
    """The endpoint_url a named profile sets (top level or in its `s3 =` section), if any."""
    try:
        scoped = botocore.session.Session(profile=profile).get_scoped_config()
    except botocore.exceptions.ProfileNotFound:
        raise StoreError(f"AWS profile {profile!r} not found in the AWS config files", kind="invalid") from None
    s3_section = scoped.get("s3") if isinstance(scoped.get("s3"), dict) else {}
    return s3_section.get("endpoint_url") or scoped.get("endpoint_url")


@dataclass
class _Clients:
    data: Any
    presign: Any
    session: Any = None
    signers: dict = field(default_factory=dict)  # bucket -> _QuerySigner
    endpoint: str | None = None
    find_region: bool = False  # plain S3: a bucket's region is asked for once (HeadBucket), then cached
    by_region: dict = field(default_factory=dict)  # region -> presign client for buckets outside the default
    bucket_clients: dict = field(default_factory=dict)  # bucket -> its presign client (one lookup per bucket)

    def presign_client_for(self, bucket: str) -> Any:
        """The presign client whose region is the bucket's own (a URL signed for another region is refused by
        S3). The region comes from one HeadBucket per bucket, with the data client's credentials."""
        if not self.find_region or self.session is None:
            return self.presign
        known = self.bucket_clients.get(bucket)
        if known is not None:
            return known
        client = self.bucket_clients[bucket] = self._regional(bucket)
        return client

    def _regional(self, bucket: str) -> Any:
        # One quick request with no retries: an unreachable endpoint must not hold up signing (which then
        # falls back to the default region, as before).
        probe = self.session.client("s3", endpoint_url=self.endpoint, region_name=self.presign.meta.region_name,
                                    config=Config(retries={"max_attempts": 1, "mode": "standard"},
                                                  connect_timeout=2, read_timeout=5))
        try:
            headers = probe.head_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPHeaders"]
            region = headers.get("x-amz-bucket-region")
        except botocore.exceptions.ClientError as e:  # a 301/403 still names the region
            region = e.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-bucket-region")
        except Exception:  # noqa: BLE001 - unreachable now: sign for the default region, as before
            region = None
        if not region or region == self.presign.meta.region_name:
            return self.presign
        client = self.by_region.get(region)
        if client is None:
            client = self.by_region[region] = self.session.client(
                "s3", endpoint_url=self.endpoint, region_name=region, config=Config(signature_version="s3v4"))
        return client


def _get_to_file(client: Any, bucket: str, key: str, dest: pathlib.Path) -> None:
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    with open(dest, "wb") as out:
        for chunk in body.iter_chunks(_CHUNK):
            out.write(chunk)


def _get_bytes(client: Any, bucket: str, key: str) -> bytes:
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()


_THROTTLING = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
                         "TooManyRequestsException", "RequestThrottled", "ServiceUnavailable"})


def _error_kind(e: botocore.exceptions.ClientError) -> str:
    code = str(e.response.get("Error", {}).get("Code", ""))
    status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in ("404", "NoSuchKey", "NoSuchBucket", "NotFound") or status == 404:
        return "not_found"
    if code in ("403", "AccessDenied", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch") or status == 403:
        return "access_denied"
    if code in _THROTTLING:
        return "throttled"
    if code in ("RequestTimeout", "RequestTimeoutException"):
        return "timeout"
    return retry.code_for_status(status) or "store_error"


def _store_error(what: str, uri: str, e: BaseException) -> StoreError | None:
    """The StoreError for an SDK exception (None for one that is not about the request: a bug to show)."""
    if isinstance(e, boto3.exceptions.S3UploadFailedError) and e.__cause__ is not None:
        return _store_error(what, uri, e.__cause__)  # a multipart upload's failed part
    if isinstance(e, botocore.exceptions.ClientError):
        kind = _error_kind(e)
        meta = e.response.get("ResponseMetadata", {})
        detail = "not found" if kind == "not_found" else e.response.get("Error", {}).get("Message") or str(e)
        if kind in ("throttled", "server_error") and meta.get("HTTPStatusCode"):
            detail = f"HTTP {meta['HTTPStatusCode']}: {detail}"
        return StoreError(f"{what} {uri}: {detail}", kind=kind,
                          retry_after=retry.retry_after_s(meta.get("HTTPHeaders", {})))
    if isinstance(e, botocore.exceptions.NoCredentialsError):
        return StoreError(f"{what} {uri}: no AWS credentials found (environment, profile or role)",
                          kind="access_denied")
    if isinstance(e, (botocore.exceptions.ConnectTimeoutError, botocore.exceptions.ReadTimeoutError)):
        return StoreError(f"{what} {uri}: timed out: {e}", kind="timeout")
    if isinstance(e, botocore.exceptions.SSLError):
        return StoreError(f"{what} {uri}: TLS error: {e}", kind="store_error")
    if isinstance(e, (botocore.exceptions.HTTPClientError, botocore.exceptions.ConnectionError,
                      urllib3.exceptions.HTTPError)):
        # refused, reset or closed connections, a body cut off while streaming
        return StoreError(f"{what} {uri}: cannot reach the endpoint: {e}", kind="unreachable")
    return None


class S3Store(ObjectStore):
    provider = "s3"
    writable = True
    remote = True

    def __init__(self) -> None:
        self._clients: dict[tuple[Any, ...], _Clients] = {}
        self._lock = threading.Lock()

    # -- clients ----------------------------------------------------------------------------------------
    def clients_for(self, loc: S3Location) -> _Clients:
        """The (shared) data and presign clients for a location's endpoint and profile."""
        settings = current_settings()
        profile = getattr(settings, f"{loc.flavor}_profile")
        endpoint = loc.endpoint
        if profile and loc.flavor != "s3":
            endpoint = _profile_endpoint(profile) or endpoint
        # botocore reads AWS_ENDPOINT_URL(_S3) when the client is made: a changed one needs other clients
        env_endpoint = (os.environ.get("AWS_ENDPOINT_URL_S3"), os.environ.get("AWS_ENDPOINT_URL"))
        resource = resources.get("s3") if loc.flavor == "s3" else None  # pxt.definitions(resources=...)
        key = (loc.flavor, endpoint, profile, loc.region, env_endpoint, id(resource))
        with self._lock:
            clients = self._clients.get(key)
            if clients is None:
                clients = self._clients[key] = (self._make_clients(profile, endpoint, loc.region) if resource is None
                                                else self._resource_clients(resource))
        return clients

    @staticmethod
    def _resource_clients(resource: Any) -> _Clients:
        """Clients from a dagster-aws S3Resource: its data client, and a SigV4 presign client of the same
        credentials, endpoint and region."""
        session = boto3.session.Session(
            aws_access_key_id=resource.aws_access_key_id, aws_secret_access_key=resource.aws_secret_access_key,
            aws_session_token=resource.aws_session_token, profile_name=resource.profile_name)
        data = resource.get_client()
        region = resource.region_name or data.meta.region_name or "us-east-1"
        presign = session.client("s3", endpoint_url=resource.endpoint_url, region_name=region,
                                 config=Config(signature_version="s3v4"))
        log.debug("S3 clients from an S3Resource (endpoint=%s region=%s)", resource.endpoint_url, region)
        return _Clients(data, presign, session, endpoint=resource.endpoint_url,
                        find_region=resource.region_name is None)

    @staticmethod
    def _make_clients(profile: str | None, endpoint: str | None, region: str | None) -> _Clients:
        from dagster_aws.s3 import S3Resource

        try:
            data = S3Resource(profile_name=profile, endpoint_url=endpoint, region_name=region,
                              max_attempts=_MAX_ATTEMPTS).get_client()
            session = boto3.session.Session(profile_name=profile)
        except botocore.exceptions.ProfileNotFound:
            raise StoreError(f"AWS profile {profile!r} not found in the AWS config files", kind="invalid") from None
        presign = session.client(
            "s3", endpoint_url=endpoint, region_name=region or data.meta.region_name or "us-east-1",
            config=Config(signature_version="s3v4"),
        )
        log.debug("S3 clients for endpoint=%s profile=%s region=%s", endpoint, profile, region)
        return _Clients(data, presign, session, endpoint=endpoint, find_region=region is None)

    def _call(self, what: str, uri: str, fn, *args, **kwargs):
        def attempt():
            with self._translated(what, uri):
                return fn(*args, **kwargs)

        return retry.call(attempt)

    @staticmethod
    @contextlib.contextmanager
    def _translated(what: str, uri: str) -> Iterator[None]:
        """Turn botocore exceptions into StoreErrors with a stable code and a message naming the URI."""
        try:
            yield
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, urllib3.exceptions.HTTPError,
                boto3.exceptions.S3UploadFailedError) as e:
            error = _store_error(what, uri, e)
            if error is None:
                raise
            raise error from None

    parse = staticmethod(parse)  # a URI's location (a subclass maps its own URI forms)

    # -- ObjectStore ------------------------------------------------------------------------------------
    def download(self, uri: str, dest: pathlib.Path) -> None:
        loc = self.parse(uri)
        client = self.clients_for(loc).data
        # One streamed GET (download_file would HEAD first): copied to disk in chunks, never whole in memory.
        self._call("cannot download", uri, _get_to_file, client, loc.api_bucket, loc.key, dest)

    def upload(self, src: pathlib.Path, uri: str, *, content_type: str | None = None) -> None:
        loc = self.parse(uri)
        client = self.clients_for(loc).data
        ctype = content_type or content_type_for(uri)
        if src.stat().st_size < _TRANSFER.multipart_threshold:
            # One streamed PUT: upload_file would build a transfer manager (and its threads) per file.
            def put() -> None:  # the file is opened per attempt, so a retry sends it from its start
                with open(src, "rb") as body:
                    client.put_object(Bucket=loc.api_bucket, Key=loc.key, Body=body, ContentType=ctype)

            self._call("cannot upload to", uri, put)
            return
        self._call("cannot upload to", uri, client.upload_file, str(src), loc.api_bucket, loc.key,
                   ExtraArgs={"ContentType": ctype}, Config=_TRANSFER)

    def read_bytes(self, uri: str) -> bytes:
        loc = self.parse(uri)
        return self._call("cannot download", uri, _get_bytes, self.clients_for(loc).data, loc.api_bucket, loc.key)

    def write_bytes(self, data: bytes, uri: str, *, content_type: str | None = None) -> None:
        loc = self.parse(uri)
        client = self.clients_for(loc).data
        if len(data) >= _TRANSFER.multipart_threshold:
            super().write_bytes(data, uri, content_type=content_type)
            return
        self._call("cannot upload to", uri, client.put_object, Bucket=loc.api_bucket, Key=loc.key, Body=data,
                   ContentType=content_type or content_type_for(uri))

    def exists(self, uri: str) -> bool:
        loc = self.parse(uri)
        try:
            self._call("cannot check", uri, self.clients_for(loc).data.head_object, Bucket=loc.api_bucket, Key=loc.key)
        except StoreError as e:
            if e.kind == "not_found":
                return False
            raise
        return True

    def stat(self, uri: str) -> ObjectInfo | None:
        loc = self.parse(uri)
        try:
            head = self._call("cannot check", uri, self.clients_for(loc).data.head_object, Bucket=loc.api_bucket,
                              Key=loc.key)
        except StoreError as e:
            if e.kind == "not_found":
                return None
            raise
        return ObjectInfo(uri=uri, mtime=epoch_seconds(head["LastModified"]), size=int(head.get("ContentLength", 0)),
                          etag=head.get("ETag"))

    def delete(self, uri: str) -> None:
        loc = self.parse(uri)
        self._call("cannot delete", uri, self.clients_for(loc).data.delete_object, Bucket=loc.api_bucket, Key=loc.key)

    def list_objects(self, prefix_uri: str, *, page_size: int | None = None) -> Iterator[ObjectInfo]:
        """Objects under the folder `prefix_uri`, one ListObjectsV2 page (`page_size` keys, at most 1000)
        at a time, in the URI form given. Keys ending in '/' (folder markers) are skipped."""
        check_page_size(page_size)
        loc = self.parse(prefix_uri)
        client = self.clients_for(loc).data
        return self._iter_objects(client, loc, folder_prefix(loc.key), prefix_uri, page_size)

    def _iter_objects(self, client: Any, loc: S3Location, prefix: str, prefix_uri: str,
                      page_size: int | None) -> Iterator[ObjectInfo]:
        # Page by page with the continuation token, each page one retried request: an outage in the middle
        # of a long listing resumes at the page that failed.
        args: dict[str, Any] = {"Bucket": loc.api_bucket, "Prefix": prefix}
        if page_size:
            args["MaxKeys"] = page_size
        try:
            while True:
                page = self._call("cannot list", prefix_uri, client.list_objects_v2, **args)
                for obj in page.get("Contents", ()):
                    key = obj["Key"]
                    if key.endswith("/"):
                        continue
                    yield ObjectInfo(uri=loc.uri(key), mtime=epoch_seconds(obj["LastModified"]), size=int(obj["Size"]))
                token = page.get("NextContinuationToken")
                if not page.get("IsTruncated") or not token:
                    return
                args["ContinuationToken"] = token
        except StoreError as e:
            if e.kind == "not_found":  # a missing prefix lists nothing: only the bucket can be missing
                raise StoreError(f"cannot list {prefix_uri}: bucket '{loc.bucket}' not found",
                                 kind="not_found") from None
            raise

    def validate_destination(self, uri: str) -> None:
        loc = self.parse(uri)
        try:
            self._call("cannot use", uri, self.clients_for(loc).data.head_bucket, Bucket=loc.api_bucket)
        except StoreError as e:
            raise bucket_error(e, loc.bucket) from None

    def add_queue_notification(self, prefix_uri: str, queue_arn: str, config_id: str) -> None:
        """The bucket sends `s3:ObjectCreated:*` events of keys under the prefix to the SQS queue `queue_arn`:
        a queue configuration named `config_id` (replaced if there), the bucket's others kept."""
        loc = self.parse(prefix_uri)
        client = self.clients_for(loc).data
        conf = self._call("cannot read the notifications of", prefix_uri,
                          client.get_bucket_notification_configuration, Bucket=loc.api_bucket)
        conf = {k: v for k, v in conf.items() if k != "ResponseMetadata"}
        ours = {"Id": config_id, "QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}
        if folder_prefix(loc.key):
            ours["Filter"] = {"Key": {"FilterRules": [{"Name": "prefix", "Value": folder_prefix(loc.key)}]}}
        conf["QueueConfigurations"] = [c for c in conf.get("QueueConfigurations", []) if c.get("Id") != config_id]
        conf["QueueConfigurations"].append(ours)
        self._call("cannot configure the notifications of", prefix_uri,
                   client.put_bucket_notification_configuration, Bucket=loc.api_bucket,
                   NotificationConfiguration=conf)

    def canonical(self, uri: str) -> str:
        loc = parse(uri)
        return f"s3:{loc.flavor}:{loc.endpoint or ''}:{loc.bucket}/{loc.key}"

    def presign(self, uri: str, expiration_seconds: int) -> str:
        check_expiration(expiration_seconds)
        loc = parse(uri)
        clients = self.clients_for(loc)
        signer = clients.signers.get(loc.bucket)
        if signer is None:
            signer = clients.signers[loc.bucket] = _QuerySigner.learn(clients, loc.bucket)
        if signer is None:  # not a SigV4 URL botocore would make: let botocore do it
            return clients.presign_client_for(loc.bucket).generate_presigned_url(
                "get_object", Params={"Bucket": loc.bucket, "Key": loc.key}, ExpiresIn=int(expiration_seconds))
        return signer.sign(loc.key, int(expiration_seconds))


class _QuerySigner:
    """SigV4 query-string signing for GET, as botocore's S3 presigner does it, without its per-call request
    machinery (about 20 times faster). botocore still decides everything but the signature: the URL base
    (endpoint, addressing style) and the region are learnt once per bucket from one URL it presigned.
    Pure computation: no network call."""

    def __init__(self, session: Any, base: str, host: str, path_prefix: str, region: str) -> None:
        self.session, self.base, self.host, self.path_prefix, self.region = session, base, host, path_prefix, region
        self._keys: dict[tuple[str, str], bytes] = {}
        self._query_memo: tuple | None = None

    @classmethod
    def learn(cls, clients: _Clients, bucket: str) -> "_QuerySigner | None":
        presign = clients.presign_client_for(bucket)
        probe = presign.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=60)
        parts = urllib.parse.urlsplit(probe)
        query = dict(urllib.parse.parse_qsl(parts.query))
        if (clients.session is None or query.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256"
                or not parts.path.endswith("/k")):
            return None
        region = query["X-Amz-Credential"].split("/")[2]
        return cls(clients.session, f"{parts.scheme}://{parts.netloc}", parts.netloc, parts.path[:-1], region)

    def _signing_key(self, secret: str, date: str) -> bytes:
        key = self._keys.get((secret, date))
        if key is None:
            register_secret(secret)  # a profile's or role's secret key: never printed, like the environment's
            k = hmac.new(("AWS4" + secret).encode(), date.encode(), hashlib.sha256).digest()
            for part in (self.region, "s3", "aws4_request"):
                k = hmac.new(k, part.encode(), hashlib.sha256).digest()
            key = self._keys[(secret, date)] = k
        return key

    def sign(self, key: str, expires: int, now: datetime.datetime | None = None) -> str:
        creds = self.session.get_credentials()
        if creds is None:
            raise StoreError("cannot presign: no AWS credentials found (environment, profile or role)",
                             kind="access_denied")
        frozen = creds.get_frozen_credentials()
        if now is None:
            now = datetime.datetime.fromtimestamp(int(time.time()), datetime.timezone.utc)
        # Everything but the path and the signature is the same for every URL signed in the same second
        # with the same credentials and expiry: built once, not per URL.
        memo_key = (now, expires, frozen)
        memo = self._query_memo
        if memo is None or memo[0] != memo_key:
            amz_date = now.strftime("%Y%m%dT%H%M%SZ")
            scope = f"{amz_date[:8]}/{self.region}/s3/aws4_request"
            params = {
                "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
                "X-Amz-Credential": f"{frozen.access_key}/{scope}",
                "X-Amz-Date": amz_date,
                "X-Amz-Expires": str(expires),
                "X-Amz-SignedHeaders": "host",
            }
            if frozen.token:
                params["X-Amz-Security-Token"] = frozen.token
            query = "&".join(f"{_q(k)}={_q(v)}" for k, v in sorted(params.items()))
            head = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n"
            memo = self._query_memo = (memo_key, query, head, self._signing_key(frozen.secret_key, amz_date[:8]))
        _, query, head, signing_key = memo
        path = self.path_prefix + (key if _PLAIN_KEY.match(key) else urllib.parse.quote(key, safe="/~"))
        canonical = f"GET\n{path}\n{query}\nhost:{self.host}\n\nhost\nUNSIGNED-PAYLOAD"
        to_sign = head + hashlib.sha256(canonical.encode()).hexdigest()
        signature = hmac.digest(signing_key, to_sign.encode(), "sha256").hex()
        return f"{self.base}{path}?{query}&X-Amz-Signature={signature}"


# Keys made only of characters SigV4 leaves unescaped in a path need no quoting.
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9\-_.~/]*$")


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="-_.~")

