"""Sensors and schedules on new objects, and automation over new batches."""

from __future__ import annotations

import dagster as dg
import pytest

import pxt_assets as pxt
from pxt_assets.assets import batch_job_name
from pxt_assets.stores.base import ObjectInfo
from pxt_assets.watch import WatchCursor, WatchSpec, plan
from pxt_assets_tests.conftest import SAMPLES
from pxt_assets_tests.test_cloud import Provider


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


def test_a_late_object_within_the_lookback_is_taken_and_older_ones_are_not_retaken():
    w = WatchSpec("s3://b/in/", "img", lookback_seconds=60)
    _, cur = plan(_objs(("s3://b/in/new.jpg", 500.0)), WatchCursor(), w)
    late = _objs(("s3://b/in/new.jpg", 500.0), ("s3://b/in/multipart.jpg", 470.0), ("s3://b/in/ancient.jpg", 100.0))
    batches, _ = plan(late, cur, w)
    assert _uris(batches) == [["s3://b/in/multipart.jpg"]]


def test_batch_keys_are_deterministic_and_suffixes_filter():
    w = WatchSpec("s3://b/in/", "img", suffixes=(".jpg",))
    listing = _objs(("s3://b/in/a.jpg", 5.0), ("s3://b/in/notes.txt", 6.0), ("s3://b/in/B.JPG", 7.0))
    first, _ = plan(listing, WatchCursor(), w)
    again, _ = plan(listing, WatchCursor(), w)
    assert first == again and _uris(first) == [["s3://b/in/a.jpg", "s3://b/in/B.JPG"]]
    assert first[0].key.startswith("19700101T000005")


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
    env = {"s3": "s3_env", "gcs": "gcs_env", "azure": "azure_env"}[request.param]
    provider = Provider(request.param, request.getfixturevalue(env))
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
    provider = Provider("s3", s3_env)
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


def test_schedule_variant_keeps_its_cursor_beside_the_table(pxt_home, tmp_path, instance):
    folder = tmp_path / "drop"
    folder.mkdir()
    t = _table("watch/scheduled", str(folder), cron_schedule="*/5 * * * *")
    defs = t.definitions()
    schedule = defs.resolve_schedule_def("watch__scheduled_schedule")
    assert schedule.cron_schedule == "*/5 * * * *"
    (folder / "a.jpg").write_bytes(SAMPLES[1].read_bytes())
    with dg.build_schedule_context(instance=instance, repository_def=defs.get_repository_def()) as ctx:
        requests = schedule.evaluate_tick(ctx).run_requests
    assert len(requests) == 1
    assert instance.has_dynamic_partition("watch__scheduled__batches", requests[0].partition_key)
    with dg.build_schedule_context(instance=instance, repository_def=defs.get_repository_def()) as ctx:
        assert not schedule.evaluate_tick(ctx).run_requests


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
