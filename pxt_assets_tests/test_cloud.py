"""Cloud destinations and sources, end to end through the asset pipeline, on real emulators: S3 (moto),
GCS (gcp-storage-emulator) and Azure (Azurite). The same behaviour is checked for every provider."""

from __future__ import annotations

import collections
import hashlib
import pathlib
import threading
import urllib.request

import pytest

import pxt_assets as pxt
from pxt_assets import stores
from pxt_assets.config import load_settings
from pxt_assets.functions import net
from pxt_assets.media import shared_cache, suffix_of
from pxt_assets_tests.places import SERVER_FIXTURE, Place


@pytest.fixture(params=["s3", "gcs", "azure"])
def provider(request, pxt_home) -> Place:
    return Place(request.param, request.getfixturevalue(SERVER_FIXTURE[request.param]))


@pytest.fixture
def downloads(monkeypatch):
    """Counts store downloads per URI, at our client layer, for every provider: to a file (download) or into
    memory (read_bytes, which may itself go through download: counted once)."""
    counts: collections.Counter[str] = collections.Counter()
    inside = threading.local()

    def watch(uri_example: str) -> None:
        store = stores.store_for(uri_example)
        real_download, real_read = store.download, store.read_bytes

        def download(uri, dest):
            if not getattr(inside, "read", False):
                counts[uri] += 1
            return real_download(uri, dest)

        def read_bytes(uri):
            counts[uri] += 1
            inside.read = True
            try:
                return real_read(uri)
            finally:
                inside.read = False

        monkeypatch.setattr(store, "download", download)
        monkeypatch.setattr(store, "read_bytes", read_bytes)

    counts.watch = watch  # type: ignore[attr-defined]
    return counts


def _digest(path) -> str:
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def _cache():
    s = load_settings()
    return shared_cache(s.file_cache_dir, s.file_cache_bytes)


def test_computed_media_go_to_the_cloud_destination_and_fill_the_cache(provider, instance, images, downloads):
    downloads.watch(provider.prefix)
    t = pxt.MediaTable("cloud/out", {"img": pxt.Image})
    t.add_computed_column(rotated=t.img.rotate(90), destination=provider.prefix + "rotated/")
    t.add_computed_column(thumbnail=t.img.thumbnail((64, 64)), destination=provider.prefix + "thumbs/")
    result = t.insert([{"img": str(p)} for p in images], instance=instance)
    assert result.num_errors == 0
    urls = t.select(t.rotated.fileurl, t.thumbnail.fileurl).collect().to_pandas()
    assert all(u.startswith(provider.prefix + "rotated/") for u in urls["rotated_fileurl"])
    assert sorted(provider.objects("rotated/")) == sorted(urls["rotated_fileurl"])
    assert len(provider.objects("thumbs/")) == 3
    assert {provider.content_type(u) for u in urls["rotated_fileurl"]} == {"image/jpeg"}
    assert all(_cache().contains(u) for u in urls.values.ravel())  # write-through
    paths = t.select(t.rotated.localpath).collect()["rotated_localpath"]
    assert all(pathlib.Path(p).is_file() for p in paths)
    assert sum(downloads.values()) == 0  # nothing uploaded is downloaded again


def test_local_file_with_cloud_input_media_dest_is_uploaded_and_cached(provider, monkeypatch, instance, images,
                                                                       downloads):
    monkeypatch.setenv("PIXELTABLE_INPUT_MEDIA_DEST", provider.prefix + "inputs/")
    downloads.watch(provider.prefix)
    t = pxt.MediaTable("cloud/local_in", {"img": pxt.Image})
    t.add_computed_column(width=t.img.width)
    t.insert([{"img": str(p)} for p in images], instance=instance)
    frame = t.select(t.img.fileurl, t.width).collect()
    assert all(u.startswith(provider.prefix + "inputs/") for u in frame["img_fileurl"])
    assert list(frame["width"]) == [481, 640, 640]
    cached = [_cache().path_for(u, suffix_of(u)) for u in frame["img_fileurl"]]
    assert [_digest(c) for c in cached] == [_digest(p) for p in images]
    assert sum(downloads.values()) == 0


