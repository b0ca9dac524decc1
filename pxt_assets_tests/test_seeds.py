"""The seeds' notebook cells, run with only the import changed (`import pxt_assets as pxt`): local HTTP
servers instead of public URLs, emulator buckets instead of real ones. Each asserts what the seed says."""

from __future__ import annotations

import pathlib
import urllib.request

import pytest

import pxt_assets as pxt
from pxt_assets.stores import path_of
from pxt_assets_tests.conftest import SAMPLES, unique_bucket
from pxt_assets_tests.mediagen import make_video


@pytest.fixture
def notebook(pxt_home, tmp_path, monkeypatch):
    """A user's machine: HOME, PIXELTABLE_HOME and DAGSTER_HOME of its own, nothing configured."""
    home = tmp_path / "user"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    return home


def _printed(capsys) -> str:
    return capsys.readouterr().out


@pytest.fixture
def b2_bucket(s3_env, monkeypatch, tmp_path) -> str:
    """The B2 bucket of seed 001, reached through a profile whose endpoint is the local moto server."""
    bucket = unique_bucket("pixeltable")
    s3_env.client().create_bucket(Bucket=bucket)
    aws_config = tmp_path / "aws_config"
    aws_config.write_text(f"[profile b2]\nendpoint_url = {s3_env.endpoint}\naws_access_key_id = k\n"
                          "aws_secret_access_key = s\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(aws_config))
    monkeypatch.setenv("PIXELTABLE_B2_PROFILE", "b2")
    return bucket


def test_seed_001_working_with_blob_storage(notebook, pxt_home, http_server, s3_env, b2_bucket, tmp_path, capsys):
    bucket = b2_bucket

    # --- the seed's cells, import changed ---
    from pathlib import Path

    pxt.drop_dir('blob_storage_demo', force=True)
    pxt.create_dir('blob_storage_demo')
    t = pxt.create_table('blob_storage_demo/media', {'source_image': pxt.Image}, if_exists='replace')
    assert "Created table 'media'." in _printed(capsys)
    assert "source_image" in t._repr_html_()

    sample_image = http_server.url('000000000036.jpg')
    t.insert(source_image=sample_image)
    assert "Inserted 1 row with 0 errors in" in _printed(capsys)
    assert len(t.collect()) == 1

    # URL inserted: the URL is stored, downloaded to the cache on access
    assert t.select(t.source_image.fileurl).collect()["source_image_fileurl"] == [sample_image]

    t.add_computed_column(flipped=t.source_image.transpose(0), if_exists='replace')
    assert "Added 1 column value with 0 errors in" in _printed(capsys)
    flipped = t.select(t.flipped, t.flipped.fileurl).collect()
    assert path_of(flipped[0, 1]).is_relative_to(pxt_home / "media")  # ~/.pixeltable/media by default
    assert flipped[0, "flipped"].size == (481, 640)

    base_path = Path.home() / 'Desktop' / 'pixeltable_outputs'
    base_path.mkdir(parents=True, exist_ok=True)
    dest_rotated = str(base_path / 'rotated')
    Path(dest_rotated).mkdir(exist_ok=True)
    t.add_computed_column(rotated=t.source_image.rotate(90), destination=dest_rotated, if_exists='replace')
    assert "Added 1 column value with 0 errors" in _printed(capsys)
    rotated_url = t.select(t.rotated, t.rotated.fileurl).collect()[0]["rotated_fileurl"]
    assert path_of(rotated_url).is_relative_to(notebook / "Desktop" / "pixeltable_outputs" / "rotated")

    dest_thumbnails = str(base_path / 'thumbnails')
    Path(dest_thumbnails).mkdir(exist_ok=True)
    t.add_computed_column(thumbnail=t.source_image.thumbnail((128, 128)), destination=dest_thumbnails,
                          if_exists='replace')
    thumb = t.select(t.thumbnail, t.thumbnail.fileurl).collect()
    assert max(thumb[0, 0].size) == 128 and path_of(thumb[0, 1]).is_relative_to(Path(dest_thumbnails))

    urls = t.select(source=t.source_image.fileurl, rotated=t.rotated.fileurl, flipped=t.flipped.fileurl).collect()
    assert list(urls.columns) == ["source", "rotated", "flipped"] and urls["rotated"][0] == rotated_url

    b2_region = 'us-east-005'
    b2_bucket = bucket
    cloud_destination = f'https://s3.{b2_region}.backblazeb2.com/{b2_bucket}/presigned-demo/'
    t.add_computed_column(cloud_thumbnail=t.source_image.thumbnail((64, 64)), destination=cloud_destination,
                          if_exists='replace')
    assert "Added 1 column value with 0 errors" in _printed(capsys)

    from pxt_assets.functions import net

    result = t.select(
        cloud_thumbnail=t.cloud_thumbnail,
        storage_url=t.cloud_thumbnail.fileurl,
        presigned_url=net.presigned_url(t.cloud_thumbnail.fileurl, 3600),
    ).collect()
    # --- what the seed says should happen ---
    assert result["storage_url"][0].startswith(cloud_destination)
    with urllib.request.urlopen(result["presigned_url"][0]) as resp:
        body = resp.read()
    key = result["storage_url"][0].removeprefix(f"https://s3.{b2_region}.backblazeb2.com/{bucket}/")
    assert body == s3_env.client().get_object(Bucket=bucket, Key=key)["Body"].read()
    assert "<img src=\"data:image/jpeg;base64," in result._repr_html_()  # inline previews in Jupyter

    # re-adding a column with if_exists='replace' replaced its files instead of orphaning them
    assert len(list(Path(dest_rotated).rglob("*.jpg"))) == 1
    # a new process finds the table, as recorded
    again = pxt.get_table('blob_storage_demo/media')
    assert list(again.spec.columns) == ["source_image", "flipped", "rotated", "thumbnail", "cloud_thumbnail"]
    assert again.count() == 1 and pxt.list_tables('blob_storage_demo') == ['blob_storage_demo/media']


def test_seed_000_dot_paths_and_resize(notebook, pxt_home, http_server, capsys):
    from pathlib import Path

    pxt.drop_dir('blob_storage_demo', force=True)
    pxt.create_dir('blob_storage_demo')
    base_path = Path.home() / 'Desktop' / 'pixeltable_outputs'
    base_path.mkdir(parents=True, exist_ok=True)
    dest_rotated = str(base_path / 'rotated')
    dest_flipped = str(base_path / 'flipped')
    Path(dest_rotated).mkdir(exist_ok=True)
    Path(dest_flipped).mkdir(exist_ok=True)
    t = pxt.create_table('blob_storage_demo.media', {'source_image': pxt.Image})
    sample_image = http_server.url('000000000036.jpg')
    t.insert(source_image=sample_image)
    t.select(t.source_image, t.source_image.fileurl).collect()
    t.add_computed_column(rotated=t.source_image.rotate(90), destination=dest_rotated)
    t.add_computed_column(flipped=t.source_image.transpose(0))
    frame = t.select(t.source_image, t.rotated, t.flipped, t.rotated.fileurl, t.flipped.fileurl).collect()
    assert path_of(frame["rotated_fileurl"][0]).is_relative_to(Path(dest_rotated))
    assert path_of(frame["flipped_fileurl"][0]).is_relative_to(pxt_home / "media")
    t.add_computed_column(thumbnail=t.source_image.resize((128, 128)), destination=dest_flipped)
    thumb = t.select(t.thumbnail, t.thumbnail.fileurl).collect()
    assert thumb[0, 0].size == (128, 128)
    assert path_of(thumb[0, 1]).is_relative_to(Path(dest_flipped))
    urls = t.select(t.source_image.fileurl, t.rotated.fileurl, t.flipped.fileurl).collect()
    assert urls[0, 0] == sample_image


def test_seed_003_load_media_from_cloud_storage(notebook, pxt_home, http_server, s3_env, tmp_path, capsys):
    bucket = unique_bucket("multimedia-commons")
    s3_env.client().create_bucket(Bucket=bucket)
    video_bytes = make_video(tmp_path / "clip.mp4", seconds=1.0).read_bytes()  # a real H.264 video (PyAV)
    for key in ("data/videos/mp4/ffe/ffb/a.mp4", "data/videos/mp4/ffe/feb/b.mp4"):
        s3_env.client().put_object(Bucket=bucket, Key=key, Body=video_bytes, ContentType="video/mp4")


    pxt.drop_dir('cloud_demo', force=True)
    pxt.create_dir('cloud_demo')
    images = pxt.create_table('cloud_demo.images', {'image': pxt.Image})
    image_urls = [http_server.url(p.name) for p in SAMPLES]
    images.insert([{'image': url} for url in image_urls])
    assert "Inserted 3 rows with 0 errors" in _printed(capsys)
    assert {name: http_server.requests["/" + name] for name in (p.name for p in SAMPLES)} == {
        p.name: 0 for p in SAMPLES}  # lazily: nothing downloaded on insert
    images.collect()

    videos = pxt.create_table('cloud_demo.videos', {'video': pxt.Video})
    s3_prefix = f's3://{bucket}/'
    video_paths = ['data/videos/mp4/ffe/ffb/a.mp4', 'data/videos/mp4/ffe/feb/b.mp4']
    videos.insert([{'video': s3_prefix + path} for path in video_paths])
    local = videos.collect()["video"]
    assert all(pathlib.Path(p).read_bytes() == video_bytes for p in local)  # downloaded on access

    images.add_computed_column(width=images.image.width)
    images.add_computed_column(height=images.image.height)
    assert "Added 3 column values with 0 errors" in _printed(capsys)
    dims = images.select(images.image, images.width, images.height).collect()
    assert list(zip(dims["width"], dims["height"])) == [(481, 640), (640, 429), (640, 426)]
    assert all(http_server.requests["/" + p.name] == 1 for p in SAMPLES)  # cached: once for both columns

    import pxt_assets.functions as pxtf

    served = videos.select(videos.video, original_uri=videos.video.fileurl,
                           http_url=pxtf.net.presigned_url(videos.video.fileurl, 3600)).collect()
    assert list(served["original_uri"]) == [s3_prefix + p for p in video_paths]
    for url in served["http_url"]:
        with urllib.request.urlopen(url) as resp:
            assert resp.read() == video_bytes and resp.headers["Content-Type"] == "video/mp4"
    videos.add_computed_column(serving_url=pxtf.net.presigned_url(videos.video.fileurl, 86400))
    assert "Added 2 column values with 0 errors" in _printed(capsys)
    assert all("X-Amz-Expires=86400" in u for u in videos.select(videos.serving_url).collect()["serving_url"])

    # the videos are real ones: their metadata and frames come from the bucket (through the cache)
    videos.add_computed_column(duration=videos.video.get_duration())
    assert [round(d, 1) for d in videos.select(videos.duration).collect()["duration"]] == [1.0, 1.0]
    from pxt_assets.functions.video import frame_iterator

    frames = pxt.create_view('cloud_demo.frames', videos, iterator=frame_iterator(videos.video, fps=2))
    assert frames.count() == 4 and "Created view 'frames' with 4 rows." in _printed(capsys)
    assert {img.size for img in frames.select(frames.frame).collect()["frame"]} == {(64, 48)}
    # a frame not written is served as its video at that time (a media fragment on the presigned URL)
    urls = frames.where(frames.pos == 1).select(pxtf.net.presigned_url(frames.frame.fileurl, 600)).collect()
    for url in urls["presigned_url"]:
        assert url.endswith("#t=0.500000") and "X-Amz-Signature=" in url
        with urllib.request.urlopen(url.split("#")[0]) as resp:
            assert resp.read() == video_bytes
