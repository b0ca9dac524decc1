"""Transient failures are ridden out, permanent ones fail at once, and rows that outlast the retry budget
fail with a clear error that a later materialization of the batch retries (only those rows).

Every outage is made by a real proxy on 127.0.0.1 (faultproxy.py) in front of moto, the GCS emulator,
Azurite or a web server; the proxy times and counts the outage itself, tests wait on its counters.
"""

from __future__ import annotations

import logging
import time

import pytest

import pxt_assets as pxt
from pxt_assets import stores
from pxt_assets.assets import batch_job_name
from pxt_assets.errors import ErrorCode
from pxt_assets.stores import retry
from pxt_assets_tests.conftest import make_image, unique_bucket
from pxt_assets_tests.faultproxy import FaultProxy, Outage


@pytest.fixture
def s3_proxy(s3_env, monkeypatch):
    proxy = FaultProxy("127.0.0.1", s3_env.port)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
    yield proxy
    proxy.close()


@pytest.fixture
def bucket(s3_env):
    name = unique_bucket("outage")
    s3_env.client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def sources(tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    return [make_image(folder / f"img{i:02d}.jpg", size=(64 + i, 48), color=(10 * i, 80, 160)) for i in range(16)]


def _table(name: str, bucket: str) -> pxt.MediaTable:
    t = pxt.MediaTable(name, {"img": pxt.Image})
    t.add_computed_column(rot=t.img.rotate(90), destination=f"s3://{bucket}/out/")
    return t


def _objects(s3, bucket: str) -> set[str]:
    return {o["Key"] for o in s3.client().list_objects_v2(Bucket=bucket).get("Contents", [])}


def test_a_30_second_outage_in_the_middle_of_a_batch_fails_no_row(pxt_home, instance, s3_proxy, s3_env, bucket,
                                                                  sources):
    t = _table("outage/ride", bucket)
    # After 4 uploads every request is answered 503 SlowDown for 30 s (timed by the proxy), then served again.
    s3_proxy.start(Outage(status=503, start_after=4, method="PUT", seconds=30))
    result = t.insert([{"img": str(p)} for p in sources], instance=instance)
    assert s3_proxy.ended.is_set() and s3_proxy.failed  # the outage happened, and ended during the insert
    assert result.num_errors == 0
    assert t.where(t.rot.errortype != None).count() == 0  # noqa: E711
    urls = [r["rot_fileurl"] for r in t.select(t.rot.fileurl).collect().to_pandas().to_dict("records")]
    # every row's file is stored, and nothing else is
    assert len(urls) == len(sources) and {"out/" + u.split("/out/", 1)[1] for u in urls} == _objects(s3_env, bucket)


def test_rows_beyond_the_budget_fail_clearly_and_a_rerun_retries_only_them(pxt_home, instance, s3_proxy, s3_env,
                                                                           bucket, sources, monkeypatch):
    monkeypatch.setenv("PIXELTABLE_RETRY_BUDGET_S", "1")
    t = _table("outage/budget", bucket)
    s3_proxy.start(Outage(status=503, start_after=5, method="PUT"))  # until restore()
    result = t.insert([{"img": str(p)} for p in sources], instance=instance)
    failed = t.select(t.img.fileurl, t.rot.errortype, t.rot.errormsg).where(t.rot.errortype != None).collect().to_pandas()  # noqa: E711
    assert result.num_errors == len(failed) == len(sources) - 5
    for r in failed.to_dict("records"):
        assert r["rot_errortype"] == ErrorCode.THROTTLED == "throttled"
        message = r["rot_errormsg"]
        # names the column, the destination object, the cause and the budget
        assert message.startswith("rot: ") and f"s3://{bucket}/out/" in message and "HTTP 503" in message
        assert "retry_budget_s = 1 s" in message
    assert len(_objects(s3_env, bucket)) == 5

    s3_proxy.restore()
    puts_before = s3_proxy.count("PUT")
    job = t.definitions().resolve_job_def(batch_job_name(t.spec))
    assert job.execute_in_process(instance=instance, partition_key=result.batch).success
    assert s3_proxy.count("PUT") - puts_before == len(failed)  # only the failed rows were computed again
    assert t.where(t.rot.errortype != None).count() == 0  # noqa: E711
    assert len(_objects(s3_env, bucket)) == len(sources)


def test_a_permanent_error_fails_at_once(pxt_home, instance, s3_proxy, bucket, sources):
    t = _table("outage/denied", bucket)
    s3_proxy.start(Outage(status=403, only_method="PUT"))
    result = t.insert([{"img": str(p)} for p in sources[:3]], instance=instance)
    assert result.num_errors == 3
    assert s3_proxy.count("PUT", failed=True) == 3  # one request per row: a 403 is not retried
    assert set(t.select(t.rot.errortype).collect()["rot_errortype"]) == {"access_denied"}


def test_reset_connections_are_ridden_out(pxt_home, instance, s3_proxy, s3_env, bucket, sources):
    t = _table("outage/reset", bucket)
    s3_proxy.start(Outage(status=None, start_after=2, method="PUT", failures=12))
    result = t.insert([{"img": str(p)} for p in sources[:6]], instance=instance)
    assert s3_proxy.ended.is_set() and len(s3_proxy.failed) == 12
    assert result.num_errors == 0 and len(_objects(s3_env, bucket)) == 6


def test_retry_after_is_honoured(s3_proxy, bucket, tmp_path, caplog):
    src = make_image(tmp_path / "a.jpg")
    # six failures: botocore's own quick retries give up (at most 4 attempts), then ours waits what was asked
    s3_proxy.start(Outage(status=503, retry_after="2", failures=6))
    with caplog.at_level(logging.INFO, logger="pxt_assets.stores.retry"):
        stores.store_for("s3://x/").upload(src, f"s3://{bucket}/a.jpg")
    waits = [r for r in caplog.records if "Retry-After" in r.getMessage()]
    assert waits and all(r.args[0] >= 2.0 for r in waits)  # each wait is at least what the server asked
    assert s3_proxy.ended.is_set()


@pytest.fixture
def web_proxy(http_server):
    host, port = http_server.base.split("//", 1)[1].split(":")
    proxy = FaultProxy(host, int(port))
    yield proxy
    proxy.close()


def test_a_web_source_outage_is_ridden_out(pxt_home, instance, web_proxy, images):
    t = pxt.MediaTable("outage/web", {"img": pxt.Image})
    t.add_computed_column(w=t.img.width)
    web_proxy.start(Outage(status=502, failures=6))
    names = [p.name for p in images]
    result = t.insert([{"img": f"{web_proxy.endpoint}/{n}"} for n in names], instance=instance)
    assert web_proxy.ended.is_set() and result.num_errors == 0
    assert sorted(t.select(t.w).collect()["w"]) == sorted([481, 640, 640])


def test_a_missing_web_source_is_not_retried(pxt_home, instance, web_proxy):
    t = pxt.MediaTable("outage/web404", {"img": pxt.Image})
    t.add_computed_column(w=t.img.width)
    result = t.insert([{"img": f"{web_proxy.endpoint}/nope.jpg"}], instance=instance)
    assert result.num_errors == 1 and web_proxy.count("GET") == 1
    assert t.select(t.w.errortype).collect()["w_errortype"][0] == "not_found"


@pytest.mark.parametrize("provider", ["gcs", "azure"])
def test_every_store_rides_out_errors_and_resets(provider, request, monkeypatch, tmp_path):
    if provider == "gcs":
        server = request.getfixturevalue("gcs_env")
        proxy = FaultProxy("127.0.0.1", server.port)
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.endpoint)
        name = unique_bucket("gout")
        server.client().create_bucket(name)
        uri = f"gs://{name}/dir/a.jpg"
    else:
        server = request.getfixturevalue("azure_env")
        from pxt_assets_tests import emulators

        proxy = FaultProxy("127.0.0.1", server.port)
        monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_URL", f"{proxy.endpoint}/{emulators.AZURITE_ACCOUNT}")
        name = unique_bucket("aout")
        server.client().create_container(name)
        uri = f"wasbs://{name}@{emulators.AZURITE_ACCOUNT}.blob.core.windows.net/dir/a.jpg"
    try:
        store = stores.store_for(uri)
        src = make_image(tmp_path / "a.jpg")
        for status in (503, 500, 429, None):  # None: connection reset
            proxy.start(Outage(status=status, failures=3))
            store.upload(src, uri)
            assert proxy.ended.is_set() and len(proxy.failed) == 3, status
        proxy.start(Outage(status=503, failures=4))
        assert store.read_bytes(uri) == src.read_bytes() and proxy.ended.is_set()
        proxy.start(Outage(status=403))
        with pytest.raises(stores.StoreError) as e:
            store.read_bytes(uri)
        assert e.value.kind == "access_denied" and len(proxy.failed) == 1  # not retried
    finally:
        proxy.close()


