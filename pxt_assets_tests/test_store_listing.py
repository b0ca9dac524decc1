"""ObjectStore.list_objects (URI, modification time, size) on every provider: local files and real emulators
(moto for S3, gcp-storage-emulator for GCS, Azurite for Azure). No mocks: paging is observed at the HTTP
layer, where urllib3 logs every request the SDKs (botocore, google-cloud-storage, azure-storage-blob) make."""

from __future__ import annotations

import logging
import pathlib
import re
import time
import urllib.parse

import pytest

from pxt_assets import stores
from pxt_assets.stores.base import ObjectInfo, StoreError
from pxt_assets.stores.local import file_url
from pxt_assets_tests.conftest import unique_bucket
from pxt_assets_tests.emulators import AZURITE_ACCOUNT

PROVIDERS = ["local", "s3", "gcs", "azure"]
CLOUD = ["s3", "gcs", "azure"]

# The watched folder, put in an order that is not the listing order ("sub.txt" sorts before "sub/...").
WATCHED = {"watch/sub/deeper/d.bin": 4096, "watch/b.jpg": 10, "watch/sub.txt": 5, "watch/empty.txt": 0,
           "watch/sub/c.jpg": 1234, "watch/a.png": 77}
# Siblings that share the prefix's first letters but are not under the folder.
SIBLINGS = {"watch2/x.jpg": 3, "watchx.jpg": 4, "other/y.jpg": 5}
# What urllib3 logs for each request: 'http://127.0.0.1:PORT "GET /path?query HTTP/1.1" 200 None'.
_REQUEST = re.compile(r'"GET (\S+) HTTP/')


class Place:
    """An empty folder (local) or a fresh bucket / container on an emulator, and direct access to it."""

    def __init__(self, name: str, tmp_path: pathlib.Path, server=None) -> None:
        self.name, self.server, self.tmp = name, server, tmp_path
        self.bucket = unique_bucket("lst")
        if name == "local":
            self.root = tmp_path / "root"
            self.root.mkdir()
            self.prefix = file_url(self.root) + "/"
        elif name == "s3":
            server.client().create_bucket(Bucket=self.bucket)
            self.prefix = f"s3://{self.bucket}/"
        elif name == "gcs":
            server.client().create_bucket(self.bucket)
            self.prefix = f"gs://{self.bucket}/"
        else:
            server.client().create_container(self.bucket)
            self.prefix = f"wasbs://{self.bucket}@{AZURITE_ACCOUNT}.blob.core.windows.net/"
        self.store = stores.store_for(self.prefix)

    def uri(self, name: str) -> str:
        return self.prefix + name

    def put(self, name: str, size: int, fill: bytes = b"x") -> str:
        src = self.tmp / "upload.bin"
        src.write_bytes((fill * size)[:size])
        uri = self.uri(name)
        self.store.upload(src, uri)
        return uri

    def put_noise(self, folder: str) -> None:
        """Things under `folder` that are not objects: folder markers, hidden and temporary files."""
        if self.name == "local":
            base = self.root / folder
            (base / ".hidden.jpg").write_bytes(b"h")
            (base / ".tmp-abc123.jpg").write_bytes(b"half a file")
            (base / ".git").mkdir()
            (base / ".git" / "config").write_bytes(b"c")
            (base / "emptydir").mkdir()
        elif self.name == "s3":
            self.server.client().put_object(Bucket=self.bucket, Key=f"{folder}/marker/", Body=b"")
        elif self.name == "gcs":
            self.server.client().bucket(self.bucket).blob(f"{folder}/marker/").upload_from_string(b"")
        else:  # an ADLS Gen2 directory, as the Blob API shows it
            self.server.client().get_blob_client(self.bucket, f"{folder}/marker").upload_blob(
                b"", metadata={"hdi_isfolder": "true"})

    def list_requests(self, caplog) -> list[dict[str, list[str]]]:
        """The query parameters of every listing request made to this bucket, in order."""
        found = []
        for record in caplog.records:
            m = _REQUEST.search(record.getMessage()) if record.name == "urllib3.connectionpool" else None
            if not m:
                continue
            parts = urllib.parse.urlsplit(m.group(1))
            query = urllib.parse.parse_qs(parts.query)
            if ((self.name == "s3" and parts.path == f"/{self.bucket}" and query.get("list-type") == ["2"])
                    or (self.name == "gcs" and parts.path.endswith(f"/b/{self.bucket}/o"))
                    or (self.name == "azure" and parts.path == f"/{AZURITE_ACCOUNT}/{self.bucket}"
                        and query.get("comp") == ["list"])):
                found.append(query)
        return found

    #: the query parameter carrying the page size, per provider
    @property
    def page_param(self) -> str:
        return {"s3": "max-keys", "gcs": "maxResults", "azure": "maxresults"}[self.name]