def test_url_with_cloud_input_media_dest_is_downloaded_once_uploaded_and_cached(provider, monkeypatch, instance,
                                                                                http_server, downloads):
    monkeypatch.setenv("PIXELTABLE_INPUT_MEDIA_DEST", provider.prefix + "inputs/")
    monkeypatch.setenv("PIXELTABLE_OUTPUT_MEDIA_DEST", provider.prefix + "outputs/")
    downloads.watch(provider.prefix)
    t = pxt.MediaTable("cloud/url_in", {"img": pxt.Image})
    t.add_computed_column(rotated=t.img.rotate(90))
    t.add_computed_column(flipped=t.img.transpose(0))
    t.add_computed_column(height=t.img.height)
    names = ["000000000036.jpg", "000000000090.jpg"]
    t.insert([{"img": http_server.url(n) + "?v=1"} for n in names], instance=instance)
    assert [http_server.requests["/" + n] for n in names] == [1, 1]
    frame = t.select(t.img.fileurl, t.rotated.fileurl, t.height).collect()
    assert all(u.startswith(provider.prefix + "inputs/") for u in frame["img_fileurl"])
    assert all(u.startswith(provider.prefix + "outputs/") for u in frame["rotated_fileurl"])
    assert list(frame["height"]) == [640, 429]
    assert [_digest(_cache().path_for(u, suffix_of(u))) for u in frame["img_fileurl"]] == [
        _digest(http_server.root / n) for n in names
    ]
    assert sum(downloads.values()) == 0  # the insert's download fed the upload, the cache and every column


def test_cloud_sources_are_downloaded_lazily_and_once_for_all_columns(provider, tmp_path, instance, images,
                                                                     downloads):
    downloads.watch(provider.prefix)
    uris = [provider.put(f"src/{p.name}", p.read_bytes()) for p in images]
    lazy = pxt.MediaTable("cloud/lazy", {"img": pxt.Image})
    lazy.insert([{"img": u} for u in uris], instance=instance)
    assert sum(downloads.values()) == 0  # stored as given, not fetched at insert
    assert list(lazy.select(lazy.img.fileurl).collect()["img_fileurl"]) == uris

    out = tmp_path / "out"
    out.mkdir()
    t = pxt.MediaTable("cloud/many_columns", {"img": pxt.Image})
    t.add_computed_column(rotated=t.img.rotate(90), destination=str(out))
    t.add_computed_column(flipped=t.img.transpose(0), destination=str(out))
    t.add_computed_column(thumbnail=t.img.thumbnail((32, 32)), destination=str(out))
    t.add_computed_column(width=t.img.width)
    t.insert([{"img": u} for u in uris], instance=instance)
    assert dict(downloads) == {u: 1 for u in uris}
    assert list(t.select(t.width).collect()["width"]) == [481, 640, 640]


def test_missing_bucket_is_an_error_naming_column_and_destination(provider):
    bad = provider.prefix.replace(provider.bucket, provider.bucket + "-missing") + "out/"
    t = pxt.MediaTable("cloud/missing", {"img": pxt.Image})
    with pytest.raises(pxt.DestinationError) as e:
        t.add_computed_column(rotated=t.img.rotate(90), destination=bad)
    assert "'rotated'" in str(e.value) and bad in str(e.value) and "not found" in str(e.value)
    assert e.value.kind == "not_found"


def test_serving_url_column_holds_presigned_urls_that_fetch_the_files(provider, instance, images, request):
    if provider.name == "gcs":
        request.getfixturevalue("gcs_signing_key")
    t = pxt.MediaTable("cloud/serving", {"img": pxt.Image})
    t.add_computed_column(thumbnail=t.img.thumbnail((64, 64)), destination=provider.prefix + "thumbs/")
    t.add_computed_column(serving_url=net.presigned_url(t.thumbnail.fileurl, 3600))
    assert t.insert([{"img": str(p)} for p in images], instance=instance).num_errors == 0
    frame = t.select(t.serving_url, t.thumbnail.localpath,
                     again=net.presigned_url(t.thumbnail.fileurl, 60)).collect().to_pandas()
    for url, local, again in frame.itertuples(index=False):
        assert url.startswith("http") and again.startswith("http")
        with urllib.request.urlopen(url) as resp:
            assert resp.read() == pathlib.Path(local).read_bytes()
            assert resp.headers["Content-Type"] == "image/jpeg"


def test_cloud_output_media_dest_is_the_default_and_a_column_destination_still_wins(pxt_home, monkeypatch,
                                                                                   s3_env, gcs_env, instance,
                                                                                   images):
    s3p, gcsp = Place("s3", s3_env), Place("gcs", gcs_env)
    (pxt_home / "config.toml").write_text(f'[pixeltable]\noutput_media_dest = "{s3p.prefix}from-file/"\n')
    monkeypatch.setenv("PIXELTABLE_OUTPUT_MEDIA_DEST", s3p.prefix + "from-env/")
    t = pxt.MediaTable("cloud/precedence", {"img": pxt.Image})
    t.add_computed_column(flipped=t.img.transpose(0))
    t.add_computed_column(rotated=t.img.rotate(90), destination=gcsp.prefix + "explicit/")
    t.insert(img=str(images[0]), instance=instance)
    row = t.select(t.flipped.fileurl, t.rotated.fileurl).collect().to_pandas().iloc[0]
    assert row["flipped_fileurl"].startswith(s3p.prefix + "from-env/")
    assert row["rotated_fileurl"].startswith(gcsp.prefix + "explicit/")
    assert s3p.objects("from-file/") == [] and len(s3p.objects("from-env/")) == 1


