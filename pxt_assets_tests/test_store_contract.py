"""The ObjectStore contract, run by every provider against its own real server: a local folder, moto (S3),
gcp-storage-emulator (GCS), Azurite (Azure) and the home bucket (a stand-in control plane over moto).

No mocks: listing pages are observed at the HTTP layer, where urllib3 logs every request the SDKs (botocore,
google-cloud-storage, azure-storage-blob) make. What only one provider does stays in test_store_<provider>.py
(S3 regions and R2/B2/Tigris hosts, GCS V4 signatures, Azure's URI forms and SAS, faults and retries)."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import logging
import os
import threading
import time
import urllib.request

import pytest

from pxt_assets import stores
from pxt_assets.stores.base import MAX_PRESIGN_SECONDS, ObjectInfo, StoreError
from pxt_assets_tests.conftest import query_params, unique_bucket
from pxt_assets_tests.emulators import AZURITE_ACCOUNT
from pxt_assets_tests.places import PROVIDERS, Place, place_for

CLOUD = [p for p in PROVIDERS if p != "local"]  # presigned URLs and content types


def _places(params: list[str], doc: str):
    @pytest.fixture(params=params)
    def fixture(request, tmp_path, pxt_home) -> Place:
        return place_for(request.param, request, tmp_path)

    fixture.__doc__ = doc
    return fixture


place = _places(PROVIDERS, "A fresh, empty place on each provider.")
cloud_place = _places(CLOUD, "Each provider that serves presigned URLs and stores a content type.")
bucket_place = _places(["s3", "gcs", "azure"], "Each provider whose bucket (container) a URI names.")
# local files have no pages; gcp-storage-emulator answers in one page
paged_place = _places(["s3", "azure", "pxt"], "Each provider whose server answers a listing in pages.")

# The watched folder, put in an order that is not the listing order ("sub.txt" sorts before "sub/...").
WATCHED = {"watch/sub/deeper/d.bin": 4096, "watch/b.jpg": 10, "watch/sub.txt": 5, "watch/empty.txt": 0,
           "watch/sub/c.jpg": 1234, "watch/a.png": 77}
# Siblings that share the prefix's first letters but are not under the folder.
SIBLINGS = {"watch2/x.jpg": 3, "watchx.jpg": 4, "other/y.jpg": 5}


# -- reading and writing ----------------------------------------------------------------------------------


def test_a_file_written_is_read_back_the_same(place, tmp_path):
    uri = place.uri("dir/a.jpg")
    src = tmp_path / "src.jpg"
    src.write_bytes(os.urandom((3 << 20) + 17))
    place.store.validate_destination(place.prefix)
    place.store.upload(src, uri)
    assert place.store.exists(uri)
    place.store.download(uri, tmp_path / "back.jpg")
    assert (tmp_path / "back.jpg").read_bytes() == src.read_bytes()
    assert place.store.read_bytes(uri) == src.read_bytes()
    place.store.write_bytes(b"second", place.uri("dir/b.png"))
    assert place.store.read_bytes(place.uri("dir/b.png")) == b"second"


def test_writing_again_replaces_the_file_with_its_new_size_and_a_newer_mtime(place, tmp_path):
    uri = place.uri("ow/x.bin")
    (tmp_path / "old").write_bytes(b"x")
    (tmp_path / "new").write_bytes(b"yy")
    place.store.upload(tmp_path / "old", uri)
    (before,) = place.store.list_objects(place.uri("ow/"))
    # S3 and Azure report whole seconds (their servers share this clock): wait into the next second so that
    # "newer" is visible; GCS and local files are finer.
    time.sleep(1.01 - time.time() % 1 if place.name in ("s3", "azure", "pxt") else 0.05)
    place.store.upload(tmp_path / "new", uri)
    (after,) = place.store.list_objects(place.uri("ow/"))
    assert after.uri == before.uri == uri
    assert after.mtime > before.mtime  # strictly newer, since the pause exceeds the provider's precision
    assert (before.size, after.size) == (1, 2)
    place.store.download(uri, tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == b"yy" == place.store.read_bytes(uri)


def test_a_stored_file_has_the_content_type_of_its_name_or_the_one_given(cloud_place, tmp_path):
    place = cloud_place
    src = tmp_path / "f"
    src.write_bytes(b"x" * 1000)
    place.store.upload(src, place.uri("in/photo.jpg"))
    place.store.upload(src, place.uri("in/icon.png"))
    place.store.upload(src, place.uri("in/c"), content_type="image/webp")
    place.store.write_bytes(b"abc", place.uri("in/w.png"))
    place.store.write_bytes(b"abc", place.uri("in/notes.bin"), content_type="text/plain")
    assert {name: place.content_type(place.uri(f"in/{name}"))
            for name in ("photo.jpg", "icon.png", "c", "w.png", "notes.bin")} == {
        "photo.jpg": "image/jpeg", "icon.png": "image/png", "c": "image/webp", "w.png": "image/png",
        "notes.bin": "text/plain"}


def test_a_missing_file_is_not_found_naming_it_and_leaves_no_file(place, tmp_path):
    uri = place.uri("missing/x.jpg")
    assert not place.store.exists(uri)
    with pytest.raises(StoreError) as e:
        place.store.read_bytes(uri)
    assert e.value.kind == "not_found" and not e.value.retryable and place.shown(uri) in str(e.value)
    with pytest.raises(StoreError) as e:
        place.store.download(uri, tmp_path / "out.jpg")
    assert e.value.kind == "not_found" and place.shown(uri) in str(e.value)
    assert not (tmp_path / "out.jpg").exists()


def test_a_folder_is_not_a_file(place, tmp_path):
    place.put("folder/a.jpg", b"a")
    with pytest.raises(StoreError) as e:
        place.store.download(place.uri("folder/"), tmp_path / "out")
    # Object stores without folders (S3) find no object of that name; the others refuse the URI.
    assert e.value.kind == ("not_found" if place.name in ("s3", "pxt") else "invalid")
    assert not (tmp_path / "out").exists()


def test_a_missing_bucket_is_not_found_naming_it(bucket_place, tmp_path):
    place = bucket_place
    missing = unique_bucket("missing")
    prefix = place.prefix.replace(place.bucket, missing)
    with pytest.raises(StoreError) as e:
        place.store.validate_destination(prefix + "out/")
    assert e.value.kind == "not_found"
    assert str(e.value) == (f"Container '{missing}' not found in account '{AZURITE_ACCOUNT}'"
                            if place.name == "azure" else f"Bucket '{missing}' not found")
    with pytest.raises(StoreError) as e:
        list(place.store.list_objects(prefix + "watch/"))
    assert e.value.kind == "not_found" and f"'{missing}'" in str(e.value) and "not found" in str(e.value)
    assert not place.store.exists(prefix + "a.jpg")
    with pytest.raises(StoreError) as e:
        place.store.download(prefix + "a.jpg", tmp_path / "out.jpg")
    assert e.value.kind == "not_found" and prefix + "a.jpg" in str(e.value)
    assert not (tmp_path / "out.jpg").exists()
    with pytest.raises(StoreError) as e:
        place.store.write_bytes(b"x", prefix + "a.jpg")
    assert e.value.kind == "not_found" and prefix + "a.jpg" in str(e.value)


def test_validating_a_destination_writes_nothing(place):
    place.store.validate_destination(place.prefix)
    place.store.validate_destination(place.prefix.rstrip("/"))
    if place.name == "local":  # a local destination is a folder that exists
        with pytest.raises(StoreError) as e:
            place.store.validate_destination(place.uri("media/"))
        assert e.value.kind == "not_found"
    else:  # a folder in a bucket is only a prefix
        place.store.validate_destination(place.uri("media/"))
    assert list(place.store.list_objects(place.prefix)) == []


def test_delete_removes_a_file_and_deleting_it_again_is_fine(place):
    uri = place.put("d/a.jpg", b"x")
    kept = place.put("d/b.jpg", b"y")
    assert place.store.exists(uri)
    place.store.delete(uri)
    assert not place.store.exists(uri)
    place.store.delete(uri)
    assert list(place.store.list(place.uri("d/"))) == [kept]


def test_join_puts_exactly_one_slash(place):
    want = place.uri("out/t/ab/x.jpg")
    names = ["t/ab/x.jpg"] if place.name == "local" else ["t/ab/x.jpg", "/t/ab/x.jpg"]  # a local name is a path
    for prefix in (place.uri("out"), place.uri("out/"), place.uri("out//")):
        for name in names:
            assert place.store.join(prefix, name) == want, (prefix, name)
    assert place.store.join(place.prefix.rstrip("/"), "x.jpg") == place.uri("x.jpg")


ELSEWHERE = {"local": "/elsewhere/a.jpg", "s3": "s3://other/", "gcs": "gs://other/k2",
             "azure": f"wasbs://other@{AZURITE_ACCOUNT}.blob.core.windows.net/", "pxt": "pxt://other:db/buckets/home/"}


def test_one_store_serves_sixteen_threads_at_once(place, tmp_path):
    assert stores.store_for(place.prefix) is place.store is stores.store_for(ELSEWHERE[place.name])
    n = 16
    barrier = threading.Barrier(n)

    def round_trip(i: int) -> bool:
        src = tmp_path / f"src{i}.jpg"
        src.write_bytes(os.urandom(64 * 1024 + i))
        uri = place.uri(f"threads/{i:02}.jpg")
        barrier.wait(10)  # all threads use the shared store (and its not yet created clients) at once
        place.store.upload(src, uri)
        place.store.download(uri, tmp_path / f"out{i}.jpg")
        return (tmp_path / f"out{i}.jpg").read_bytes() == src.read_bytes() and place.store.exists(uri)

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        assert list(pool.map(round_trip, range(n))) == [True] * n
    assert sorted(place.store.list(place.uri("threads/"))) == [place.uri(f"threads/{i:02}.jpg") for i in range(n)]


# -- listing ----------------------------------------------------------------------------------------------


def test_list_objects_returns_exactly_the_objects_under_the_prefix_in_the_form_given(place):
    t0 = time.time()
    for name, size in {**WATCHED, **SIBLINGS}.items():
        place.put(name, b"x" * size)
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
        assert {place.store.canonical(o.uri) for o in got} == {place.store.canonical(place.uri(n)) for n in WATCHED}

    everything = list(place.store.list_objects(place.prefix))
    assert {o.uri for o in everything} == {place.uri(n) for n in {**WATCHED, **SIBLINGS}}
    deeper = list(place.store.list_objects(place.uri("watch/sub/deeper")))
    assert [(o.uri, o.size) for o in deeper] == [(place.uri("watch/sub/deeper/d.bin"), 4096)]
    if place.name != "local":
        assert list(place.store.list_objects(place.uri("nothing/"))) == []  # an empty prefix: nothing


def test_list_objects_pages_lazily_with_the_page_size_given(place, caplog):
    names = [f"paged/{i:02d}.bin" for i in range(7)]
    for i, name in enumerate(names):
        place.put(name, b"x" * (i + 1))
    place.put("paged2/not-me.bin", b"x")

    caplog.set_level(logging.DEBUG, logger="urllib3.connectionpool")
    it = place.store.list_objects(place.uri("paged/"), page_size=2)
    first = next(it)
    rest = list(it)
    got = [first, *rest]
    if place.name != "gcs":  # gcp-storage-emulator answers in insertion order
        assert [o.uri for o in got] == [place.uri(n) for n in names]  # in order across the pages
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


def test_the_first_object_comes_before_the_later_pages_are_requested(paged_place, caplog):
    place = paged_place
    for i in range(5):
        place.put(f"lazy/{i}.bin", b"x")
    caplog.set_level(logging.DEBUG, logger="urllib3.connectionpool")
    it = place.store.list_objects(place.uri("lazy"), page_size=2)
    assert place.list_requests(caplog) == []  # nothing requested until the iterator is used
    assert next(it).uri == place.uri("lazy/0.bin")
    assert len(place.list_requests(caplog)) == 1
    assert [o.uri for o in it] == [place.uri(f"lazy/{i}.bin") for i in range(1, 5)]
    assert len(place.list_requests(caplog)) == 3


def test_a_bad_page_size_is_refused_at_the_call(place):
    for bad in (0, -1, True, 2.5, "2"):
        with pytest.raises(StoreError) as e:
            place.store.list_objects(place.prefix, page_size=bad)
        assert e.value.kind == "invalid"


# -- presigned URLs ---------------------------------------------------------------------------------------


def _fetch(url: str) -> tuple[bytes, str]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read(), resp.headers["Content-Type"]


def test_a_presigned_url_serves_the_file_or_local_files_say_why_not(place):
    uri = place.put("p/a.jpg", b"served bytes")
    if place.name == "local":
        with pytest.raises(StoreError) as e:
            place.store.presign(uri, 60)
        assert e.value.kind == "local_file" and "Cannot generate presigned URL for local file://" in str(e.value)
        return
    single = place.store.presign(uri, 60)
    many = place.store.presign_many([uri, uri], 60)
    assert len(many) == 2
    for url in (single, *many):
        assert _fetch(url) == (b"served bytes", "image/jpeg")


def _lifetime(place: Place, url: str) -> float:
    """The seconds a presigned URL is valid for, as it says."""
    q = query_params(url)
    if place.name == "s3":
        return int(q["X-Amz-Expires"])
    if place.name == "gcs":
        return int(q["X-Goog-Expires"])
    if place.name == "azure":  # a SAS starts 5 minutes back (clock skew) and ends the lifetime from now
        start, end = (dt.datetime.strptime(q[k], "%Y-%m-%dT%H:%M:%SZ") for k in ("st", "se"))
        return (end - start).total_seconds() - 300
    return int(q["Expires"]) - time.time()  # the control plane's URL: when it expires


def test_presigned_urls_live_from_one_second_to_seven_days(cloud_place):
    place = cloud_place
    uri = place.put("x.jpg", b"seven days")
    for seconds in (1, 90.0, MAX_PRESIGN_SECONDS):
        url = place.store.presign(uri, seconds)
        assert _lifetime(place, url) == pytest.approx(int(seconds), abs=0 if place.name != "pxt" else 5), seconds
    assert _fetch(url)[0] == b"seven days"


def test_a_presign_expiration_outside_one_second_to_seven_days_is_refused(cloud_place):
    for seconds in (0, 0.5, -1, -5, MAX_PRESIGN_SECONDS + 1, float("nan"), float("inf"), True, "60", None):
        with pytest.raises(StoreError, match="expiration_seconds") as e:
            cloud_place.store.presign(cloud_place.uri("k.jpg"), seconds)
        assert e.value.kind == "invalid", seconds


# -- malformed URIs ---------------------------------------------------------------------------------------

_AZURE_FORMS = ("wasbs://container@account.blob.core.windows.net", "abfss://container@account.dfs.core.windows.net",
                "https://account.blob.core.windows.net/container")
#: per provider: a URI of its own, what must be in every refusal, and URIs it refuses
MALFORMED = {
    "s3": ("s3://b/", (), ["s3://", "s3:///key", "s3://UPPER/key", "https://s3.backblazeb2.com/b/k"]),
    "gcs": ("gs://b/", (), ["gs://", "gs:///key", "gs:///", "gs://Upper_Case/key", "gs://-dash/key"]),
    "azure": (f"wasbs://c@{AZURITE_ACCOUNT}.blob.core.windows.net/", _AZURE_FORMS, [
        "wasbs://devstoreaccount1.blob.core.windows.net/dir/a.jpg",        # no container
        "wasbs://@devstoreaccount1.blob.core.windows.net/dir/a.jpg",       # empty container
        "wasbs://photos@.blob.core.windows.net/dir/a.jpg",                 # no account
        "wasbs://photos@/dir/a.jpg",                                       # no host at all
        "wasbs://photos@devstoreaccount1.example.com/dir/a.jpg",           # wrong host suffix
        "wasbs://photos@devstoreaccount1.dfs.core.windows.net/dir/a.jpg",  # wasbs wants the blob host
        "abfss://photos@devstoreaccount1.blob.core.windows.net/dir/a.jpg", # abfss wants the dfs host
        "abfss://devstoreaccount1.dfs.core.windows.net/dir/a.jpg",         # no container
        "https://devstoreaccount1.blob.core.windows.net/",                 # no container
        "https://devstoreaccount1.blob.core.windows.net",                  # no container
        "https://.blob.core.windows.net/photos/a.jpg",                     # no account
        "https://devstoreaccount1.blob.core.windows.org/photos/a.jpg",     # wrong host suffix
        "wasbs://Bad_Container@devstoreaccount1.blob.core.windows.net/a.jpg",  # not a container name
        "s3://photos/a.jpg",                                               # not Azure at all
    ]),
    "pxt": ("pxt://acme:main/buckets/home/", ("expected pxt://<org>:<db>/buckets/home",), [
        "pxt://acme/home/a.jpg", "pxt://acme:main/home/a.jpg", "pxt://acme:main/buckets/",
        "pxt://:main/buckets/home/a.jpg"]),
}


@pytest.mark.parametrize("provider, bad", [(p, bad) for p, (_, _, bads) in MALFORMED.items() for bad in bads])
def test_a_malformed_uri_is_refused_by_every_operation_naming_it(provider, bad, tmp_path):
    own, hints, _ = MALFORMED[provider]
    store = stores.store_for(own)  # refused before any settings or network are needed
    src = tmp_path / "a.jpg"
    src.write_bytes(b"x")
    calls = {
        "download": lambda: store.download(bad, tmp_path / "out.jpg"),
        "upload": lambda: store.upload(src, bad),
        "read_bytes": lambda: store.read_bytes(bad),
        "write_bytes": lambda: store.write_bytes(b"x", bad),
        "exists": lambda: store.exists(bad),
        "delete": lambda: store.delete(bad),
        "list_objects": lambda: store.list_objects(bad),
        "validate_destination": lambda: store.validate_destination(bad),
        "presign": lambda: store.presign(bad, 60),
        "canonical": lambda: store.canonical(bad),
    }
    for name, call in calls.items():
        with pytest.raises(StoreError) as e:
            call()
        assert e.value.kind == "invalid", name
        assert repr(bad) in str(e.value), name
        for hint in hints:
            assert hint in str(e.value), (name, hint)
    assert not (tmp_path / "out.jpg").exists()
