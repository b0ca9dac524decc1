"""Sensors and schedules on new objects, and automation over new batches."""

from __future__ import annotations

import contextlib
import datetime
import os
import time

import dagster as dg
import pytest

import pxt_assets as pxt
from pxt_assets import stores
from pxt_assets.assets import batch_job_name
from pxt_assets.stores.base import ObjectInfo
from pxt_assets.watch import WatchCursor, WatchSpec, name_of, plan
from pxt_assets_tests.conftest import SAMPLES
from pxt_assets_tests.places import SERVER_FIXTURE, Place


def _objs(*pairs: tuple[str, float]) -> list[ObjectInfo]:
    return [ObjectInfo(uri, mtime, 10) for uri, mtime in pairs]


def _uris(batches) -> list[list[str]]:
    return [list(b.uris) for b in batches]


# -- the cursor (pure planning over listings) ----------------------------------------------------------

def test_objects_written_in_the_same_second_as_the_last_tick_are_not_skipped():
    w = WatchSpec("s3://b/in/", "img")
    batches, cur = plan(_objs(("s3://b/in/a.jpg", 100.0)), WatchCursor(), w)
    assert _uris(batches) == [["s3://b/in/a.jpg"]]
    # b.jpg lands in the same (whole) second, after the tick
    batches, cur = plan(_objs(("s3://b/in/a.jpg", 100.0), ("s3://b/in/b.jpg", 100.0)), cur, w)
    assert _uris(batches) == [["s3://b/in/b.jpg"]]
    batches, cur2 = plan(_objs(("s3://b/in/a.jpg", 100.0), ("s3://b/in/b.jpg", 100.0)), cur, w)
    assert batches == [] and cur2 is cur  # never twice


def test_a_backlog_becomes_capped_batches_oldest_first_over_several_ticks():
    w = WatchSpec("s3://b/in/", "img", max_batch_rows=10, max_batches_per_tick=2)
    listing = _objs(*[(f"s3://b/in/{i:03d}.jpg", 1000.0 + i) for i in reversed(range(25))])
    batches, cur = plan(listing, WatchCursor(), w)
    assert [len(b.uris) for b in batches] == [10, 10]
    assert batches[0].uris[0] == "s3://b/in/000.jpg" and batches[1].uris[-1] == "s3://b/in/019.jpg"
    batches, cur = plan(listing, WatchCursor.from_json(cur.to_json()), w)  # restart from the saved cursor
    assert _uris(batches) == [[f"s3://b/in/{i:03d}.jpg" for i in range(20, 25)]]
    assert plan(listing, cur, w)[0] == []


@pytest.mark.parametrize("kept", [True, False], ids=["listed-once", "listed-again"])
def test_a_late_object_is_taken_however_late_and_nothing_is_retaken(kept, monkeypatch):
    """The objects below the horizon are kept from the listing (or, past KEEP_BELOW, listed again)."""
    from pxt_assets import watch

    if not kept:
        monkeypatch.setattr(watch, "KEEP_BELOW", 2)
    w = WatchSpec("s3://b/in/", "img", lookback_seconds=60)
    taken = Taken()
    batches, cur = plan(_objs(("s3://b/in/new.jpg", 500.0)), WatchCursor(), w, taken)
    taken.take(batches)
    old = [(f"s3://b/in/old{i}.jpg", 300.0 + i) for i in range(3)]  # taken long ago
    batches, cur = plan(_objs(("s3://b/in/new.jpg", 500.0), *old), cur, w, taken)
    taken.take(batches)
    late = _objs(("s3://b/in/new.jpg", 500.0), ("s3://b/in/multipart.jpg", 470.0), ("s3://b/in/ancient.jpg", 100.0),
                 *old)
    listings = []

    def listing():
        listings.append(1)
        return iter(late)

    batches, cur = plan(listing, cur, w, taken)
    # within the look-back window (multipart.jpg) or stamped long before it (ancient.jpg: an upload that took
    # an hour): both found, oldest first
    assert _uris(batches) == [["s3://b/in/ancient.jpg", "s3://b/in/multipart.jpg"]]
    assert len(listings) == (1 if kept else 2)
    taken.take(batches)
    assert plan(late, WatchCursor.from_json(cur.to_json()), w, taken)[0] == []


