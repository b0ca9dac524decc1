"""Stored presigned URLs renew themselves through the asset graph (pxt_assets/assets/renewal.py): the expiry is in
each materialization's metadata, the column's asset carries a renewal cron OR'ed with eager, a re-run signs
again the URLs past 80% of their lifetime (and keeps the younger ones), and selecting URLs that expired anyway
warns once. On a real moto S3 server; time passes for real (short lifetimes and sleeps), nothing is mocked."""

from __future__ import annotations

import datetime as dt
import pathlib
import time
import urllib.request
import warnings

import dagster as dg
import pytest

import pxt_assets as pxt
from pxt_assets import stores
from pxt_assets.api.query import ExpiredURLWarning
from pxt_assets.assets import batch_job_name
from pxt_assets.assets.renewal import RENEW_AT, TICK_SHARE, renewal_cron, renewal_interval
from pxt_assets.functions import net
from pxt_assets_tests.conftest import query_params
from pxt_assets_tests.places import Place


@pytest.fixture
def bucket(pxt_home, s3_env) -> Place:
    return Place("s3", s3_env)


def _table(name: str, bucket: Place, lifetime: int) -> pxt.MediaTable:
    t = pxt.MediaTable(f"renewal/{name}", {"img": pxt.Image})
    t.add_computed_column(thumbnail=t.img.thumbnail((64, 64)), destination=bucket.prefix + f"{name}/")
    t.add_computed_column(serving_url=net.presigned_url(t.thumbnail.fileurl, lifetime))
    return t


def _key(t: pxt.MediaTable, column: str) -> dg.AssetKey:
    return dg.AssetKey([*t.spec.path, column])


def _signed_at(url: str) -> float:
    return dt.datetime.strptime(query_params(url)["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(
        tzinfo=dt.timezone.utc).timestamp()


def _urls(t: pxt.MediaTable) -> list[str]:
    return list(t.select(t.serving_url).collect()["serving_url"])


def _rematerialize(t: pxt.MediaTable, instance, batch: str, column: str = "serving_url") -> None:
    """What the renewal tick requests: the column's asset alone, for one batch."""
    job = t.definitions().resolve_job_def(batch_job_name(t.spec))
    assert job.execute_in_process(instance=instance, partition_key=batch,
                                  asset_selection=[_key(t, column)]).success


def _cron_parts(condition: dg.AutomationCondition) -> list[str]:
    found, todo = [], [condition]
    while todo:
        c = todo.pop()
        if hasattr(c, "cron_schedule"):
            found.append(c.cron_schedule)
        todo.extend(getattr(c, "children", ()) or ())
        if hasattr(c, "operand"):
            todo.append(c.operand)
    return found


def test_the_renewal_cadence_is_a_standard_cron_that_renews_before_expiry():
    assert renewal_cron(86400) == "0 */3 * * *"  # the seeds' 24-hour serving URLs: every 3 hours
    assert renewal_cron(7 * 86400) == "0 0 * * *"
    assert renewal_cron(3600) == "*/6 * * * *"
    assert renewal_cron(4) == "* * * * *"  # as fast as cron goes (too slow for 4 s: sign those at query time)
    for lifetime in (420, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400, 172800, 7 * 86400):
        tick = renewal_interval(lifetime)
        # kept at one tick (younger than 80%), renewed at the next, with 5% of the lifetime to spare
        assert tick <= TICK_SHARE * lifetime and RENEW_AT * lifetime + tick <= 0.95 * lifetime


def test_signed_url_expiry_reads_each_providers_form():
    s3 = ("https://b.s3.amazonaws.com/k.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=a%2F20240101"
          "&X-Amz-Date=20240101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature=ab")
    gcs = ("https://storage.googleapis.com/b/k.jpg?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=c"
           "&X-Goog-Date=20240101T000000Z&X-Goog-Expires=60&X-Goog-SignedHeaders=host&X-Goog-Signature=ab")
    sas = ("https://acct.blob.core.windows.net/c/k.jpg?st=2024-01-01T00%3A00%3A00Z&se=2024-01-01T01%3A00%3A00Z"
           "&sp=r&sv=2023-11-03&sr=b&sig=abc%3D")
    midnight = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc).timestamp()
    assert stores.signed_url_expiry(s3) == stores.SignedExpiry(midnight + 3600, 3600)
    assert stores.signed_url_expiry(gcs) == stores.SignedExpiry(midnight + 60, 60)
    assert stores.signed_url_expiry(sas) == stores.SignedExpiry(midnight + 3600, 3600)
    for plain in ("https://example.com/a.jpg?keep=me", "https://example.com/a.jpg", "s3://b/k", None):
        assert stores.signed_url_expiry(plain) is None  # passed through: no known expiry, never renewed


