"""GcsStore against a real GCS emulator (gcp-storage-emulator on 127.0.0.1): no mocks.

The emulator does not check signatures, so presigned URLs are checked twice: cryptographically here (the
signature is rebuilt from the URL per the GCS V4 spec and verified with the service account's public key),
and by fetching them from the emulator (which proves the URL addresses the object).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import pathlib
import threading
import time
import urllib.parse
import urllib.request

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from pxt_assets.stores import StoreError, store_for
from pxt_assets.stores.gcs import GcsStore
from pxt_assets_tests.conftest import unique_bucket

SEVEN_DAYS = 7 * 24 * 3600


@pytest.fixture
def store(gcs_env) -> GcsStore:
    """A fresh store (its own client cache) talking to the emulator."""
    return GcsStore()


@pytest.fixture
def bucket(gcs_server) -> str:
    name = unique_bucket("gcs")
    gcs_server.client().create_bucket(name)
    return name


def random_file(path: pathlib.Path, size: int) -> pathlib.Path:
    path.write_bytes(os.urandom(size))
    return path


class SigningKey:
    """A generated RSA key written as a service-account JSON key file."""

    def __init__(self, folder: pathlib.Path, name: str = "signer") -> None:
        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.email = f"{name}@test.iam.gserviceaccount.com"
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        self.path = folder / f"{name}-key.json"
        self.path.write_text(json.dumps({
            "type": "service_account",
            "project_id": "test",
            "private_key_id": hashlib.sha1(pem.encode()).hexdigest(),
            "private_key": pem,
            "client_email": self.email,
            "client_id": "1234567890",
            "token_uri": "https://oauth2.googleapis.com/token",
        }))

    def verifies(self, signature: bytes, message: bytes) -> bool:
        try:
            self.private_key.public_key().verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return False
        return True


@pytest.fixture
def signing_key(tmp_path, monkeypatch) -> SigningKey:
    key = SigningKey(tmp_path)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key.path))
    return key


def query_of(url: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query, keep_blank_values=True))


def string_to_sign(url: str) -> bytes:
    """The V4 string-to-sign rebuilt from a signed GET URL, following the GCS spec (not the SDK's code).

    https://cloud.google.com/storage/docs/authentication/canonical-requests and .../signatures
    """
    parts = urllib.parse.urlsplit(url)
    params = query_of(url)
    params.pop("X-Goog-Signature")

    def enc(s: str) -> str:  # RFC 3986: only unreserved characters stay as they are
        return urllib.parse.quote(s, safe="-._~")

    canonical_query = "&".join(f"{enc(k)}={enc(v)}" for k, v in sorted(params.items()))
    canonical_request = "\n".join([
        "GET",
        parts.path,  # already percent-encoded in the URL, as the canonical request wants it
        canonical_query,
        f"host:{parts.netloc}\n",  # each canonical header ends in a newline
        params["X-Goog-SignedHeaders"],
        "UNSIGNED-PAYLOAD",
    ])
    scope = params["X-Goog-Credential"].split("/", 1)[1]
    return "\n".join([
        params["X-Goog-Algorithm"],
        params["X-Goog-Date"],
        scope,
        hashlib.sha256(canonical_request.encode()).hexdigest(),
    ]).encode()


# -- data ------------------------------------------------------------------------------------------------


def test_upload_then_download_round_trips_bytes_and_sets_content_type(store, bucket, gcs_server, tmp_path):
    big = random_file(tmp_path / "photo.jpg", 3 * 1024 * 1024 + 17)
    small = random_file(tmp_path / "icon.png", 1000)
    store.upload(big, f"gs://{bucket}/in/photo.jpg")
    store.upload(small, f"gs://{bucket}/in/icon.png")
    store.upload(small, f"gs://{bucket}/in/notes.bin", content_type="text/plain")

    store.download(f"gs://{bucket}/in/photo.jpg", tmp_path / "photo.out")
    store.download(f"gs://{bucket}/in/icon.png", tmp_path / "icon.out")
    assert (tmp_path / "photo.out").read_bytes() == big.read_bytes()
    assert (tmp_path / "icon.out").read_bytes() == small.read_bytes()

    stored = gcs_server.client().bucket(bucket)
    assert stored.get_blob("in/photo.jpg").content_type == "image/jpeg"
    assert stored.get_blob("in/icon.png").content_type == "image/png"
    assert stored.get_blob("in/notes.bin").content_type == "text/plain"


def test_upload_replaces_an_existing_object(store, bucket, tmp_path):
    uri = f"gs://{bucket}/again.jpg"
    store.upload(random_file(tmp_path / "a.jpg", 100), uri)
    second = random_file(tmp_path / "b.jpg", 200)
    store.upload(second, uri)
    store.download(uri, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == second.read_bytes()


def test_exists_and_delete_follow_the_object(store, bucket, tmp_path):
    uri = f"gs://{bucket}/a/x.jpg"
    assert not store.exists(uri)
    store.upload(random_file(tmp_path / "x.jpg", 10), uri)
    assert store.exists(uri)
    store.delete(uri)
    assert not store.exists(uri)
    store.delete(uri)  # deleting what is already gone is fine
    assert not store.exists(f"gs://{unique_bucket('missing')}/x.jpg")


def test_list_returns_exactly_the_objects_under_the_prefix(store, bucket, tmp_path):
    src = random_file(tmp_path / "f.jpg", 10)
    for key in ("a/x.jpg", "a/sub/y.png", "a2/z.jpg", "ab.jpg", "top.jpg"):
        store.upload(src, f"gs://{bucket}/{key}")

    expected = {f"gs://{bucket}/a/x.jpg", f"gs://{bucket}/a/sub/y.png"}
    assert set(store.list(f"gs://{bucket}/a/")) == expected
    assert set(store.list(f"gs://{bucket}/a")) == expected  # a prefix is a folder: no a2/ or ab.jpg
    assert len(set(store.list(f"gs://{bucket}/"))) == 5
    assert list(store.list(f"gs://{bucket}/nothing/")) == []


def test_list_of_a_missing_bucket_is_not_found(store):
    with pytest.raises(StoreError) as e:
        list(store.list(f"gs://{unique_bucket('missing')}/a/"))
    assert e.value.kind == "not_found"


def test_download_of_a_missing_object_is_not_found_and_leaves_no_file(store, bucket, tmp_path):
    uri = f"gs://{bucket}/nope.jpg"
    with pytest.raises(StoreError) as e:
        store.download(uri, tmp_path / "out.jpg")
    assert e.value.kind == "not_found"
    assert uri in str(e.value)
    assert not (tmp_path / "out.jpg").exists()


def test_validate_destination_accepts_an_existing_bucket_and_writes_nothing(store, bucket, gcs_server):
    store.validate_destination(f"gs://{bucket}/media/")
    store.validate_destination(f"gs://{bucket}")
    assert list(gcs_server.client().list_blobs(bucket)) == []


def test_validate_destination_names_a_missing_bucket(store):
    name = unique_bucket("missing")
    with pytest.raises(StoreError) as e:
        store.validate_destination(f"gs://{name}/media/")
    assert e.value.kind == "not_found"
    assert str(e.value) == f"Bucket '{name}' not found"


@pytest.mark.parametrize("uri", ["gs://", "gs:///key", "gs:///", "gs://Upper_Case/key", "gs://-dash/key"])
def test_malformed_uris_are_invalid_and_named(store, uri, tmp_path):
    calls = [
        lambda: store.download(uri, tmp_path / "out"),
        lambda: store.upload(random_file(tmp_path / "f.jpg", 1), uri),
        lambda: store.exists(uri),
        lambda: store.delete(uri),
        lambda: list(store.list(uri)),
        lambda: store.validate_destination(uri),
        lambda: store.presign(uri, 60),
        lambda: store.join(uri, "x.jpg"),
    ]
    for call in calls:
        with pytest.raises(StoreError) as e:
            call()
        assert e.value.kind == "invalid"
        assert repr(uri) in str(e.value)


def test_a_prefix_is_not_an_object(store, bucket, tmp_path):
    with pytest.raises(StoreError) as e:
        store.download(f"gs://{bucket}/folder/", tmp_path / "out")
    assert e.value.kind == "invalid"


def test_sixteen_threads_share_one_store(store, bucket, tmp_path):
    n = 16
    start = threading.Barrier(n)

    def round_trip(i: int) -> bool:
        src = random_file(tmp_path / f"src{i}.jpg", 64 * 1024 + i)
        uri = f"gs://{bucket}/threads/{i}.jpg"
        start.wait()  # all threads create/use the shared client at the same moment
        store.upload(src, uri)
        store.download(uri, tmp_path / f"out{i}.jpg")
        return (tmp_path / f"out{i}.jpg").read_bytes() == src.read_bytes()

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        results = list(pool.map(round_trip, range(n)))
    assert results == [True] * n
    assert len(list(store.list(f"gs://{bucket}/threads/"))) == n
    assert store.client() is store.client()


def test_join_puts_exactly_one_slash(store):
    assert store.join("gs://b-1/out/", "x.jpg") == "gs://b-1/out/x.jpg"
    assert store.join("gs://b-1/out", "/x.jpg") == "gs://b-1/out/x.jpg"
    assert store.join("gs://b-1/", "x.jpg") == "gs://b-1/x.jpg"
    assert store.join("gs://b-1", "x.jpg") == "gs://b-1/x.jpg"


def test_store_for_gs_uri_is_one_shared_gcs_store():
    first = store_for("gs://b/k")
    assert isinstance(first, GcsStore)
    assert store_for("gs://other/k2") is first


# -- presigned URLs --------------------------------------------------------------------------------------


def test_presigned_url_is_a_v4_signature_by_the_service_account_key(store, signing_key, bucket, tmp_path):
    key = "photos/a b+c.jpg"  # characters that must be percent-encoded in the signed path
    store.upload(random_file(tmp_path / "p.jpg", 100), f"gs://{bucket}/{key}")
    url = store.presign(f"gs://{bucket}/{key}", 3600)

    parts = urllib.parse.urlsplit(url)
    assert parts.path == f"/{bucket}/photos/a%20b%2Bc.jpg"
    q = query_of(url)
    assert q["X-Goog-Algorithm"] == "GOOG4-RSA-SHA256"
    assert q["X-Goog-Expires"] == "3600"
    assert q["X-Goog-Credential"].startswith(signing_key.email + "/")
    assert q["X-Goog-Credential"].endswith("/auto/storage/goog4_request")
    assert q["X-Goog-Credential"].split("/")[1] == q["X-Goog-Date"][:8]
    assert q["X-Goog-SignedHeaders"] == "host"
    signature = q["X-Goog-Signature"]
    assert len(signature) == 512 and all(c in "0123456789abcdef" for c in signature)

    assert signing_key.verifies(bytes.fromhex(signature), string_to_sign(url))
    assert not SigningKey(tmp_path, "other").verifies(bytes.fromhex(signature), string_to_sign(url))


def test_presigned_url_fetches_the_object_from_the_emulator(store, signing_key, bucket, tmp_path):
    src = random_file(tmp_path / "cat.jpg", 200_000)
    uri = f"gs://{bucket}/cat.jpg"
    # With the key in GOOGLE_APPLICATION_CREDENTIALS, the data client must stay anonymous: given the fake
    # key it would try to fetch an OAuth token and hang for minutes.
    started = time.monotonic()
    store.upload(src, uri)
    assert time.monotonic() - started < 10
    url = store.presign(uri, 300)
    # The emulator serves the object at the signed URL's path but does not check the signature.
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.read() == src.read_bytes()


def test_presigning_twice_in_a_second_with_one_key_gives_one_signature(store, signing_key, tmp_path,
                                                                         monkeypatch):
    uri = "gs://some-bucket/x.jpg"
    for _ in range(5):  # X-Goog-Date has one-second resolution: retry if we straddled a second
        a, b = store.presign(uri, 60), store.presign(uri, 60)
        if query_of(a)["X-Goog-Date"] == query_of(b)["X-Goog-Date"]:
            break
    assert a == b

    other = SigningKey(tmp_path, "other")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(other.path))
    c = store.presign(uri, 60)
    assert query_of(c)["X-Goog-Credential"].startswith(other.email + "/")
    assert other.verifies(bytes.fromhex(query_of(c)["X-Goog-Signature"]), string_to_sign(c))


@pytest.mark.parametrize("emulator", ["http://127.0.0.1:9", "127.0.0.1:9"])
def test_presigning_makes_no_request(signing_key, monkeypatch, emulator):
    # Nothing listens on port 9: any request would fail or be retried for minutes.
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator)
    store = GcsStore()
    started = time.monotonic()
    url = store.presign("gs://no-such-bucket/k.jpg", 60)
    assert time.monotonic() - started < 2
    assert url.startswith("http://127.0.0.1:9/no-such-bucket/k.jpg?")


@pytest.mark.parametrize(
    "seconds", [0, 0.5, -1, SEVEN_DAYS + 1, float("nan"), float("inf"), True, "60", None]
)
def test_presign_rejects_an_expiration_outside_one_second_to_seven_days(store, signing_key, seconds):
    with pytest.raises(StoreError) as e:
        store.presign("gs://b-1/x.jpg", seconds)
    assert e.value.kind == "invalid"


@pytest.mark.parametrize("seconds", [1, SEVEN_DAYS, 90.0])
def test_presign_accepts_one_second_to_seven_days(store, signing_key, seconds):
    url = store.presign("gs://b-1/x.jpg", seconds)
    assert query_of(url)["X-Goog-Expires"] == str(int(seconds))


@pytest.fixture
def no_google_credentials(tmp_path, monkeypatch):
    """An environment where google.auth.default() finds nothing and contacts no metadata server."""
    gcloud = tmp_path / "gcloud"
    gcloud.mkdir()
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(gcloud))
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")


def test_presign_without_any_credentials_says_to_set_a_service_account_key(store, no_google_credentials):
    with pytest.raises(StoreError) as e:
        store.presign("gs://b-1/x.jpg", 60)
    assert e.value.kind == "no_signing_credentials"
    assert "GOOGLE_APPLICATION_CREDENTIALS" in str(e.value) and "service-account" in str(e.value)
    assert "gs://b-1/x.jpg" in str(e.value)


def test_presign_with_an_unusable_key_file_names_it(store, no_google_credentials, tmp_path, monkeypatch):
    missing = tmp_path / "nowhere.json"
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(missing))
    with pytest.raises(StoreError) as e:
        store.presign("gs://b-1/x.jpg", 60)
    assert e.value.kind == "no_signing_credentials"
    assert str(missing) in str(e.value)

    user = tmp_path / "user.json"  # what `gcloud auth application-default login` writes: cannot sign
    user.write_text(json.dumps({"type": "authorized_user", "client_id": "x", "client_secret": "y",
                                "refresh_token": "z"}))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(user))
    with pytest.raises(StoreError) as e:
        store.presign("gs://b-1/x.jpg", 60)
    assert e.value.kind == "no_signing_credentials"
    assert "not a service-account key" in str(e.value)