def test_backoff_is_jittered_exponential_capped_and_at_least_retry_after():
    waits = [retry.backoff_s(n) for n in range(12) for _ in range(50)]
    assert all(0 <= w <= retry.MAX_DELAY_S for w in waits)
    assert max(retry.backoff_s(0) for _ in range(200)) <= retry.BASE_DELAY_S
    assert len({round(w, 6) for w in waits}) > 500  # random, not a fixed schedule
    assert all(retry.backoff_s(n, retry_after=3.0) >= 3.0 for n in range(12))
    assert retry.backoff_s(0, retry_after=1e9) == retry.MAX_RETRY_AFTER_S


def test_the_first_attempt_counts_once_and_retries_follow_it_within_the_budget():
    """call() makes the first attempt before building its retry loop: a failing first attempt is attempt 1 of
    the loop (not made twice), retries follow with backoff, and the final error counts every attempt."""
    calls: list[int] = []
    slept: list[float] = []

    def flaky(fails: int, kind: str = "unreachable"):
        def fn() -> str:
            calls.append(1)
            if len(calls) <= fails:
                raise stores.StoreError(f"attempt {len(calls)} failed", kind=kind)
            return "ok"
        return fn

    assert retry.call(flaky(0), budget_s=60, sleep=slept.append) == "ok" and len(calls) == 1 and slept == []
    calls.clear()
    assert retry.call(flaky(2), budget_s=60, sleep=slept.append) == "ok" and len(calls) == 3 and len(slept) == 2
    calls.clear()
    slept.clear()
    with pytest.raises(stores.StoreError, match="attempt 1 failed") as e:
        retry.call(flaky(5, "not_found"), budget_s=60, sleep=slept.append)  # permanent: at once
    assert len(calls) == 1 and slept == [] and "tried" not in str(e.value)
    calls.clear()
    with pytest.raises(stores.StoreError, match=r"attempt 1 failed \(tried once; the retry budget is retry_budget_s = 0 s\)"):
        retry.call(flaky(5), budget_s=0, sleep=slept.append)
    assert len(calls) == 1 and slept == []
    calls.clear()
    with pytest.raises(stores.StoreError, match=r"attempt (\d+) failed \(tried \1 times over") as e:
        retry.call(flaky(100), budget_s=1.0, sleep=lambda s: (slept.append(s), time.sleep(s)))
    # jittered waits: how many fit is random, but each attempt after the first follows one wait, within budget
    assert len(calls) >= 2 and len(calls) == len(slept) + 1 and sum(slept) < 1.0 and e.value.kind == "unreachable"


