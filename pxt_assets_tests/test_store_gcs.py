"""GcsStore against a real GCS emulator (gcp-storage-emulator on 127.0.0.1): no mocks.

The emulator does not check signatures, so presigned URLs are checked twice: cryptographically here (the
signature is rebuilt from the URL per the GCS V4 spec and verified with the service account's public key),
and by fetching them from the emulator (which proves the URL addresses the object; test_store_contract.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import time
import urllib.parse

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from pxt_assets.stores import StoreError
from pxt_assets.stores.gcs import GcsStore
from pxt_assets_tests.conftest import unique_bucket


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
# Reading, writing, listing and refusing malformed URIs are the store contract (test_store_contract.py).


@pytest.mark.parametrize("uri", ["gs://", "gs:///key", "gs://Upper_Case/key"])
def test_join_refuses_a_malformed_uri_naming_it(store, uri):
    with pytest.raises(StoreError) as e:
        store.join(uri, "x.jpg")  # unlike the other stores, GCS checks a prefix before joining a name to it
    assert e.value.kind == "invalid" and repr(uri) in str(e.value)


def test_with_a_signing_key_the_data_client_stays_anonymous(store, signing_key, bucket, tmp_path):
    src = random_file(tmp_path / "cat.jpg", 200_000)
    uri = f"gs://{bucket}/cat.jpg"
    # With the key in GOOGLE_APPLICATION_CREDENTIALS, the data client must stay anonymous: given the fake
    # key it would try to fetch an OAuth token and hang for minutes.
    started = time.monotonic()
    store.upload(src, uri)
    store.download(uri, tmp_path / "back.jpg")
    assert time.monotonic() - started < 10
    assert (tmp_path / "back.jpg").read_bytes() == src.read_bytes()
    assert store.client() is store.client()  # one client, made once


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
