"""The S3 family (S3, R2, B2, Tigris) against moto's S3 server on 127.0.0.1."""

from __future__ import annotations

import collections
import itertools
import time
import urllib.parse
import urllib.request

import pytest

from pxt_assets import stores
from pxt_assets.stores.s3 import S3Store, parse
from pxt_assets_tests.conftest import query_params, random_file, unique_bucket


@pytest.fixture
def bucket(s3_env):
    name = unique_bucket()
    s3_env.client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def profiles(tmp_path, monkeypatch, s3_env):
    """R2, B2 and Tigris profiles whose endpoint_url reaches moto, as a user would point them at a proxy."""
    config = tmp_path / "aws_config"
    config.write_text("".join(
        f"[profile {p}]\nendpoint_url = {s3_env.endpoint}\naws_access_key_id = k_{p}\naws_secret_access_key = s\n\n"
        for p in ("r2test", "b2test", "tigristest")
    ))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("PIXELTABLE_R2_PROFILE", "r2test")
    monkeypatch.setenv("PIXELTABLE_B2_PROFILE", "b2test")
    monkeypatch.setenv("PIXELTABLE_TIGRIS_PROFILE", "tigristest")
    # profile credentials must be the ones used, not the environment's
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    return s3_env




def test_s3_presigned_url_is_sigv4_and_fetches_therandom_file(s3_env, bucket, tmp_path):
    store = stores.store_for(f"s3://{bucket}/")
    src = random_file(tmp_path, "p.jpg", 20_000)
    store.upload(src, f"s3://{bucket}/pre/p.jpg")
    url = store.presign(f"s3://{bucket}/pre/p.jpg", 3600)
    q = query_params(url)
    assert q["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert q["X-Amz-Expires"] == "3600"
    key_id, date, region, service, term = q["X-Amz-Credential"].split("/")
    assert (key_id, region, service, term) == ("testing", "us-east-1", "s3", "aws4_request")
    assert date == time.strftime("%Y%m%d", time.gmtime())
    assert q["X-Amz-SignedHeaders"] == "host" and len(q["X-Amz-Signature"]) == 64
    # moto does not check signatures: fetching proves the URL addresses the object
    with urllib.request.urlopen(url) as resp:
        assert resp.read() == src.read_bytes() and resp.headers["Content-Type"] == "image/jpeg"


def test_presigning_makes_no_network_call_per_url(monkeypatch, s3_env):
    from pxt_assets_tests.faultproxy import FaultProxy

    proxy = FaultProxy("127.0.0.1", s3_env.port)  # counts what reaches the endpoint
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
    try:
        store = S3Store()
        urls = [store.presign(f"s3://bucket-{i % 3}/k{i}.jpg", 60) for i in range(500)]
        assert len(set(urls)) == 500
        assert proxy.forwarded == [f"HEAD /bucket-{i}" for i in range(3)]  # one region lookup per bucket
    finally:
        proxy.close()


FLAVORS = {
    "r2": ("https://abc123.r2.cloudflarestorage.com", "auto", "k_r2test"),
    "b2": ("https://s3.us-west-004.backblazeb2.com", "us-west-004", "k_b2test"),
    "tigris_fly": ("https://fly.storage.tigris.dev", "auto", "k_tigristest"),
    "tigris_t3": ("https://t3.storage.dev", "auto", "k_tigristest"),
}


@pytest.mark.parametrize("flavor", sorted(FLAVORS))
def test_s3_compatible_https_forms_use_their_profile(profiles, bucket, tmp_path, flavor):
    host, region, key_id = FLAVORS[flavor]
    uri = f"{host}/{bucket}/media/x.jpg"
    assert stores.provider_of(uri) == "s3"
    store = stores.store_for(uri)
    store.validate_destination(f"{host}/{bucket}/media/")
    src = random_file(tmp_path, "x.jpg", 5000)
    store.upload(src, uri)
    assert profiles.client().get_object(Bucket=bucket, Key="media/x.jpg")["Body"].read() == src.read_bytes()
    assert list(store.list(f"{host}/{bucket}/media/")) == [uri]  # listed in the form given
    url = store.presign(uri, 600)
    q = query_params(url)
    assert q["X-Amz-Credential"].split("/")[0] == key_id  # the profile's credentials signed it
    assert q["X-Amz-Credential"].split("/")[2] == region
    with urllib.request.urlopen(url) as resp:
        assert resp.read() == src.read_bytes()


def test_r2_without_endpoint_override_signs_for_its_own_host(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "r2key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "r2secret")
    for var in ("PIXELTABLE_R2_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    url = S3Store().presign("https://acct9.r2.cloudflarestorage.com/media/a/b.jpg", 120)
    parsed = urllib.parse.urlparse(url)
    assert parsed.hostname in ("acct9.r2.cloudflarestorage.com", "media.acct9.r2.cloudflarestorage.com")
    assert query_params(url)["X-Amz-Credential"].split("/")[2] == "auto"


def test_unknown_profile_is_a_clear_error(monkeypatch, s3_env, tmp_path):
    monkeypatch.setenv("PIXELTABLE_B2_PROFILE", "no-such-profile")
    with pytest.raises(stores.StoreError, match="no-such-profile"):
        S3Store().validate_destination("https://s3.us-east-005.backblazeb2.com/b2bucket/x/")


def test_requests_are_counted_at_the_client(s3_env, bucket, tmp_path):
    store = S3Store()
    loc = parse(f"s3://{bucket}/c.jpg")
    calls: collections.Counter[str] = collections.Counter()
    store.clients_for(loc).data.meta.events.register("before-send.s3", lambda **kw: calls.update([kw["request"].method]))
    store.upload(random_file(tmp_path, "c.jpg", 100), f"s3://{bucket}/c.jpg")
    store.download(f"s3://{bucket}/c.jpg", tmp_path / "c2.jpg")
    assert calls == {"PUT": 1, "GET": 1}  # no region look-ups, no HEAD before GET


@pytest.mark.parametrize("token", [None, "session-token/with+chars="])
def test_fast_presigner_signs_exactly_as_botocore(s3_env, bucket, monkeypatch, token):
    import datetime

    import botocore.auth

    if token:
        monkeypatch.setenv("AWS_SESSION_TOKEN", token)
    fixed = datetime.datetime(2026, 11, 22, 21, 15, 52)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: fixed)
    store = S3Store()
    keys = ["dir/a.jpg", "with space/and+plus/ü-ñ.png", "tilde~/x=y&z.jpg", "deep/" * 5 + "f.jpg"]
    # alternating expiries within one second: the per-second query memo must not leak from one to the other
    for key, expires in itertools.product(keys, (900, 60)):
        uri = f"s3://{bucket}/{key}"
        loc = parse(uri)
        clients = store.clients_for(loc)
        reference = clients.presign.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key},
                                                            ExpiresIn=expires)
        store.presign(uri, expires)  # learns the bucket's signer
        ours = clients.signers[bucket].sign(key, expires, now=fixed.replace(tzinfo=datetime.timezone.utc))
        ref, got = urllib.parse.urlsplit(reference), urllib.parse.urlsplit(ours)
        assert (got.scheme, got.netloc, got.path) == (ref.scheme, ref.netloc, ref.path)
        assert query_params(ours) == query_params(reference)  # same signature, same parameters