@pytest.fixture(params=PROVIDERS)
def place(request, tmp_path, pxt_home) -> Place:
    if request.param == "local":
        return Place("local", tmp_path)
    server = request.getfixturevalue({"s3": "s3_env", "gcs": "gcs_env", "azure": "azure_env"}[request.param])
    return Place(request.param, tmp_path, server)


def test_list_objects_returns_exactly_the_objects_under_the_prefix(place):
    t0 = time.time()
    for name, size in {**WATCHED, **SIBLINGS}.items():
        place.put(name, size)
    place.put_noise("watch")
    t1 = time.time()

    want = sorted(place.uri(n) for n in WATCHED)
    for prefix in (place.uri("watch/"), place.uri("watch")):  # a prefix is a folder, with or without '/'
        got = list(place.store.list_objects(prefix))
        assert all(type(o) is ObjectInfo for o in got)
        if place.name == "gcs":  # gcp-storage-emulator answers in insertion order (GCS itself sorts by name)
            got.sort(key=lambda o: o.uri)
        assert [o.uri for o in got] == want  # exactly these, in lexicographic order of their names
        assert {o.uri: o.size for o in got} == {place.uri(n): s for n, s in WATCHED.items()}
        for o in got:
            assert type(o.mtime) is float and type(o.size) is int
            # UTC epoch seconds, like time.time(); S3 and Azure truncate to whole seconds
            assert t0 - 2 <= o.mtime <= t1 + 2, (o, t0, t1)
        assert sorted(place.store.list(prefix)) == want  # list() is still the URIs alone

    everything = list(place.store.list_objects(place.prefix))
    assert {o.uri for o in everything} == {place.uri(n) for n in {**WATCHED, **SIBLINGS}}
    deeper = list(place.store.list_objects(place.uri("watch/sub/deeper")))
    assert [(o.uri, o.size) for o in deeper] == [(place.uri("watch/sub/deeper/d.bin"), 4096)]
    if place.name != "local":
        assert list(place.store.list_objects(place.uri("nothing/"))) == []  # an empty prefix: nothing


def test_list_objects_pages_lazily_with_the_page_size_given(place, caplog):
    names = [f"paged/{i:02d}.bin" for i in range(7)]
    for i, name in enumerate(names):
        place.put(name, i + 1)
    place.put("paged2/not-me.bin", 1)

    caplog.set_level(logging.DEBUG, logger="urllib3.connectionpool")
    it = place.store.list_objects(place.uri("paged/"), page_size=2)
    first = next(it)
    rest = list(it)
    got = [first, *rest]
    assert sorted(o.uri for o in got) == [place.uri(n) for n in names]  # all seven, each once
    assert {o.uri: o.size for o in got} == {place.uri(n): i + 1 for i, n in enumerate(names)}
    if place.name == "local":
        return
    requests = place.list_requests(caplog)
    assert requests, "no listing request was seen"
    assert all(q.get(place.page_param) == ["2"] for q in requests), requests  # the page size is really sent
    if place.name == "gcs":
        # gcp-storage-emulator ignores maxResults and answers in a single page; the request still asks for 2.
        assert len(requests) >= 1
    else:
        assert len(requests) == 4  # ceil(7 / 2) pages, one request each


@pytest.fixture(params=["s3", "azure"])  # local files have no pages; gcp-storage-emulator answers in one page
def paged_place(request, tmp_path, pxt_home) -> Place:
    return Place(request.param, tmp_path, request.getfixturevalue(f"{request.param}_env"))


