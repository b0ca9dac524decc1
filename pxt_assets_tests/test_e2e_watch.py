"""End to end: with `dagster dev` running, an image put in a watched bucket (moto, on 127.0.0.1) becomes a
row with its computed columns and a presigned serving URL, without anyone clicking."""

from __future__ import annotations

import time
import urllib.request

import pandas as pd

from pxt_assets_tests.conftest import SAMPLES, unique_bucket
from pxt_assets_tests.test_cli_and_ui import pxt_env, start_dagster_dev, stop  # noqa: F401

ROW_TIMEOUT_S = 300  # sensor interval + run launch by the daemon (seconds each) on a loaded 2-core machine


def test_object_put_in_a_watched_bucket_becomes_a_row_without_clicking(pxt_env, s3_server):  # noqa: F811
    bucket = unique_bucket()
    s3 = s3_server.client()
    s3.create_bucket(Bucket=bucket)
    pxt_env.env.update(
        AWS_ENDPOINT_URL=s3_server.endpoint, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1", PXT_DEMO_DEST=f"s3://{bucket}/demo/",
        PXT_DEMO_WATCH=f"s3://{bucket}/incoming/", PXT_DEMO_WATCH_INTERVAL="5",
    )
    proc, _, log = start_dagster_dev(pxt_env)
    try:
        s3.put_object(Bucket=bucket, Key="incoming/cat.jpg", Body=SAMPLES[0].read_bytes(), ContentType="image/jpeg")
        deadline = time.monotonic() + ROW_TIMEOUT_S
        while not pxt_env.batches("committed"):
            assert proc.poll() is None, log.read_text()[-5000:]
            assert time.monotonic() < deadline, f"no row after {ROW_TIMEOUT_S} s:\n{log.read_text()[-5000:]}"
            time.sleep(2)
        (batch,) = pxt_env.batches()
        source = pxt_env.column("source_image", batch)
        assert list(source["value"]) == [f"s3://{bucket}/incoming/cat.jpg"]
        width = pxt_env.column("width", batch)
        thumb = pxt_env.column("thumbnail", batch)
        serving = pxt_env.column("serving_url", batch)
        assert list(width["value"]) == [481] and pd.isna(thumb["error"][0])
        assert thumb["value"][0].startswith(f"s3://{bucket}/demo/thumbnails/")
        url = serving["value"][0]
        assert url.startswith(s3_server.endpoint) and "X-Amz-Signature=" in url
        key = thumb["value"][0].removeprefix(f"s3://{bucket}/")
        with urllib.request.urlopen(url) as resp:
            assert resp.read() == s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        # the run was started by the sensor, not by a person
        runs = pxt_env.instance().get_run_records()
        assert any(r.dagster_run.tags.get("dagster/sensor_name") == "blob_storage_demo__media_sensor" for r in runs)
    finally:
        stop(proc)