def test_presigned_urls_are_signed_for_the_buckets_own_region_looked_up_once(s3_env, pxt_home, monkeypatch):
    from pxt_assets import stores
    from pxt_assets_tests.conftest import unique_bucket

    s3 = s3_env.client()
    home_bucket, far_bucket = unique_bucket("home"), unique_bucket("far")
    s3.create_bucket(Bucket=home_bucket)
    s3.create_bucket(Bucket=far_bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    for b in (home_bucket, far_bucket):
        s3.put_object(Bucket=b, Key="a.txt", Body=b"hello")
    store = stores.store_for(f"s3://{far_bucket}/a.txt")
    from pxt_assets.stores.s3 import parse

    clients = store.clients_for(parse(f"s3://{far_bucket}/a.txt"))
    lookups: list[str] = []
    regional = type(clients)._regional
    monkeypatch.setattr(type(clients), "_regional", lambda self, b: lookups.append(b) or regional(self, b))
    far = [store.presign(f"s3://{far_bucket}/k{i}.txt", 600) for i in range(50)]
    home = store.presign(f"s3://{home_bucket}/a.txt", 600)
    assert all("%2Feu-west-1%2Fs3%2Faws4_request" in u for u in far)  # X-Amz-Credential scope: the bucket's region
    assert "%2Fus-east-1%2Fs3%2Faws4_request" in home
    assert sorted(lookups) == sorted([far_bucket, home_bucket])  # once per bucket, not per URL
    import urllib.request

    with urllib.request.urlopen(store.presign(f"s3://{far_bucket}/a.txt", 600)) as resp:
        assert resp.read() == b"hello"
