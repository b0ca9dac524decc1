"""End to end: with `dagster dev` running, an image put in a watched bucket (moto, on 127.0.0.1) becomes a
row with its computed columns and a presigned serving URL, without anyone clicking."""

from __future__ import annotations

import sys
import time
import urllib.request

import pandas as pd

from pxt_assets_tests.conftest import SAMPLES, unique_bucket
from pxt_assets_tests.test_cli_and_ui import pxt_env, start_dagster_dev, stop  # noqa: F401

ROW_TIMEOUT_S = 300  # sensor interval + run launch by the daemon (seconds each) on a loaded 2-core machine


def put_cat_and_wait_for_its_row(pxt_env, proc, log, s3, bucket: str) -> str:  # noqa: F811
    """Put an image at incoming/cat.jpg with `dagster dev` (proc, logging to `log`) running; the batch that
    takes it, once committed (within ROW_TIMEOUT_S)."""
    s3.put_object(Bucket=bucket, Key="incoming/cat.jpg", Body=SAMPLES[0].read_bytes(), ContentType="image/jpeg")
    deadline = time.monotonic() + ROW_TIMEOUT_S
    while not pxt_env.batches("committed"):
        assert proc.poll() is None, log.read_text()[-5000:]
        assert time.monotonic() < deadline, f"no row after {ROW_TIMEOUT_S} s:\n{log.read_text()[-5000:]}"
        time.sleep(2)
    (batch,) = pxt_env.batches()
    return batch


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
        batch = put_cat_and_wait_for_its_row(pxt_env, proc, log, s3, bucket)
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


def test_a_video_put_in_a_watched_bucket_becomes_frames_of_a_view_without_clicking(pxt_env, s3_server, tmp_path):  # noqa: F811
    """The base table's batch comes from its sensor; the view's rows (and their thumbnails) follow through
    Dagster's automation, as they would for a batch made in the UI or by `dagster job execute`."""
    from pxt_assets_tests.mediagen import make_video

    bucket = unique_bucket("videos")
    s3 = s3_server.client()
    s3.create_bucket(Bucket=bucket)
    pxt_env.env.update(AWS_ENDPOINT_URL=s3_server.endpoint, AWS_ACCESS_KEY_ID="testing",
                       AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    thumbs = tmp_path / "thumbs"
    thumbs.mkdir()
    setup = (
        "import pxt_assets as pxt\n"
        "from pxt_assets.functions.video import frame_iterator\n"
        "pxt.create_dir('e2e')\n"
        "videos = pxt.create_table('e2e/videos', {'video': pxt.Video})\n"
        f"videos.watch('s3://{bucket}/incoming/', minimum_interval_seconds=5, suffixes=('.mp4',))\n"
        "frames = pxt.create_view('e2e/frames', videos, iterator=frame_iterator(videos.video, fps=1))\n"
        f"frames.add_computed_column(thumb=frames.frame.resize((32, 24)), destination={str(thumbs)!r})\n"
    )
    done = pxt_env.run(sys.executable, "-c", setup)
    assert done.returncode == 0, done.stderr[-3000:]
    proc, _, log = start_dagster_dev(pxt_env)
    try:
        video = make_video(tmp_path / "clip.mp4", seconds=3.0)
        s3.put_object(Bucket=bucket, Key="incoming/clip.mp4", Body=video.read_bytes(), ContentType="video/mp4")
        deadline = time.monotonic() + ROW_TIMEOUT_S
        store = pxt_env.rows()
        while not store.batches("e2e__frames", "committed"):
            assert proc.poll() is None, log.read_text()[-5000:]
            assert time.monotonic() < deadline, f"no view rows after {ROW_TIMEOUT_S} s:\n{log.read_text()[-5000:]}"
            time.sleep(2)
        (batch,) = store.batches("e2e__videos")
        assert store.batches("e2e__frames") == [batch]
        rt = store.row_table("e2e__frames")
        got = store.read_columns(rt, batch, ["pos", "thumb"])
        assert sorted(r["value"] for r in got["pos"].values()) == [0, 1, 2]
        assert all(r["error"] is None and r["value"].startswith(thumbs.as_uri()) for r in got["thumb"].values())
        assert len([p for p in thumbs.rglob("*.jpg")]) == 3
    finally:
        stop(proc)
