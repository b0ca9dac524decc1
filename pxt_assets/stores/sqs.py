"""Amazon SQS: the queue an S3 bucket delivers its `s3:ObjectCreated:*` notifications to (a watch's `queue=`).

    queue_for(queue_url, prefix_uri).receive(...)   # long-polled messages, at most 10 a request
    queue_for(queue_url, prefix_uri).delete(messages)
    object_events(body)                             # the S3 event records a message's body holds
    objects_under(body, prefix_uri)                 # ... as the objects a listing of the prefix would show
    setup_notifications(prefix_uri, queue_url, id)  # the bucket's notification and the queue's policy

The SQS client is made from the S3 store's session for the watched prefix (the same credentials: an
S3Resource given to pxt.definitions, or `s3_profile`, or the environment). Its endpoint is botocore's own
resolution for a queue on AWS (`https://sqs.<region>.amazonaws.com/<account>/<name>`: region from the URL;
AWS_ENDPOINT_URL(_SQS) applies), and the queue URL's own scheme and host for any other URL (moto, LocalStack,
ElasticMQ on 127.0.0.1). Each request is retried within the retry budget (stores/retry.py); a missing
queue or a denied permission is raised at once as a StoreError that names the queue (redacted).
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import datetime as dt
import json
import os
import re
import threading
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import botocore.exceptions
from botocore.config import Config

from pxt_assets.redaction import redact
from pxt_assets.stores import retry
from pxt_assets.stores.base import ObjectInfo, StoreError, folder_prefix

_AWS_HOST = re.compile(r"^(?:sqs\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?|([a-z0-9-]+)\.queue\.amazonaws\.com)$")
_MISSING = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "NonExistentQueue"})
_DENIED = frozenset({"AccessDenied", "AccessDeniedException", "AuthorizationError", "InvalidClientTokenId",
                     "UnrecognizedClientException", "InvalidSecurity", "KMS.AccessDeniedException"})
_MAX_PER_REQUEST = 10  # SQS's own limit, for ReceiveMessage and DeleteMessageBatch alike
DELETE_CONCURRENCY = 8  # within botocore's pool of 10 connections per client


@dataclass(frozen=True)
class Message:
    id: str
    receipt: str
    body: str


@dataclass(frozen=True)
class ObjectEvent:
    """One `ObjectCreated` record of an S3 event notification: the key URL-decoded."""

    bucket: str
    key: str
    time: float  # eventTime, seconds since the epoch
    size: int
    etag: str | None


def object_events(body: str) -> list[ObjectEvent]:
    """The object-created records of a message body: S3's own, or wrapped in an SNS notification (S3 -> SNS ->
    SQS). Test events (`s3:TestEvent`, sent when the notification is configured), other event types (removals,
    restores, replication) and bodies that are no S3 event give none."""
    try:
        doc = json.loads(body)
        if isinstance(doc, dict) and doc.get("Type") == "Notification" and isinstance(doc.get("Message"), str):
            doc = json.loads(doc["Message"])
    except ValueError:
        return []
    records = doc.get("Records") if isinstance(doc, dict) else None
    out: list[ObjectEvent] = []
    for r in records if isinstance(records, list) else []:
        try:
            if not str(r.get("eventName", "")).startswith("ObjectCreated:") or r.get("eventSource") not in (
                    None, "aws:s3"):
                continue
            obj = r["s3"]["object"]
            when = dt.datetime.fromisoformat(str(r["eventTime"]).replace("Z", "+00:00"))
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.timezone.utc)
            etag = obj.get("eTag") or obj.get("etag")
            out.append(ObjectEvent(r["s3"]["bucket"]["name"], urllib.parse.unquote_plus(obj["key"]),
                                   when.timestamp(), int(obj.get("size") or 0), str(etag) if etag else None))
        except (KeyError, TypeError, ValueError, AttributeError):
            continue  # a record that is not an S3 object event
    return out


def objects_under(body: str, prefix_uri: str) -> list[ObjectInfo]:
    """The objects created under the folder `prefix_uri` (an s3:// prefix) that a message names, as the
    listing of that prefix shows them: URIs in its form, `mtime` the event's time."""
    from pxt_assets.stores.s3 import parse

    loc = parse(prefix_uri)
    under = folder_prefix(loc.key)
    return [ObjectInfo(loc.uri(e.key), e.time, e.size, e.etag) for e in object_events(body)
            if e.bucket == loc.api_bucket and e.key.startswith(under) and not e.key.endswith("/")]


def _endpoint_and_region(url: str) -> tuple[str | None, str | None]:
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname or parsed.path.strip("/").count("/") != 1:
        raise StoreError(f"{redact(url)!r} is not an SQS queue URL: expected "
                         "https://sqs.<region>.amazonaws.com/<account>/<queue>", kind="invalid")
    m = _AWS_HOST.match(parsed.hostname.lower())
    if m:
        return None, m.group(1) or m.group(2)
    return f"{parsed.scheme}://{parsed.netloc}", None


class Queue:
    """One SQS queue, with a client of the S3 store's session for `prefix_uri`."""

    def __init__(self, url: str, client: Any) -> None:
        self.url, self.client = url, client

    def _call(self, what: str, fn, **kwargs) -> Any:
        def attempt():
            try:
                return fn(QueueUrl=self.url, **kwargs)
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
                raise _queue_error(what, self.url, e) from None

        return retry.call(attempt)

    def receive(self, *, max_messages: int, wait_s: float, then_wait_s: float = 1.0,
                budget_s: float = 20.0) -> list[Message]:
        """Up to `max_messages` messages: the first request waits up to `wait_s` for one (long polling); while
        answers are full (10 messages: more are waiting), the next ones, up to `then_wait_s` each, until
        `budget_s` has passed. A request answers as soon as it has a message, so a trickle of arrivals ends the
        receiving at once rather than holding the tick one request per message. Each message is then
        invisible to other receivers for the queue's visibility timeout."""
        out: dict[str, Message] = {}
        started, wait = time.monotonic(), wait_s
        while len(out) < max_messages and time.monotonic() - started < budget_s:
            asked = min(_MAX_PER_REQUEST, max_messages - len(out))
            got = self._call("cannot receive from", self.client.receive_message, MaxNumberOfMessages=asked,
                             WaitTimeSeconds=int(max(0, min(20, wait))))
            messages = got.get("Messages") or []
            for m in messages:  # received again within the tick (its visibility ran out): the newer receipt
                out[m["MessageId"]] = Message(m["MessageId"], m["ReceiptHandle"], m.get("Body") or "")
            if len(messages) < asked:
                break
            wait = then_wait_s
        return list(out.values())

    def delete(self, messages: Sequence[Message]) -> int:
        """Delete the messages (10 a request, up to DELETE_CONCURRENCY requests at once: a tick's runs are
        launched only after it); the number SQS refused (they come back and find their objects taken)."""
        def one(chunk: Sequence[Message]) -> int:
            got = self._call("cannot delete messages from", self.client.delete_message_batch, Entries=[
                {"Id": str(n), "ReceiptHandle": m.receipt} for n, m in enumerate(chunk)])
            return len(got.get("Failed") or [])

        chunks = [messages[i:i + _MAX_PER_REQUEST] for i in range(0, len(messages), _MAX_PER_REQUEST)]
        if len(chunks) <= 1:
            return sum(one(c) for c in chunks)
        with concurrent.futures.ThreadPoolExecutor(min(DELETE_CONCURRENCY, len(chunks)),
                                                   thread_name_prefix="pxt-sqs-delete") as pool:
            context = contextvars.copy_context()  # the retry budget's cap, if any, in each thread
            return sum(pool.map(lambda c: context.copy().run(one, c), chunks))

    def release(self, messages: Sequence[Message]) -> None:
        """Make the messages visible again at once (a tick that leaves them for the next one)."""
        for i in range(0, len(messages), _MAX_PER_REQUEST):
            self._call("cannot release messages of", self.client.change_message_visibility_batch, Entries=[
                {"Id": str(n), "ReceiptHandle": m.receipt, "VisibilityTimeout": 0}
                for n, m in enumerate(messages[i:i + _MAX_PER_REQUEST])])

    def arn(self) -> str:
        got = self._call("cannot read", self.client.get_queue_attributes, AttributeNames=["QueueArn"])
        return got["Attributes"]["QueueArn"]

    def allow_bucket(self, bucket: str, sid: str) -> None:
        """Let S3 send the bucket's notifications to this queue: one statement of the queue's policy (named
        `sid` with only its letters and digits, as IAM wants, replaced if there), the others kept."""
        sid = re.sub(r"[^A-Za-z0-9]", "", sid)
        got = self._call("cannot read", self.client.get_queue_attributes, AttributeNames=["Policy", "QueueArn"])
        attrs = got.get("Attributes") or {}
        policy = json.loads(attrs["Policy"]) if attrs.get("Policy") else {"Version": "2012-10-17", "Statement": []}
        statements = [s for s in policy.get("Statement") or [] if s.get("Sid") != sid]
        statements.append({"Sid": sid, "Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"},
                           "Action": "sqs:SendMessage", "Resource": attrs["QueueArn"],
                           "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{bucket}"}}})
        self._call("cannot set the policy of", self.client.set_queue_attributes,
                   Attributes={"Policy": json.dumps({**policy, "Statement": statements})})