def test_the_asset_carries_a_renewal_cron_that_requests_materialized_batches(bucket, instance, images):
    t = _table("definition", bucket, 86400)
    batch = t.insert(img=str(images[0]), instance=instance).batch
    defs = t.definitions()
    url_asset = defs.resolve_assets_def(_key(t, "serving_url"))
    condition = url_asset.automation_conditions_by_key[_key(t, "serving_url")]
    assert "0 */3 * * *" in _cron_parts(condition)
    assert "eager" in str(condition.get_label() or "") or any(
        "eager" in str(c.get_label() or "") for c in condition.children)  # what it had before stays
    assert _cron_parts(url_asset.automation_conditions_by_key[_key(t, "thumbnail")]) == []  # no URLs: no cron
    assert url_asset.metadata_by_key[_key(t, "serving_url")]["url_renewal_cron"] == "0 */3 * * *"

    # the automation sensor's evaluations: nothing between ticks; the batch's URL column at a tick
    tomorrow = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
    before_tick = tomorrow.replace(hour=(tomorrow.hour // 3) * 3, minute=1, second=0, microsecond=0)
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=before_tick)
    assert result.get_num_requested(_key(t, "serving_url")) == 0
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor,
                                               evaluation_time=before_tick + dt.timedelta(minutes=30))
    assert result.get_num_requested(_key(t, "serving_url")) == 0
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor,
                                               evaluation_time=before_tick + dt.timedelta(hours=3))
    assert result.get_requested_partitions(_key(t, "serving_url")) == {batch}
    assert result.get_num_requested(_key(t, "thumbnail")) == 0


def test_the_materialization_records_when_the_batchs_urls_expire(bucket, instance, images):
    t = _table("metadata", bucket, 3600)
    t.insert([{"img": str(p)} for p in images], instance=instance)
    urls = _urls(t)
    earliest = min(_signed_at(u) + 3600 for u in urls)
    event = instance.get_latest_materialization_event(_key(t, "serving_url"))
    meta = event.asset_materialization.metadata
    assert meta["urls_expire_at_unix"].value == int(earliest)
    assert dt.datetime.fromisoformat(meta["urls_expire_at"].value).timestamp() == earliest
    assert meta["urls_expire_at"].value.endswith("+00:00")
    assert meta["url_lifetime_s"].value == 3600 and meta["url_renewal_cron"].value == "*/6 * * * *"
    assert not any("Signature" in str(v.value) for v in meta.values())  # no signature in metadata


def test_a_rerun_keeps_young_urls_and_signs_again_those_past_80_percent(bucket, instance, images):
    lifetime = 15
    t = _table("rerun", bucket, lifetime)
    batch = t.insert([{"img": str(p)} for p in images[:2]], instance=instance).batch
    first = _urls(t)
    expiry_key = _key(t, "serving_url")
    first_expiry = instance.get_latest_materialization_event(expiry_key).asset_materialization.metadata[
        "urls_expire_at_unix"].value

    _rematerialize(t, instance, batch)  # well before 80% of their lifetime: kept as they were
    assert time.time() < min(_signed_at(u) for u in first) + RENEW_AT * lifetime, "the machine was too slow"
    assert _urls(t) == first

    time.sleep(max(0.0, min(_signed_at(u) for u in first) + RENEW_AT * lifetime + 0.5 - time.time()))
    _rematerialize(t, instance, batch)  # past 80%: signed again
    fresh = _urls(t)
    assert all(f != u for f, u in zip(fresh, first))
    assert all(_signed_at(f) > _signed_at(u) for f, u in zip(fresh, first))
    meta = instance.get_latest_materialization_event(expiry_key).asset_materialization.metadata
    assert meta["urls_expire_at_unix"].value > first_expiry
    local = list(t.select(t.thumbnail.localpath).collect()["thumbnail_localpath"])
    for url, path in zip(fresh, local):
        assert url.startswith(bucket.server.endpoint)
        with urllib.request.urlopen(url) as resp:  # through the moto endpoint
            assert resp.read() == pathlib.Path(path).read_bytes()
    # only the URLs were made again: the thumbnails are the same two files
    assert len(bucket.objects("rerun/")) == 2


def test_selecting_expired_stored_urls_warns_once_and_resume_renews_them(bucket, instance, images):
    t = _table("expired", bucket, 2)
    batch = t.insert(img=str(images[0]), instance=instance).batch
    url = _urls(t)[0]
    time.sleep(max(0.0, _signed_at(url) + 2 + 0.5 - time.time()))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert _urls(t) == [url]
        t.select(t.serving_url, t.thumbnail.fileurl).collect()
        t.collect()  # every column
    expired = [w for w in seen if issubclass(w.category, ExpiredURLWarning)]
    assert len(expired) == 1, [str(w.message) for w in expired]
    message = str(expired[0].message)
    assert "renewal/expired.serving_url" in message and "expired" in message
    assert "re-materializing" in message and "resume" in message
    assert "Signature" not in message and url not in message

    t.resume(batch)  # a committed batch run again: only its expired URLs are signed again
    renewed = _urls(t)[0]
    assert renewed != url and _signed_at(renewed) > _signed_at(url)
    local = t.select(t.thumbnail.localpath).collect()["thumbnail_localpath"][0]
    with urllib.request.urlopen(renewed) as resp:
        assert resp.read() == pathlib.Path(local).read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExpiredURLWarning)
        _urls(t)  # fresh: nothing to say (and it said it once already)
