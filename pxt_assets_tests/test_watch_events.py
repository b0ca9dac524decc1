"""A watch with a queue (`t.watch("s3://b/in/", queue=URL)`): new objects from the bucket's notifications, on
moto's server (it delivers S3 notifications to SQS), each object taken exactly once, with no listing."""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import datetime
import json
import sys
import time

import boto3
import dagster as dg
import pytest

import pxt_assets as pxt
from pxt_assets import stores, watch
from pxt_assets.stores import sqs
from pxt_assets.stores.s3 import parse
from pxt_assets.watch import WatchCursor
from pxt_assets_tests.conftest import SAMPLES, unique_bucket
from pxt_assets_tests.test_cli_and_ui import pxt_env  # noqa: F401 - a fixture
from pxt_assets_tests.test_faults import child_env, output_of, run
from pxt_assets_tests.test_watch import _manifest_uris, _run, _state, _tick, daemon

SUBPROCESS_TIMEOUT_S = 300


# -- the records of a message --------------------------------------------------------------------------

def _record(key: str, name: str = "ObjectCreated:Put", bucket: str = "b", when: str = "2026-01-02T03:04:05.250Z"):
    return {"eventVersion": "2.1", "eventSource": "aws:s3", "eventTime": when, "eventName": name,
            "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": 7, "eTag": "abc"}}}


def test_records_give_url_decoded_keys_and_test_events_and_other_types_give_none():
    body = json.dumps({"Records": [_record("in/a+b%2Bc%C3%A9.jpg"), _record("in/gone.jpg", "ObjectRemoved:Delete"),
                                   _record("in/x.jpg", "ObjectRestore:Completed")]})
    (event,) = sqs.object_events(body)
    assert (event.bucket, event.key, event.size, event.etag) == ("b", "in/a b+cé.jpg", 7, "abc")
    assert event.time == datetime.datetime(2026, 1, 2, 3, 4, 5, 250000, datetime.timezone.utc).timestamp()
    test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-01-02T03:04:05Z", "Bucket": "b"}
    assert sqs.object_events(json.dumps(test_event)) == []
    assert sqs.object_events("not json") == [] and sqs.object_events('{"Records": "x"}') == []
    # S3 -> SNS -> SQS: the event is the notification's Message
    wrapped = json.dumps({"Type": "Notification", "Message": json.dumps({"Records": [_record("in/s.jpg")]})})
    assert [e.key for e in sqs.object_events(wrapped)] == ["in/s.jpg"]


def test_objects_under_a_prefix_are_named_as_its_listing_names_them():
    body = json.dumps({"Records": [_record("in/a.jpg", bucket="bkt"), _record("in", bucket="bkt"),
                                   _record("inx/b.jpg", bucket="bkt"), _record("in/sub/", bucket="bkt"),
                                   _record("in/c.jpg", bucket="other")]})
    found = sqs.objects_under(body, "s3://bkt/in")
    assert [(o.uri, o.size, o.etag) for o in found] == [("s3://bkt/in/a.jpg", 7, "abc")]


def test_a_denied_queue_is_named_redacted_and_not_retried():
    from botocore.exceptions import ClientError

    url = "https://sqs.us-east-1.amazonaws.com/123456789012/q?X-Amz-Signature=abcdef"
    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "not yours"},
                          "ResponseMetadata": {"HTTPStatusCode": 403}}, "ReceiveMessage")
    error = sqs._queue_error("cannot receive from", url, denied)
    assert error.kind == "access_denied" and not error.retryable
    assert "queue https://sqs.us-east-1.amazonaws.com/123456789012/q" in str(error) and "abcdef" not in str(error)
    throttled = ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"},
                             "ResponseMetadata": {"HTTPStatusCode": 400}}, "ReceiveMessage")
    assert sqs._queue_error("cannot receive from", url, throttled).retryable  # ridden out within the budget