def test_error_codes_are_a_str_enum_with_a_retryable_flag():
    assert ErrorCode("throttled") is ErrorCode.THROTTLED and ErrorCode.THROTTLED == "throttled"
    assert {c for c in ErrorCode if c.retryable} == {ErrorCode.UNREACHABLE, ErrorCode.TIMEOUT,
                                                     ErrorCode.THROTTLED, ErrorCode.SERVER_ERROR}
    assert stores.StoreError("x", kind="not_found").kind is ErrorCode.NOT_FOUND
    assert not stores.StoreError("x", kind="not_found").retryable and stores.StoreError("x", kind="timeout").retryable
    assert str(ErrorCode.UDF_ERROR) == "udf_error" and f"{ErrorCode.UDF_ERROR}" == "udf_error"


def test_the_retry_budget_is_a_setting(pxt_home, monkeypatch):
    from pxt_assets.config import ConfigError, load_settings

    assert load_settings().retry_budget_s == 60
    (pxt_home / "config.toml").write_text("[pixeltable]\nretry_budget_s = 90\n")
    assert load_settings().retry_budget_s == 90
    monkeypatch.setenv("PIXELTABLE_RETRY_BUDGET_S", "5")
    assert load_settings().retry_budget_s == 5
    monkeypatch.setenv("PIXELTABLE_RETRY_BUDGET_S", "-1")
    with pytest.raises(ConfigError, match="retry_budget_s"):
        load_settings()