def test_presigned_url_passes_http_through_and_refuses_local_files(pxt_home, tmp_path, instance, http_server):
    t = pxt.MediaTable("cloud/presign_kinds", {"img": pxt.Image})
    t.add_computed_column(flipped=t.img.transpose(0))
    t.add_computed_column(serving=net.presigned_url(t.img.fileurl, 60))
    t.add_computed_column(flipped_url=net.presigned_url(t.flipped.fileurl, 60))
    url = http_server.url("000000000106.jpg") + "?keep=me"
    t.insert(img=url, instance=instance)
    frame = t.select(t.serving, t.flipped_url, err=t.flipped_url.errormsg).collect()
    assert frame["serving"][0] == url
    assert frame["flipped_url"][0] is None
    assert "Cannot generate presigned URL for local file://" in frame["err"][0]


@pytest.mark.parametrize("bad", ["s3:///nobucket", "wasbs://nocontainer/x", "https://example.com/bucket/x/",
                                 "gs://", "abfss://c@acct.blob.core.windows.net/x"])
def test_bad_cloud_uri_forms_are_refused_when_the_column_is_defined(pxt_home, bad):
    t = pxt.MediaTable("cloud/bad_forms", {"img": pxt.Image})
    with pytest.raises(pxt.DestinationError) as e:
        t.add_computed_column(rotated=t.img.rotate(90), destination=bad)
    assert "'rotated'" in str(e.value) and bad in str(e.value)


def test_denied_access_is_an_error_naming_column_and_destination(pxt_home, azure_env, monkeypatch):
    container = Place("azure", azure_env)
    # Azurite checks the shared key: a wrong key is refused with 403, as a real account would.
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWtleQ==")
    t = pxt.MediaTable("cloud/denied", {"img": pxt.Image})
    with pytest.raises(pxt.DestinationError) as e:
        t.add_computed_column(rotated=t.img.rotate(90), destination=container.prefix + "out/")
    assert e.value.kind == "access_denied"
    assert "'rotated'" in str(e.value) and container.prefix + "out/" in str(e.value)
    assert "Access denied" in str(e.value)


def test_s3_profile_chooses_the_credentials_and_endpoint(pxt_home, s3_env, tmp_path, monkeypatch, instance, images):
    bucket = Place("s3", s3_env)
    config = tmp_path / "aws_config"
    config.write_text(f"[profile media]\nendpoint_url = {s3_env.endpoint}\nregion = eu-west-3\n"
                      "aws_access_key_id = profile-key\naws_secret_access_key = s\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("PIXELTABLE_S3_PROFILE", "media")
    for var in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(var)
    t = pxt.MediaTable("cloud/s3_profile", {"img": pxt.Image})
    t.add_computed_column(rotated=t.img.rotate(90), destination=bucket.prefix + "p/")
    t.add_computed_column(url=net.presigned_url(t.rotated.fileurl, 60))
    t.insert(img=str(images[0]), instance=instance)
    url = t.select(t.url).collect()["url"][0]
    assert url.startswith(s3_env.endpoint)
    # the profile's key signs; the scope is the bucket's own region (us-east-1 here, as it was created),
    # looked up once, not the profile's eu-west-3: S3 refuses a URL signed for another region
    assert "profile-key%2F" in url and "%2Fus-east-1%2Fs3%2Faws4_request" in url
    assert len(bucket.objects("p/")) == 1


def test_suffix_of_is_the_url_paths_suffix_for_any_string():
    """suffix_of skips the URL parse for plain names; on 200,000 random strings it says what the parse and
    PurePosixPath say (query strings, fragments, '.' segments, trailing slashes, odd schemes)."""
    import random
    import urllib.parse

    def reference(uri: str) -> str:
        path = urllib.parse.urlparse(uri).path if "://" in uri else uri
        suffix = pathlib.PurePosixPath(path).suffix
        return suffix.lower() if 1 < len(suffix) <= 6 else ""

    rng = random.Random(2026)
    cases = ["s3://b/x.JPG", "s3://my.bucket", "s3://b/dir/", "s3://b/a.jpg/.", "https://h/a.webp?x=1.png",
             "file:///tmp/a.tar.gz", "s3://b/.hidden", "a.", "%.://x.y"]
    for _ in range(200_000):
        cases.append(rng.choice(["", "s3://", "http://h", "file://", "gs://b/", "é://"])
                     + "".join(rng.choice("ab.Z/:?#;_-. %1é") for _ in range(rng.randint(0, 14))))
    assert [c for c in cases if suffix_of(c) != reference(c)] == []
    assert suffix_of("s3://b/x.JPG") == ".jpg" and suffix_of("s3://my.bucket") == ""