def test_a_queue_needs_an_s3_prefix_and_a_sensor(pxt_home):
    t = pxt.MediaTable("events/bad", {"img": pxt.Image})
    q = "https://sqs.us-east-1.amazonaws.com/123456789012/q"
    with pytest.raises(pxt.Error, match="s3:// prefixes"):
        t.watch("https://acct.r2.cloudflarestorage.com/b/in/", queue=q)
    with pytest.raises(pxt.Error, match="cron_schedule"):
        t.watch("s3://bkt/in/", queue=q, cron_schedule="* * * * *")
    with pytest.raises(pxt.Error, match="queue URL"):
        t.watch("s3://bkt/in/", queue="arn:aws:sqs:us-east-1:123456789012:q")
    with pytest.raises(pxt.Error, match="goes with queue="):
        t.watch("s3://bkt/in/", reconcile_every=3600)


# -- on moto's server -----------------------------------------------------------------------------------

class Setup:
    """A bucket and a queue on moto, a catalog table watching `in/` with the queue (configured by
    `python -m pxt_assets watch-setup`), and counters of the S3 and SQS calls the watch's clients make."""

    def __init__(self, s3_env, path: str = "events/media", visibility_s: int = 30, **watch_kw) -> None:
        self.bucket = unique_bucket("events")
        self.s3 = s3_env.client()
        self.s3.create_bucket(Bucket=self.bucket)
        self.sqs = boto3.client("sqs", endpoint_url=s3_env.endpoint, region_name="us-east-1")
        self.queue = self.sqs.create_queue(QueueName=self.bucket,
                                           Attributes={"VisibilityTimeout": str(visibility_s)})["QueueUrl"]
        self.prefix = f"s3://{self.bucket}/in/"
        pxt.create_dir(path.split("/")[0], if_exists="ignore")
        self.table = pxt.create_table(path, {"img": pxt.Image})
        self.table.add_computed_column(width=self.table.img.width)
        self.table.watch(self.prefix, queue=self.queue, **watch_kw)
        self.calls: collections.Counter[str] = collections.Counter()
        self.data = stores.store_for(self.prefix).clients_for(parse(self.prefix)).data  # what lists the prefix
        self.data.meta.events.register("before-call.s3", lambda model, **_: self.calls.update([model.name]))
        sqs.queue_for(self.queue, self.prefix).client.meta.events.register(
            "before-call.sqs", lambda model, **_: self.calls.update([model.name]))

    def put(self, name: str, data: bytes | None = None) -> str:
        self.s3.put_object(Bucket=self.bucket, Key="in/" + name, Body=data or SAMPLES[0].read_bytes())
        return self.prefix + name

    def waiting(self) -> int:
        attrs = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["All"])["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def visible(self) -> int:
        attrs = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["ApproximateNumberOfMessages"])
        return int(attrs["Attributes"]["ApproximateNumberOfMessages"])

    def taken(self) -> list[str]:
        from pxt_assets import rowstore

        store = rowstore.for_settings(self.table.settings)
        return [r["img"] for b in self.table.batches() for r in store.manifest(self.table.spec.slug, b)]


@pytest.fixture(autouse=True)
def _short_polls(monkeypatch):
    monkeypatch.setattr(watch, "RECEIVE_WAIT_S", 1.0)