def test_batch_keys_are_deterministic_and_suffixes_filter():
    w = WatchSpec("s3://b/in/", "img", suffixes=(".jpg",))
    listing = _objs(("s3://b/in/a.jpg", 5.0), ("s3://b/in/notes.txt", 6.0), ("s3://b/in/B.JPG", 7.0))
    first, _ = plan(listing, WatchCursor(), w)
    again, _ = plan(listing, WatchCursor(), w)
    assert first == again and _uris(first) == [["s3://b/in/a.jpg", "s3://b/in/B.JPG"]]
    assert first[0].key.startswith("19700101T000005")



class Taken:
    """What the database would say: the names taken so far, and every question asked of it."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.asked: list[int] = []

    def __call__(self, names):
        self.asked.append(len(names))
        return self.names & set(names)

    def take(self, batches) -> None:
        self.names.update(name_of(u) for b in batches for u in b.uris)


def test_a_quiet_tick_asks_only_about_new_names_and_a_deletion_is_settled_once():
    w = WatchSpec("s3://b/in/", "img", lookback_seconds=10, max_batch_rows=500)
    listing = _objs(*[(f"s3://b/in/{i:04d}.jpg", 1000.0 + i) for i in range(300)])
    taken = Taken()
    batches, cur = plan(listing, WatchCursor(), w, taken)
    taken.take(batches)
    assert sum(len(b.uris) for b in batches) == 300 and cur.count == 289 and len(cur.seen) == 11
    taken.asked.clear()
    # 3 new objects: the database is asked about those 3 names only
    listing += _objs(*[(f"s3://b/in/new{i}.jpg", 2000.0) for i in range(3)])
    batches, cur = plan(listing, WatchCursor.from_json(cur.to_json()), w, taken)
    taken.take(batches)
    assert _uris(batches) == [[f"s3://b/in/new{i}.jpg" for i in range(3)]] and taken.asked == [3]
    taken.asked.clear()
    assert plan(listing, cur, w, taken) == ([], cur) and taken.asked == []
    # an object below the horizon is deleted: one tick asks about every name, takes nothing, and settles
    del listing[5]
    batches, cur = plan(listing, cur, w, taken)
    assert batches == [] and sum(taken.asked) == len(listing) - 3  # all but the 3 the cursor names
    taken.asked.clear()
    assert plan(listing, cur, w, taken) == ([], cur) and taken.asked == []


def test_an_object_rewritten_in_place_or_taken_by_a_lost_tick_is_not_taken_again():
    w = WatchSpec("s3://b/in/", "img", lookback_seconds=10)
    taken = Taken()
    batches, cur = plan(_objs(("s3://b/in/a.jpg", 100.0)), WatchCursor(), w, taken)
    taken.take(batches)
    # a.jpg written again an hour later (the cursor no longer names it), and b.jpg, taken by a tick whose
    # cursor was lost (the database has it)
    taken.names.add(name_of("s3://b/in/b.jpg"))
    later = _objs(("s3://b/in/a.jpg", 3700.0), ("s3://b/in/b.jpg", 3700.0), ("s3://b/in/c.jpg", 3700.0))
    batches, cur = plan(later, cur, w, taken)
    assert _uris(batches) == [["s3://b/in/c.jpg"]]
    taken.take(batches)
    assert plan(later, cur, w, taken)[0] == []


# -- sensors against real listings ----------------------------------------------------------------------

def _table(name: str, prefix: str, **kw) -> pxt.MediaTable:
    t = pxt.MediaTable(name, {"img": pxt.Image})
    t.add_computed_column(width=t.img.width)
    t.watch(prefix, **kw)
    return t


def _tick(t: pxt.MediaTable, instance, cursor: str | None = None):
    defs = t.definitions()
    sensor = defs.resolve_sensor_def(f"{t.spec.slug}_sensor")
    with dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs) as ctx:
        result = sensor(ctx)
    return result


def _run(t: pxt.MediaTable, instance, result) -> None:
    for req in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
    job = t.definitions().resolve_job_def(batch_job_name(t.spec))
    for rr in result.run_requests:
        assert job.execute_in_process(instance=instance, partition_key=rr.partition_key).success


@pytest.fixture(params=["local", "s3", "gcs", "azure"])
def watched(request, pxt_home, tmp_path):
    if request.param == "local":
        folder = tmp_path / "incoming"
        folder.mkdir()

        def put(name: str, data: bytes) -> str:
            (folder / name).write_bytes(data)
            return (folder / name).as_uri()

        return str(folder), put
    provider = Place(request.param, request.getfixturevalue(SERVER_FIXTURE[request.param]))
    return provider.prefix + "incoming/", lambda name, data: provider.put("incoming/" + name, data)


def test_sensor_ticks_insert_new_objects_once_and_survive_a_restart(watched, instance):
    prefix, put = watched
    t = _table("watch/media", prefix, max_batch_rows=2)
    uris = [put(p.name, p.read_bytes()) for p in SAMPLES]
    put("readme.txt", b"not an image")
    first = _tick(t, instance)
    assert [len(r.partition_key) > 0 for r in first.run_requests] == [True, True]  # 3 images, 2 per batch
    assert sorted(u for b in t.batches() for u in _manifest_uris(t, b)) == sorted(uris)
    _run(t, instance, first)
    assert sorted(t.select(t.width).collect()["width"]) == [481, 640, 640]

    # a restarted process resumes from the saved cursor: nothing twice, only the new object
    restarted = _table("watch/media", prefix, max_batch_rows=2)
    again = _tick(restarted, instance, cursor=first.cursor)
    assert again.run_requests == [] and again.cursor == first.cursor
    newest = put("late.jpg", SAMPLES[0].read_bytes())
    later = _tick(t, instance, cursor=first.cursor)
    assert len(later.run_requests) == 1
    _run(t, instance, later)
    assert t.count() == 4 and newest in set(t.select(t.img.fileurl).collect()["img_fileurl"])


def _manifest_uris(t: pxt.MediaTable, batch: str) -> list[str]:
    from pxt_assets import rowstore

    return [r["img"] for r in rowstore.for_settings(t.settings).manifest(t.spec.slug, batch)]


def test_sensor_pages_through_a_listing_larger_than_a_page(pxt_home, s3_env, instance):
    provider = Place("s3", s3_env)
    client = s3_env.client()
    for i in range(1005):
        client.put_object(Bucket=provider.bucket, Key=f"big/{i:05d}.jpg", Body=b"x")
    t = _table("watch/big", provider.prefix + "big/", max_batch_rows=400, max_batches_per_tick=2)
    first = _tick(t, instance)
    assert [int(r.tags["pxt/rows"]) for r in first.run_requests] == [400, 400]
    second = _tick(t, instance, cursor=first.cursor)
    assert [int(r.tags["pxt/rows"]) for r in second.run_requests] == [205]
    assert _tick(t, instance, cursor=second.cursor).run_requests == []
    every = [u for b in t.batches() for u in _manifest_uris(t, b)]
    assert len(every) == len(set(every)) == 1005


def test_definitions_contain_the_named_sensor_and_a_running_automation_sensor(pxt_home, tmp_path):
    t = _table("blob_storage_demo/media", str(tmp_path), minimum_interval_seconds=30, max_batch_rows=1000)
    defs = pxt.definitions(t)
    sensor = defs.resolve_sensor_def("blob_storage_demo__media_sensor")
    assert sensor.minimum_interval_seconds == 30
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    auto = defs.resolve_sensor_def("pxt_assets_automation_sensor")
    assert auto.default_status == dg.DefaultSensorStatus.RUNNING


def test_schedule_variant_keeps_its_cursor_beside_the_table_once_its_runs_exist(pxt_home, tmp_path, instance):
    from pxt_assets import rowstore
    from pxt_assets.watch import _h

    folder = tmp_path / "drop"
    folder.mkdir()
    t = _table("watch/scheduled", str(folder), cron_schedule="*/5 * * * *")
    defs = t.definitions()
    schedule = defs.resolve_schedule_def("watch__scheduled_schedule")
    assert schedule.cron_schedule == "*/5 * * * *"

    def evaluate() -> list[dg.RunRequest]:
        with dg.build_schedule_context(instance=instance, repository_def=defs.get_repository_def()) as ctx:
            return list(schedule.evaluate_tick(ctx).run_requests or [])

    kv = rowstore.for_settings(t.settings)
    (folder / "a.jpg").write_bytes(SAMPLES[1].read_bytes())
    requests = evaluate()
    assert len(requests) == 1
    assert instance.has_dynamic_partition("watch__scheduled__batches", requests[0].partition_key)
    cursor_key = f"watch:watch__scheduled:{_h(t._watch.prefix)}"  # where the schedule keeps its cursor
    assert kv.get_value(cursor_key) is None  # proposed only: no run exists yet
    # the scheduler never made that run (it failed to submit, the daemon died): the next tick asks again
    (folder / "b.jpg").write_bytes(SAMPLES[0].read_bytes())
    again = evaluate()
    assert [r.run_key for r in again][:1] == [requests[0].run_key] and len(again) == 2
    # once both runs exist (as the scheduler creates them, tagged with their run keys), nothing is asked again
    job = defs.resolve_job_def(batch_job_name(t.spec))
    for rr in again:
        assert job.execute_in_process(instance=instance, partition_key=rr.partition_key,
                                      tags={"dagster/run_key": rr.run_key}).success
    assert evaluate() == []
    kept = WatchCursor.from_json(kv.get_value(cursor_key))  # the proposal, kept now that its runs exist
    assert kept.seq == 1 and len(kept.seen) == 2
    assert sorted(t.select(t.width).collect()["width"]) == [481, 640]


# -- automation -----------------------------------------------------------------------------------------

def test_automation_materializes_new_batches_but_backfills_a_new_column_only_on_request(pxt_home, tmp_path, instance):
    t = pxt.MediaTable("auto/media", {"img": pxt.Image})
    t.add_computed_column(width=t.img.width)
    first = t.insert(img=str(SAMPLES[0]), instance=instance)
    width = dg.AssetKey(["auto", "media", "width"])
    # the automation sensor ticks all along: one tick before the new batch, one after each change
    result = dg.evaluate_automation_conditions(defs=t.definitions(), instance=instance)
    assert result.get_num_requested(width) == 0
    # a new batch whose source alone was materialized (as from the UI): automation requests its columns
    key = "manual-batch"
    from pxt_assets import rowstore

    rowstore.for_settings(t.settings).create_batch(t.spec.slug, key, [{"img": str(SAMPLES[1])}])
    instance.add_dynamic_partitions("auto__media__batches", [key])
    result = dg.evaluate_automation_conditions(defs=t.definitions(), instance=instance, cursor=result.cursor)
    assert result.get_num_requested(width) == 0  # its source is still missing
    job = t.definitions().resolve_job_def(batch_job_name(t.spec))
    source_only = job.get_subset(asset_selection={dg.AssetKey(["auto", "media", "img"])})
    assert source_only.execute_in_process(instance=instance, partition_key=key).success
    result = dg.evaluate_automation_conditions(defs=t.definitions(), instance=instance, cursor=result.cursor)
    assert result.get_requested_partitions(width) == {key}

    # a column added to a table with batches is not materialized for them on its own...
    t.add_computed_column(height=t.img.height)
    result = dg.evaluate_automation_conditions(defs=t.definitions(), instance=instance, cursor=result.cursor)
    assert result.get_num_requested(dg.AssetKey(["auto", "media", "height"])) == 0
    # ...but on request, a backfill over every existing batch
    height_job = t.definitions().resolve_job_def(batch_job_name(t.spec)).get_subset(
        asset_selection={dg.AssetKey(["auto", "media", "height"])})
    for batch in (first.batch,):
        assert height_job.execute_in_process(instance=instance, partition_key=batch).success
    assert list(t.select(t.height).collect()["height"])[:1] == [640]


def test_changing_a_column_expression_changes_its_code_version(pxt_home):
    a = pxt.MediaTable("auto/cv", {"img": pxt.Image})
    a.add_computed_column(t=a.img.thumbnail((64, 64)))
    b = pxt.MediaTable("auto/cv", {"img": pxt.Image})
    b.add_computed_column(t=b.img.thumbnail((128, 128)))
    key = dg.AssetKey(["auto", "cv", "t"])
    versions = [d.definitions().resolve_assets_def(key).code_versions_by_key[key] for d in (a, b)]
    assert versions[0] != versions[1]  # Dagster marks the column stale ("code version changed")


# -- nothing lost: ticks Dagster did not record, late objects, what a tick costs -------------------------

DAEMON_DEFS = """
import pxt_assets as pxt