def test_the_first_object_comes_before_the_later_pages_are_requested(paged_place, caplog):
    place = paged_place
    for i in range(5):
        place.put(f"lazy/{i}.bin", 1)
    caplog.set_level(logging.DEBUG, logger="urllib3.connectionpool")
    it = place.store.list_objects(place.uri("lazy"), page_size=2)
    assert place.list_requests(caplog) == []  # nothing requested until the iterator is used
    assert next(it).uri == place.uri("lazy/0.bin")
    assert len(place.list_requests(caplog)) == 1
    assert [o.uri for o in it] == [place.uri(f"lazy/{i}.bin") for i in range(1, 5)]
    assert len(place.list_requests(caplog)) == 3


def test_an_overwritten_object_has_a_newer_mtime_and_its_new_size(place):
    place.put("ow/x.bin", 1)
    (before,) = place.store.list_objects(place.uri("ow/"))
    # S3 and Azure report whole seconds: wait past one so that "newer" is visible; GCS and local are finer.
    time.sleep(1.1 if place.name in ("s3", "azure") else 0.05)
    place.put("ow/x.bin", 2, fill=b"y")
    (after,) = place.store.list_objects(place.uri("ow/"))
    assert after.uri == before.uri == place.uri("ow/x.bin")
    assert after.mtime >= before.mtime
    assert after.mtime > before.mtime  # and strictly newer, since the pause exceeds the provider's precision
    assert (before.size, after.size) == (1, 2)


def test_a_bad_page_size_is_refused_at_the_call(place):
    for bad in (0, -1, True, 2.5, "2"):
        with pytest.raises(StoreError) as e:
            place.store.list_objects(place.prefix, page_size=bad)
        assert e.value.kind == "invalid"


@pytest.mark.parametrize("name", CLOUD)
def test_a_missing_bucket_is_not_found_naming_it(name, request, tmp_path, pxt_home):
    place = Place(name, tmp_path, request.getfixturevalue(f"{name}_env"))
    missing = unique_bucket("missing")
    prefix = place.prefix.replace(place.bucket, missing) + "watch/"
    with pytest.raises(StoreError) as e:
        list(place.store.list_objects(prefix))
    assert e.value.kind == "not_found"
    assert f"'{missing}'" in str(e.value) and "not found" in str(e.value)


def test_local_listing_takes_paths_or_file_urls_and_skips_hidden_and_temp_files(tmp_path):
    root = tmp_path / "in box"  # a space: percent-encoded in the file:// URLs
    (root / "sub").mkdir(parents=True)
    (root / "b.jpg").write_bytes(b"bb")
    (root / "sub" / "a.jpg").write_bytes(b"a")
    (root / "sub.txt").write_bytes(b"t")
    (root / ".tmp-x.jpg").write_bytes(b"partial")
    (root / ".DS_Store").write_bytes(b"d")
    (root / ".cache").mkdir()
    (root / ".cache" / "c.jpg").write_bytes(b"c")
    store = stores.store_for(str(root))

    want = [file_url(root / "b.jpg"), file_url(root / "sub.txt"), file_url(root / "sub" / "a.jpg")]
    for prefix in (str(root), str(root) + "/", file_url(root), file_url(root) + "/"):
        got = list(store.list_objects(prefix))
        assert [o.uri for o in got] == want  # sorted as S3 sorts keys: "sub.txt" < "sub/a.jpg"
        assert [o.size for o in got] == [2, 1, 1]
        assert got[0].mtime == (root / "b.jpg").stat().st_mtime_ns / 1e9
        assert "%20" in got[0].uri
        assert sorted(store.list(prefix)) == sorted(want)


def test_local_prefix_that_does_not_exist_is_not_found(tmp_path):
    store = stores.store_for(str(tmp_path))
    missing = tmp_path / "nope"
    for prefix in (str(missing), str(missing) + "/", file_url(missing)):
        with pytest.raises(StoreError) as e:
            store.list_objects(prefix)
        assert e.value.kind == "not_found" and str(missing) in str(e.value)
    (tmp_path / "file.jpg").write_bytes(b"x")
    with pytest.raises(StoreError) as e:
        store.list_objects(str(tmp_path / "file.jpg"))
    assert e.value.kind == "invalid"
    assert list(store.list(str(missing))) == []  # list() keeps its old leniency for a missing folder


def test_a_store_that_cannot_list_says_so():
    store = stores.store_for("https://example.com/media/")
    with pytest.raises(StoreError) as e:
        store.list_objects("https://example.com/media/")
    assert e.value.kind == "unsupported"
