"""The ObjectStore contract, run by every provider against its own real server: a local folder, moto (S3),
gcp-storage-emulator (GCS), Azurite (Azure) and the home bucket (a stand-in control plane over moto)."""

from __future__ import annotations

import pathlib
import urllib.request
import uuid

import pytest

from pxt_assets import stores
from pxt_assets.stores.local import file_url
from pxt_assets_tests.conftest import unique_bucket
from pxt_assets_tests.emulators import AZURITE_ACCOUNT

PROVIDERS = ["local", "s3", "gcs", "azure", "pxt"]


class Place:
    """A fresh, empty prefix on one provider."""

    def __init__(self, name: str, tmp_path: pathlib.Path, request) -> None:
        self.name, self.tmp = name, tmp_path
        bucket = unique_bucket("ctr")
        if name == "local":
            (tmp_path / "root").mkdir()
            self.prefix = file_url(tmp_path / "root") + "/"
        elif name == "s3":
            request.getfixturevalue("s3_env").client().create_bucket(Bucket=bucket)
            self.prefix = f"s3://{bucket}/"
        elif name == "gcs":
            request.getfixturevalue("gcs_env").client().create_bucket(bucket)
            request.getfixturevalue("gcs_signing_key")  # a service-account key of our own, to sign URLs
            self.prefix = f"gs://{bucket}/"
        elif name == "azure":
            request.getfixturevalue("azure_env").client().create_container(bucket)
            self.prefix = f"wasbs://{bucket}@{AZURITE_ACCOUNT}.blob.core.windows.net/"
        else:
            request.getfixturevalue("home_cloud")
            self.prefix = f"pxt://acme:main/buckets/home/{uuid.uuid4().hex[:8]}/"
        self.store = stores.store_for(self.prefix)

    def file(self, name: str, data: bytes) -> pathlib.Path:
        path = self.tmp / name
        path.write_bytes(data)
        return path


@pytest.fixture(params=PROVIDERS)
def place(request, tmp_path, pxt_home) -> Place:
    return Place(request.param, tmp_path, request)  # Azure skips only where Azurite (npm) is missing


def test_a_file_written_is_read_back_the_same(place):
    uri = place.prefix + "dir/a.jpg"
    data = bytes(range(256)) * 300
    place.store.validate_destination(place.prefix)
    place.store.upload(place.file("src.jpg", data), uri)
    assert place.store.exists(uri)
    place.store.download(uri, place.tmp / "back.jpg")
    assert (place.tmp / "back.jpg").read_bytes() == data
    assert place.store.read_bytes(uri) == data
    place.store.write_bytes(b"second", place.prefix + "dir/b.png")
    assert place.store.read_bytes(place.prefix + "dir/b.png") == b"second"


def test_a_missing_file_is_not_found_naming_it(place):
    uri = place.prefix + "missing/x.jpg"
    assert not place.store.exists(uri)
    with pytest.raises(stores.StoreError) as e:
        place.store.read_bytes(uri)
    assert e.value.kind == "not_found" and not e.value.retryable and "x.jpg" in str(e.value)


def test_listing_shows_what_was_written_in_the_form_given(place):
    names = {"l/a.jpg": b"a", "l/sub/b.jpg": b"bb", "l/c.txt": b"ccc"}
    for name, data in names.items():
        place.store.write_bytes(data, place.prefix + name)
    listed = {info.uri: info.size for info in place.store.list_objects(place.prefix + "l/")}
    assert listed == {place.prefix + name: len(data) for name, data in names.items()}
    assert {place.store.canonical(u) for u in listed} == {place.store.canonical(place.prefix + n) for n in names}


def test_delete_removes_a_file_and_deleting_it_again_is_fine(place):
    uri = place.prefix + "d/a.jpg"
    place.store.write_bytes(b"x", uri)
    place.store.delete(uri)
    assert not place.store.exists(uri)
    place.store.delete(uri)
    assert list(place.store.list_objects(place.prefix + "d/")) == []


def test_a_presigned_url_serves_the_file_or_local_files_say_why_not(place):
    uri = place.prefix + "p/a.jpg"
    place.store.write_bytes(b"served bytes", uri)
    if place.name == "local":
        with pytest.raises(stores.StoreError):
            place.store.presign(uri, 60)
        return
    single = place.store.presign(uri, 60)
    many = place.store.presign_many([uri, uri], 60)
    assert len(many) == 2
    for url in (single, *many):
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert resp.read() == b"served bytes"