t = pxt.MediaTable("watch/daemon", {"img": pxt.Image}, automation=False)
t.watch(FOLDER, max_batch_rows=2)
defs = t.definitions()
"""


@contextlib.contextmanager
def daemon(tmp_path, source: str):
    """Dagster's own sensor daemon code, in this process, on a code location made of `source` (a module
    defining `defs`), its instance queueing runs: yields (instance, tick). `tick(fail=, sensor=)` is one
    iteration of the daemon, a minute after the last on Dagster's clock (past any minimum interval); `fail`
    makes Dagster fail `sensor`'s tick after the sensor returned, before it records the run requests."""
    import logging

    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.test_utils import create_test_daemon_workspace_context, freeze_time
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
    from dagster._daemon.sensor import execute_sensor_iteration
    from dagster._time import get_current_datetime

    defs_file = tmp_path / "daemon_defs.py"
    defs_file.write_text(source)
    origin = InProcessCodeLocationOrigin(LoadableTargetOrigin(python_file=str(defs_file), attribute="defs"),
                                         location_name="daemon_defs")
    (tmp_path / "dagster_home").mkdir()
    queued = {"run_coordinator": {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator"}}
    with dg.instance_for_test(overrides=queued, temp_dir=str(tmp_path / "dagster_home")) as instance, \
            create_test_daemon_workspace_context(InProcessWorkspaceLoadTarget(origin), instance) as workspace:
        start, minutes = get_current_datetime(), [0]

        def tick(fail: Exception | None = None, sensor: str | None = None) -> None:
            # "AUTOMATION_EVALUATIONS_ADDED": after the sensor returned, before Dagster records its run requests
            flags = {sensor: {"AUTOMATION_EVALUATIONS_ADDED": fail}} if fail else None
            minutes[0] += 1
            with freeze_time(start + datetime.timedelta(minutes=minutes[0])):
                list(execute_sensor_iteration(workspace, logging.getLogger("test"), None, None, debug_crash_flags=flags))

        yield instance, tick


def test_a_tick_whose_run_requests_dagster_did_not_record_is_requested_again(pxt_home, tmp_path):
    """Through Dagster's own sensor daemon code, in this process: the first tick lists and plans, then fails
    before Dagster records its run requests, so Dagster keeps no cursor. More objects land. The next tick
    requests the first tick's batches again (same keys) beside a new one: every object in exactly one
    batch, every batch with a run."""
    folder = tmp_path / "incoming"
    folder.mkdir()
    with daemon(tmp_path, f"FOLDER = {str(folder)!r}\n" + DAEMON_DEFS) as (instance, daemon_tick):
        sensor = "watch__daemon_sensor"
        for p in SAMPLES:
            (folder / p.name).write_bytes(p.read_bytes())
        daemon_tick(fail=RuntimeError("run requests refused"), sensor=sensor)
        state = _state(instance, sensor)
        (failed,) = instance.get_ticks(state.instigator_origin_id, state.selector_id)
        assert failed.status.value == "FAILURE" and "run requests refused" in str(failed.error)
        assert instance.get_runs() == [] and state.instigator_data.cursor is None
        t = _daemon_table(folder)
        first = t.batches()
        assert len(first) == 2  # 3 images, 2 per batch: planned and recorded, but no run

        (folder / "late.jpg").write_bytes(SAMPLES[0].read_bytes())
        daemon_tick()
        runs = instance.get_runs()
        assert sorted(r.tags["dagster/partition"] for r in runs) == sorted(t.batches())
        assert set(first) <= set(t.batches()) and len(t.batches()) == 3
        every = [u for b in t.batches() for u in _manifest_uris(t, b)]
        assert sorted(every) == sorted(p.as_uri() for p in [*(folder / s.name for s in SAMPLES), folder / "late.jpg"])
        assert _state(instance, sensor).instigator_data.cursor is not None

        daemon_tick()
        assert len(instance.get_runs()) == 3 and len(t.batches()) == 3


def _state(instance, sensor: str):
    (state,) = [s for s in instance.all_instigator_state() if s.name == sensor]
    return state


def _daemon_table(folder) -> pxt.MediaTable:
    t = pxt.MediaTable("watch/daemon", {"img": pxt.Image}, automation=False)
    t.watch(str(folder), max_batch_rows=2)
    return t


@pytest.mark.usefixtures("db")  # SQLite, then PostgreSQL
def test_a_file_stamped_older_than_the_lookback_window_is_found_once(pxt_home, tmp_path, instance):
    folder = tmp_path / "drop"
    folder.mkdir()
    t = _table("watch/late", str(folder), lookback_seconds=60)
    for p in SAMPLES:
        (folder / p.name).write_bytes(p.read_bytes())
    first = _tick(t, instance)
    assert [int(r.tags["pxt/rows"]) for r in first.run_requests] == [3]
    late = folder / "late.jpg"  # copied with its original time (cp -p, rsync -t): an hour old
    late.write_bytes(SAMPLES[0].read_bytes())
    hour_ago = time.time() - 3600
    os.utime(late, (hour_ago, hour_ago))
    assert late.stat().st_mtime < WatchCursor.from_json(first.cursor).at  # the look-back window alone misses it
    second = _tick(t, instance, cursor=first.cursor)
    assert [_manifest_uris(t, r.partition_key) for r in second.run_requests] == [[late.as_uri()]]
    assert _tick(t, instance, cursor=second.cursor).run_requests == []
    _run(t, instance, first)
    _run(t, instance, second)
    assert t.count() == 4


def test_a_multipart_upload_stamped_with_its_start_an_hour_ago_is_found(pxt_home, s3_env, instance):
    """S3 stamps a multipart upload with the time it was started. moto stamps it when completed, so moto's
    clock (it runs in this process) is set an hour back for the upload."""
    from unittest import mock

    import moto.s3.models

    provider = Place("s3", s3_env)
    t = _table("watch/multipart", provider.prefix + "in/", lookback_seconds=60)
    provider.put("in/a.jpg", SAMPLES[0].read_bytes())
    first = _tick(t, instance)
    assert len(first.run_requests) == 1
    s3 = s3_env.client()
    started = moto.s3.models.utcnow() - datetime.timedelta(hours=1)
    with mock.patch("moto.s3.models.utcnow", return_value=started):
        up = s3.create_multipart_upload(Bucket=provider.bucket, Key="in/big.jpg")
        part = s3.upload_part(Bucket=provider.bucket, Key="in/big.jpg", UploadId=up["UploadId"], PartNumber=1,
                              Body=SAMPLES[1].read_bytes())
        s3.complete_multipart_upload(Bucket=provider.bucket, Key="in/big.jpg", UploadId=up["UploadId"],
                                     MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]})
    big = provider.prefix + "in/big.jpg"
    (listed,) = [o for o in stores.store_for(big).list_objects(provider.prefix + "in/") if o.uri == big]
    assert listed.mtime < WatchCursor.from_json(first.cursor).at
    second = _tick(t, instance, cursor=first.cursor)
    assert [_manifest_uris(t, r.partition_key) for r in second.run_requests] == [[big]]
    assert _tick(t, instance, cursor=second.cursor).run_requests == []