def _queue_error(what: str, url: str, e: BaseException) -> StoreError:
    from pxt_assets.stores.s3 import _store_error

    shown = redact(url)
    if isinstance(e, botocore.exceptions.ClientError):
        error = e.response.get("Error", {})
        codes = {str(error.get("Code", "")), str(error.get("QueryErrorCode", ""))}
        if codes & _MISSING:
            return StoreError(f"{what} queue {shown}: the queue does not exist (the watch's queue=)",
                              kind="not_found")
        if codes & _DENIED or e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 403:
            return StoreError(f"{what} queue {shown}: permission denied ({error.get('Message') or error.get('Code')})"
                              "; the watch needs sqs:ReceiveMessage, sqs:DeleteMessage and "
                              "sqs:ChangeMessageVisibility on it", kind="access_denied")
    return _store_error(what, f"queue {shown}", e) or StoreError(f"{what} queue {shown}: {e}")


_CLIENTS: dict[tuple[Any, ...], Any] = {}
_LOCK = threading.Lock()


def queue_for(url: str, prefix_uri: str) -> Queue:
    """The queue at `url`, reached with the credentials of the S3 store for `prefix_uri` (clients shared)."""
    from pxt_assets import stores
    from pxt_assets.stores.s3 import parse

    endpoint, region = _endpoint_and_region(url)
    s3 = stores.store_for(prefix_uri).clients_for(parse(prefix_uri))
    env = (os.environ.get("AWS_ENDPOINT_URL_SQS"), os.environ.get("AWS_ENDPOINT_URL"))
    key = (endpoint, region, id(s3), env)
    with _LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            session = s3.session
            if session is None:
                import boto3

                session = boto3.session.Session()
            region = region or session.region_name or s3.data.meta.region_name or "us-east-1"
            client = _CLIENTS[key] = session.client(
                "sqs", endpoint_url=endpoint, region_name=region,
                config=Config(retries={"max_attempts": 3, "mode": "standard"}, read_timeout=60))
    return Queue(url, client)


def setup_notifications(prefix_uri: str, queue_url: str, config_id: str) -> dict[str, str]:
    """For a user who owns both: the queue's policy lets S3 send it the bucket's events, and the bucket sends
    `s3:ObjectCreated:*` events of keys under the prefix to the queue (a notification configuration named
    `config_id`, replaced if there; the bucket's other configurations are kept). S3 then sends the queue an
    `s3:TestEvent`, which watches ignore."""
    from pxt_assets import stores
    from pxt_assets.stores.s3 import parse

    loc = parse(prefix_uri)
    if loc.flavor != "s3":
        raise StoreError(f"{prefix_uri}: bucket notifications to SQS are an Amazon S3 feature; R2, B2 and Tigris "
                         "deliver events through their own services", kind="invalid")
    queue = queue_for(queue_url, prefix_uri)
    arn = queue.arn()
    queue.allow_bucket(loc.api_bucket, config_id)
    stores.store_for(prefix_uri).add_queue_notification(prefix_uri, arn, config_id)
    return {"bucket": loc.bucket, "prefix": folder_prefix(loc.key), "queue_arn": arn, "id": config_id}