def test_watch_setup_configures_the_bucket_and_the_queue_and_objects_put_become_rows_without_listing(
        pxt_home, s3_env, instance, capsys):
    from pxt_assets.__main__ import main

    s = Setup(s3_env)
    assert main(["watch-setup", "events/media"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["prefix"] == "in/" and printed["queue_arn"].endswith(":" + s.bucket)
    (conf,) = s.s3.get_bucket_notification_configuration(Bucket=s.bucket)["QueueConfigurations"]
    assert conf["Events"] == ["s3:ObjectCreated:*"] and conf["Id"] == "pxt-events__media"
    policy = json.loads(s.sqs.get_queue_attributes(QueueUrl=s.queue, AttributeNames=["Policy"])["Attributes"]["Policy"])
    assert [st["Principal"] for st in policy["Statement"]] == [{"Service": "s3.amazonaws.com"}]
    assert main(["watch-setup", "events/media"]) == 0  # again: its own configuration replaced, not doubled
    assert len(s.s3.get_bucket_notification_configuration(Bucket=s.bucket)["QueueConfigurations"]) == 1

    t = pxt.get_table("events/media")
    uris = [s.put(f"{i} é+{p.name}", p.read_bytes()) for i, p in enumerate(SAMPLES)]  # keys URL-encoded in events
    s.put("notes.txt", b"not an image")
    s.s3.put_object(Bucket=s.bucket, Key="elsewhere/x.jpg", Body=b"x")
    s.calls.clear()
    first = _tick(t, instance)
    assert [int(r.tags["pxt/rows"]) for r in first.run_requests] == [len(SAMPLES)]
    assert sorted(s.taken()) == sorted(uris)
    _run(t, instance, first)
    assert sorted(t.select(t.width).collect()["width"]) == [481, 640, 640]
    assert s.waiting() == 0  # the test events, the .txt's and every taken object's message: deleted

    later = s.put("later.jpg")
    second = _tick(t, instance, cursor=first.cursor)
    _run(t, instance, second)
    quiet = _tick(t, instance, cursor=second.cursor)
    assert quiet.run_requests == [] and t.count() == 4
    assert later in set(t.select(t.img.fileurl).collect()["img_fileurl"])
    assert s.calls["ListObjectsV2"] == 0 and s.calls["ReceiveMessage"] >= 3 and s.calls["DeleteMessageBatch"] >= 2
    assert s.calls["GetObject"] >= 4  # the counted client is the one the pipeline uses (it read the images)


def test_a_message_delivered_twice_or_late_adds_nothing_twice(pxt_home, s3_env, instance):
    s = Setup(s3_env)
    sqs.setup_notifications(s.prefix, s.queue, "pxt-test")
    s.sqs.purge_queue(QueueUrl=s.queue)  # the test event
    a = s.put("a.jpg")
    (msg,) = s.sqs.receive_message(QueueUrl=s.queue, WaitTimeSeconds=1)["Messages"]
    s.sqs.delete_message(QueueUrl=s.queue, ReceiptHandle=msg["ReceiptHandle"])
    for _ in range(3):  # the same event, three times (an at-least-once queue may do that)
        s.sqs.send_message(QueueUrl=s.queue, MessageBody=msg["Body"])
    t = s.table
    first = _tick(t, instance)
    assert [int(r.tags["pxt/rows"]) for r in first.run_requests] == [1] and s.waiting() == 0
    _run(t, instance, first)
    # delivered late, after its batch committed, and beside a new object
    s.sqs.send_message(QueueUrl=s.queue, MessageBody=msg["Body"])
    b = s.put("b.jpg")
    second = _tick(t, instance, cursor=first.cursor)
    assert [int(r.tags["pxt/rows"]) for r in second.run_requests] == [1]
    _run(t, instance, second)
    assert sorted(s.taken()) == [a, b] and t.count() == 2 and s.waiting() == 0
    third = _tick(t, instance, cursor=second.cursor)
    assert third.run_requests == [] and third.cursor == second.cursor


def test_a_message_naming_more_objects_than_a_tick_takes_comes_back_for_the_next_tick(pxt_home, s3_env, instance):
    s = Setup(s3_env, path="events/small", max_batch_rows=2, max_batches_per_tick=1)  # 2 objects a tick
    uris = [s.put(f"{i}.jpg") for i in range(3)]
    s.sqs.purge_queue(QueueUrl=s.queue)
    records = [_record(f"in/{i}.jpg", bucket=s.bucket, when=f"2026-01-02T03:04:0{i}Z") for i in range(3)]
    s.sqs.send_message(QueueUrl=s.queue, MessageBody=json.dumps({"Records": records}))  # one message, 3 objects
    first = _tick(s.table, instance)
    assert [int(r.tags["pxt/rows"]) for r in first.run_requests] == [2] and sorted(s.taken()) == uris[:2]
    assert s.visible() == 1  # released at once, not after the 30 s visibility timeout
    second = _tick(s.table, instance, cursor=first.cursor)
    assert [int(r.tags["pxt/rows"]) for r in second.run_requests] == [1] and sorted(s.taken()) == uris
    assert s.waiting() == 0


def test_a_listing_watch_switched_to_a_queue_and_back_takes_nothing_twice(pxt_home, s3_env, instance):
    """The sensor keeps its name and its cursor, and both modes share the record of what the watch took."""
    s = Setup(s3_env, path="events/switch")
    t = s.table
    t.watch(s.prefix)  # listing first
    a = s.put("a.jpg")
    listed = _tick(t, instance)
    assert s.taken() == [a] and s.calls["ListObjectsV2"] == 1
    t.watch(s.prefix, queue=s.queue)
    sqs.setup_notifications(s.prefix, s.queue, "pxt-test")
    s.put("a.jpg")  # written again in place: an ObjectCreated event for an object already taken
    b = s.put("b.jpg")
    s.calls.clear()
    evented = _tick(t, instance, cursor=listed.cursor)
    assert [int(r.tags["pxt/rows"]) for r in evented.run_requests] == [1] and sorted(s.taken()) == [a, b]
    assert s.calls["ListObjectsV2"] == 0 and s.waiting() == 0
    t.watch(s.prefix)  # and back to listing, with the cursor the event ticks kept
    back = _tick(t, instance, cursor=evented.cursor)
    assert back.run_requests == [] and sorted(s.taken()) == [a, b]


CHILD_TICK = """
import sys
import boto3
import dagster as dg
import pxt_assets as pxt

t = pxt.get_table(sys.argv[1])
defs = t.definitions()
with dg.build_sensor_context(definitions=defs) as ctx:
    defs.resolve_sensor_def(t.spec.slug + "_sensor")(ctx)
print("the tick ended")
"""


def test_a_sensor_killed_between_recording_and_deleting_takes_nothing_twice(pxt_home, s3_env, instance, tmp_path):
    """The child's tick records its batch and is killed (kill -9) before it deletes its messages. They come
    back after the queue's visibility timeout; the next tick finds their objects taken, deletes them, and
    requests the lost tick's batch again (its cursor was never kept): one batch, each object once."""
    s = Setup(s3_env, visibility_s=2)
    sqs.setup_notifications(s.prefix, s.queue, "pxt-test")
    uris = sorted(s.put(p.name, p.read_bytes()) for p in SAMPLES)
    env = child_env(pxt_home, tmp_path / "child_dagster", PXT_FAULT_POINT="watch_before_delete:1")
    child = run([sys.executable, "-c", CHILD_TICK, "events/media"], env)
    assert child.returncode == -9, output_of(child)
    t = s.table
    (recorded,) = t.batches()
    assert sorted(s.taken()) == uris
    deadline = time.monotonic() + 60
    while s.visible() < len(SAMPLES):  # the undeleted messages reappear
        assert time.monotonic() < deadline, "the messages never came back"
        time.sleep(0.2)
    s.calls.clear()
    after = _tick(t, instance)
    assert [r.partition_key for r in after.run_requests] == [recorded]  # the lost tick's, asked again
    assert t.batches() == [recorded] and s.waiting() == 0 and s.calls["DeleteMessageBatch"] >= 1
    _run(t, instance, after)
    assert t.count() == len(SAMPLES)
    assert _tick(t, instance, cursor=after.cursor).run_requests == []


def test_a_crash_before_recording_loses_nothing(pxt_home, s3_env, instance, monkeypatch):
    """A tick that fails after receiving, before recording (here: the row store refuses), deletes nothing;
    the messages come back after the visibility timeout and the next tick takes their objects."""
    from pxt_assets import rowstore

    s = Setup(s3_env, visibility_s=1)
    sqs.setup_notifications(s.prefix, s.queue, "pxt-test")
    a = s.put("a.jpg")

    def refuse(*args, **kwargs):
        raise RuntimeError("the database went away")

    with monkeypatch.context() as m:
        m.setattr(rowstore.RowStore, "record_watch_batches", refuse)
        with pytest.raises(Exception, match="the database went away"):
            _tick(s.table, instance)
    assert s.table.batches() == [] and s.waiting() >= 1
    deadline = time.monotonic() + 60
    while s.visible() == 0:
        assert time.monotonic() < deadline, "the message never came back"
        time.sleep(0.2)
    result = _tick(s.table, instance)
    assert [int(r.tags["pxt/rows"]) for r in result.run_requests] == [1] and s.taken() == [a]


def test_reconcile_every_lists_now_and_then_and_never_takes_twice(pxt_home, s3_env, instance):
    s = Setup(s3_env, reconcile_every=3600)
    before = s.put("before.jpg")  # put before the bucket notified anyone: only a listing finds it
    sqs.setup_notifications(s.prefix, s.queue, "pxt-test")
    evented = s.put("evented.jpg")
    t = s.table
    s.calls.clear()
    first = _tick(t, instance)  # no reconciliation yet: this tick lists, and receives
    assert sorted(s.taken()) == sorted([before, evented]) and s.calls["ListObjectsV2"] == 1
    # the listing took both; the event found its object in the listing's batch, and was deleted
    assert [int(r.tags["pxt/rows"]) for r in first.run_requests] == [2] and s.waiting() == 0
    s.calls.clear()
    quiet = _tick(t, instance, cursor=first.cursor)
    assert quiet.run_requests == [] and s.calls["ListObjectsV2"] == 0
    # an hour later (the cursor says so), the listing runs again and finds nothing new
    dropped = s.put("dropped.jpg")
    s.sqs.purge_queue(QueueUrl=s.queue)  # its notification lost
    cursor = json.loads(quiet.cursor)
    cursor["reconciled"] -= 3601
    s.calls.clear()
    again = _tick(t, instance, cursor=json.dumps(cursor))
    assert s.calls["ListObjectsV2"] == 1 and [int(r.tags["pxt/rows"]) for r in again.run_requests] == [1]
    assert sorted(s.taken()) == sorted([before, evented, dropped])
    assert WatchCursor.from_json(again.cursor).reconciled > cursor["reconciled"] + 3600


def test_a_missing_queue_fails_the_tick_naming_it(pxt_home, s3_env, instance):
    s = Setup(s3_env)
    t = pxt.MediaTable("events/missing", {"img": pxt.Image})
    missing = s.queue.rsplit("/", 1)[0] + "/no-such-queue"
    t.watch(s.prefix, queue=missing)
    with pytest.raises(pxt.Error, match=r"cannot receive from queue .*/no-such-queue: the queue does not exist"):
        _tick(t, instance)


def test_a_queue_outage_is_ridden_out_within_the_retry_budget(pxt_home, s3_env, instance):
    """The queue reached through a real proxy (a queue URL's host is its endpoint off AWS) that answers 503
    to every request for 3 s (timed by the proxy): the tick waits it out and takes the object."""
    from pxt_assets_tests.faultproxy import FaultProxy, Outage

    s = Setup(s3_env)
    sqs.setup_notifications(s.prefix, s.queue, "pxt-test")
    a = s.put("a.jpg")
    proxy = FaultProxy("127.0.0.1", s3_env.port)
    try:
        t = pxt.MediaTable("events/outage", {"img": pxt.Image})
        t.watch(s.prefix, queue=s.queue.replace(s3_env.endpoint, proxy.endpoint))
        proxy.start(Outage(status=503, seconds=3))
        result = _tick(t, instance)
        assert proxy.failed and proxy.forwarded  # it failed, then got through
        assert [int(r.tags["pxt/rows"]) for r in result.run_requests] == [1]
        assert [u for b in t.batches() for u in _manifest_uris(t, b)] == [a] and s.waiting() == 0
    finally:
        proxy.close()


def test_a_yaml_table_takes_queue_beside_its_prefix(pxt_home, tmp_path, monkeypatch):
    from dagster.components.core.load_defs import build_defs_for_component

    from pxt_assets_tests.test_components import _component

    q = "https://sqs.us-east-1.amazonaws.com/123456789012/incoming"
    monkeypatch.setenv("EVENTS_QUEUE", q)
    component = _component(tmp_path, """
type: pxt_assets.MediaTableComponent
attributes:
  path: yaml/events
  schema: {img: Image}
  watch:
    prefix: s3://bkt-events/incoming/
    queue: "{{ env('EVENTS_QUEUE', '') }}"
    reconcile_every: 3600
""", "events")
    defs = build_defs_for_component(component)
    (table,) = component.tables
    assert (table._watch.queue, table._watch.reconcile_every) == (q, 3600.0)
    assert "yaml__events_sensor" in {s.name for s in defs.get_repository_def().sensor_defs}


DAEMON_DEFS = """
import pxt_assets as pxt

t = pxt.MediaTable("events/daemon", {"img": pxt.Image}, automation=False)
t.watch(PREFIX, queue=QUEUE, max_batch_rows=250, max_batches_per_tick=2, minimum_interval_seconds=1)
defs = t.definitions()
"""


@contextlib.contextmanager
def _daemon(tmp_path, prefix: str, queue: str):
    """Dagster's sensor daemon code on a code location declaring `events/daemon` watching `prefix` with
    `queue`: yields (instance, tick(), the table's batch job, to run its batches here)."""
    from pxt_assets.assets import batch_job_name

    source = f"PREFIX = {prefix!r}\nQUEUE = {queue!r}\n" + DAEMON_DEFS
    declared: dict = {}
    exec(compile(source, "daemon_defs", "exec"), declared)  # the same table, in this module
    t = declared["t"]
    with daemon(tmp_path, source) as (instance, tick):
        yield instance, tick, t.definitions().resolve_job_def(batch_job_name(t.spec))


def _ticks(instance) -> list:
    state = _state(instance, "events__daemon_sensor")
    return instance.get_ticks(state.instigator_origin_id, state.selector_id)


def test_a_missing_queue_fails_the_daemons_tick_with_an_error_naming_it(pxt_home, s3_env, tmp_path):
    """What the UI shows on the sensor's ticks: a failed tick, its error naming the queue."""
    s = Setup(s3_env, path="events/unused")
    missing = s.queue.rsplit("/", 1)[0] + "/no-such-queue"
    with _daemon(tmp_path, s.prefix, missing) as (instance, tick, _):
        tick()
        (failed,) = _ticks(instance)
    assert failed.status.value == "FAILURE"
    assert f"cannot receive from queue {missing}: the queue does not exist" in str(failed.error)


def test_a_thousand_objects_arriving_while_the_daemon_runs_become_a_thousand_rows_each_once(
        pxt_home, s3_env, tmp_path):
    """Dagster's sensor daemon code (in this process, its instance queueing runs) ticks while 1,000 objects are
    put by 8 threads; after each tick, the runs it created are executed here. No listing at all."""
    from pxt_assets import rowstore
    from pxt_assets.config import current_settings

    s = Setup(s3_env, path="events/unused")
    sqs.setup_notifications(s.prefix, s.queue, "pxt-test")
    n = 1000
    store = rowstore.for_settings(current_settings())
    with _daemon(tmp_path, s.prefix, s.queue) as (instance, tick, job), \
            concurrent.futures.ThreadPoolExecutor(8) as pool:
        puts = [pool.submit(s.put, f"{i:04d}.jpg", b"x") for i in range(n)]
        executed: set[str] = set()
        for _ in range(200):
            tick()
            for r in instance.get_runs(dg.RunsFilter(tags={"dagster/sensor_name": "events__daemon_sensor"})):
                key = r.tags["dagster/partition"]
                if key not in executed:
                    executed.add(key)
                    assert job.execute_in_process(instance=instance, partition_key=key).success
            if all(p.done() for p in puts) and s.waiting() == 0 and not store.batches("events__daemon", "created"):
                break
        for p in puts:
            p.result()
        ticks = _ticks(instance)
        assert not [tk for tk in ticks if tk.status.value == "FAILURE"], [str(tk.error) for tk in ticks]
        by_sensor = instance.get_runs(dg.RunsFilter(tags={"dagster/sensor_name": "events__daemon_sensor"}))
        assert sorted(r.tags["dagster/partition"] for r in by_sensor) == sorted(executed)  # one run a batch
    committed = store.batches("events__daemon", "committed")
    assert sorted(committed) == sorted(executed) == sorted(store.batches("events__daemon"))
    rt = store.row_table("events__daemon")
    uris = [r["value"] for b in committed for r in store.read_columns(rt, b, ["img"])["img"].values()]
    assert len(uris) == len(set(uris)) == n
    assert sorted(uris) == sorted(f"{s.prefix}{i:04d}.jpg" for i in range(n))
    # the client that would list is the one counted (the store keeps one per endpoint), and it never listed
    assert stores.store_for(s.prefix).clients_for(parse(s.prefix)).data is s.data
    assert s.calls["ListObjectsV2"] == 0 and s.calls["ReceiveMessage"] > 0


def test_with_dagster_dev_an_object_put_becomes_a_row_from_its_notification_with_no_listing(
        pxt_env, s3_server):  # noqa: F811
    """The demo table with PXT_DEMO_WATCH_QUEUE, `python -m pxt_assets watch-setup` run as a user would, and
    `dagster dev` running: an image put in the bucket becomes a row, and moto's server (which sees every
    process's requests) is never asked for a listing of the bucket."""
    import logging

    from pxt_assets_tests.test_cli_and_ui import output_of as cli_output
    from pxt_assets_tests.test_cli_and_ui import start_dagster_dev, stop
    from pxt_assets_tests.test_e2e_watch import put_cat_and_wait_for_its_row

    bucket = unique_bucket("events-e2e")
    s3 = s3_server.client()
    s3.create_bucket(Bucket=bucket)
    queue = boto3.client("sqs", endpoint_url=s3_server.endpoint, region_name="us-east-1", aws_access_key_id="testing",
                         aws_secret_access_key="testing").create_queue(QueueName=bucket)["QueueUrl"]
    pxt_env.env.update(AWS_ENDPOINT_URL=s3_server.endpoint, AWS_ACCESS_KEY_ID="testing",
                       AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
                       PXT_DEMO_WATCH=f"s3://{bucket}/incoming/", PXT_DEMO_WATCH_QUEUE=queue,
                       PXT_DEMO_WATCH_INTERVAL="5")
    served: list[str] = []

    class Requests(logging.Handler):  # moto's server logs each request it serves (werkzeug)
        def emit(self, record: logging.LogRecord) -> None:
            if f"/{bucket}" in record.getMessage():
                served.append(record.getMessage())

    handler = Requests()
    from werkzeug import _internal as werkzeug_internal

    # the logger werkzeug logs to (it keeps the one it first got)
    werkzeug = werkzeug_internal._logger or logging.getLogger("werkzeug")
    # (another test's logging setup may have disabled the logger or raised its level: the count needs it)
    was = werkzeug.disabled, werkzeug.level, logging.root.manager.disable
    logging.disable(logging.NOTSET)
    werkzeug.disabled = False
    werkzeug.setLevel(logging.INFO)
    werkzeug.addHandler(handler)
    try:
        setup = pxt_env.cli("watch-setup", "blob_storage_demo/media")
        assert setup.returncode == 0, cli_output(setup)
        proc, _, log = start_dagster_dev(pxt_env)
        try:
            batch = put_cat_and_wait_for_its_row(pxt_env, proc, log, s3, bucket)
            assert list(pxt_env.column("source_image", batch)["value"]) == [f"s3://{bucket}/incoming/cat.jpg"]
            assert list(pxt_env.column("width", batch)["value"]) == [481]
        finally:
            stop(proc)
    finally:
        werkzeug.removeHandler(handler)
        werkzeug.disabled = was[0]
        werkzeug.setLevel(was[1])
        logging.disable(was[2])
    assert any(f"PUT /{bucket}/incoming/cat.jpg" in line for line in served)  # the log sees the bucket's requests
    assert [line for line in served if "list-type=2" in line] == []