@pytest.mark.usefixtures("db")  # SQLite, then PostgreSQL
def test_a_cursor_from_the_previous_release_takes_nothing_again(pxt_home, tmp_path, instance):
    import hashlib
    import json

    from pxt_assets import rowstore

    folder = tmp_path / "drop"
    folder.mkdir()
    t = _table("watch/upgraded", str(folder))
    for p in SAMPLES:
        (folder / p.name).write_bytes(p.read_bytes())
    # what the previous release left: a batch recorded with its source, and a cursor of newest time + sha1s
    rows = rowstore.for_settings(t.settings)
    rows.for_spec(t.spec)
    listed = list(stores.store_for(str(folder)).list_objects(str(folder)))
    rows.create_batch(t.spec.slug, "19700101T000000000000-old", [{"img": o.uri} for o in listed],
                      source={"watch": t._watch.prefix})
    old = json.dumps({"newest": max(o.mtime for o in listed),
                      "seen": {hashlib.sha1(o.uri.encode()).hexdigest()[:16]: o.mtime for o in listed}})
    new = folder / "new.jpg"
    new.write_bytes(SAMPLES[0].read_bytes())
    result = _tick(t, instance, cursor=old)
    assert [_manifest_uris(t, r.partition_key) for r in result.run_requests] == [[new.as_uri()]]
    assert _tick(t, instance, cursor=result.cursor).run_requests == []


@pytest.mark.usefixtures("db")  # SQLite, then PostgreSQL
def test_a_tick_over_thousands_of_taken_files_makes_a_few_queries(pxt_home, tmp_path, instance):
    import sqlalchemy as sa

    from pxt_assets import rowstore

    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(2500):
        (folder / f"{i:05d}.jpg").write_bytes(b"x")
    t = _table("watch/many", str(folder), max_batch_rows=1000, max_batches_per_tick=3)
    first = _tick(t, instance)
    assert [int(r.tags["pxt/rows"]) for r in first.run_requests] == [1000, 1000, 500]
    statements: list[tuple[str, int]] = []  # (statement, number of parameters)
    engine = rowstore.for_settings(t.settings).engine

    def count(_conn, _cursor, sql, parameters, *_):
        if not sql.startswith("BEGIN"):
            statements.append((sql, len(parameters)))

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        quiet = _tick(t, instance, cursor=first.cursor)
        assert quiet.run_requests == [] and len(statements) == 1, statements  # any batches of a lost tick?
        statements.clear()
        for i in range(3):
            (folder / f"new{i}.jpg").write_bytes(b"x")
        more = _tick(t, instance, cursor=quiet.cursor)
        assert [int(r.tags["pxt/rows"]) for r in more.run_requests] == [3]
        # lost ticks' batches, which of the 3 names were taken, the new batch and its names
        (sql, params) = statements[1]
        assert len(statements) == 4 and "IN" in sql and params == 2 + 3, statements  # table, watch, 3 names
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)


def test_a_burst_of_uploads_keeps_the_cursor_small_and_loses_nothing():
    from pxt_assets.watch import SEEN_CAP

    w = WatchSpec("s3://b/in/", "img", max_batch_rows=1000, max_batches_per_tick=3)
    n = SEEN_CAP * 2
    listing = _objs(*[(f"s3://b/in/{i:05d}.jpg", 1000.0 + i / 100) for i in range(n)])  # all in 40 s
    taken, cur, got = Taken(), WatchCursor(), []
    for _ in range(3):
        taken.asked.clear()
        batches, cur = plan(listing, WatchCursor.from_json(cur.to_json()), w, taken)
        taken.take(batches)
        got += [u for b in batches for u in b.uris]
        assert len(cur.seen) <= SEEN_CAP and sum(taken.asked) <= 3000  # only about the names it chose
    assert sorted(got) == sorted(o.uri for o in listing)  # every one, once
    listing += _objs(("s3://b/in/late.jpg", 1000.0), ("s3://b/in/new.jpg", 1040.0))
    batches, cur = plan(listing, cur, w, taken)
    assert _uris(batches) == [["s3://b/in/late.jpg", "s3://b/in/new.jpg"]]


@pytest.mark.usefixtures("db")  # SQLite, then PostgreSQL
def test_an_object_taken_by_one_tick_cannot_be_recorded_by_another(pxt_home, tmp_path):
    """Two processes ticking at once list the same new object: the second one's batches are refused, whole."""
    import sqlalchemy as sa

    from pxt_assets import rowstore

    t = _table("watch/race", str(tmp_path))
    rows = rowstore.for_settings(t.settings)
    rows.for_spec(t.spec)
    slug = t.spec.slug
    rows.record_watch_batches(slug, "w", 1, [("k1", [{"img": "a"}], None, ["name-a"])])
    with pytest.raises(sa.exc.IntegrityError):
        rows.record_watch_batches(slug, "w", 1, [("k2", [{"img": "b"}], None, ["name-b"]),
                                                 ("k3", [{"img": "a"}], None, ["name-a"])])
    assert rows.batches(slug) == ["k1"] and rows.watch_taken(slug, "w", ["name-a", "name-b"]) == {"name-a"}
