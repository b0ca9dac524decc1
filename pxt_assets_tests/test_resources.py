"""Dagster resources handed to pxt.definitions are the stores' clients: S3Resource (endpoint, credentials,
region, EnvVar secrets), GCSResource (project), AzureBlobStorageResource (account URL, credential). Each
resource here points at a proxy in front of the emulator while the environment points at the emulator
itself, so the proxy's counters show which one the stores used."""

from __future__ import annotations

import urllib.request

import dagster as dg
import pytest

import pxt_assets as pxt
from pxt_assets import stores
from pxt_assets.functions import net
from pxt_assets.stores import resources as store_resources
from pxt_assets_tests.conftest import unique_bucket
from pxt_assets_tests.emulators import AZURITE_ACCOUNT
from pxt_assets_tests.faultproxy import FaultProxy


@pytest.fixture(autouse=True)
def _forget_resources():
    yield
    store_resources.reset()


def test_an_s3_resource_is_the_client_of_every_step_and_presign(pxt_home, instance, s3_env, images, monkeypatch):
    from dagster_aws.s3 import S3Resource

    bucket = unique_bucket("res")
    s3_env.client().create_bucket(Bucket=bucket)
    proxy = FaultProxy("127.0.0.1", s3_env.port)
    monkeypatch.setenv("RES_SECRET", "testing")
    try:
        t = pxt.MediaTable("res/s3", {"img": pxt.Image})
        t.add_computed_column(rot=t.img.rotate(90), destination=f"s3://{bucket}/out/")
        pxt.definitions(t, resources={"s3": S3Resource(endpoint_url=proxy.endpoint, region_name="us-east-1",
                                                       aws_access_key_id="testing",
                                                       aws_secret_access_key=dg.EnvVar("RES_SECRET"))})
        result = t.insert([{"img": str(p)} for p in images], instance=instance)
        assert result.num_errors == 0
        assert proxy.count("PUT") == 3  # the uploads went through the resource's endpoint
        url = t.select(u=net.presigned_url(t.rot.fileurl, 60)).collect()["u"][0]
        assert url.startswith(proxy.endpoint)  # signed for the resource's endpoint
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert resp.read()[:2] == b"\xff\xd8"
    finally:
        proxy.close()


def test_a_gcs_resource_is_the_client(pxt_home, gcs_env):
    from dagster_gcp import GCSResource

    pxt.definitions(resources={"gcs": GCSResource(project="res-project")})
    store = stores.store_for("gs://b/")
    assert store.client().project == "res-project"
    gcs_env.client().create_bucket(bucket := unique_bucket("gres"))
    store.write_bytes(b"via the resource", f"gs://{bucket}/a.txt")
    assert store.read_bytes(f"gs://{bucket}/a.txt") == b"via the resource"


def test_an_azure_resource_is_the_client(pxt_home, azure_env, monkeypatch):
    from dagster_azure.blob import AzureBlobStorageKeyCredential, AzureBlobStorageResource

    from pxt_assets_tests.emulators import AZURITE_KEY

    container = unique_bucket("ares")
    azure_env.client().create_container(container)
    proxy = FaultProxy("127.0.0.1", azure_env.port)
    monkeypatch.setenv("RES_AZURE_KEY", AZURITE_KEY)
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT_KEY")  # only the resource has the key
    try:
        pxt.definitions(resources={"azure_blob": AzureBlobStorageResource(
            account_url=f"{proxy.endpoint}/{AZURITE_ACCOUNT}",
            credential=AzureBlobStorageKeyCredential(key=dg.EnvVar("RES_AZURE_KEY")))})
        uri = f"wasbs://{container}@{AZURITE_ACCOUNT}.blob.core.windows.net/dir/a.txt"
        store = stores.store_for(uri)
        store.write_bytes(b"via the resource", uri)
        assert store.read_bytes(uri) == b"via the resource"
        assert proxy.count("PUT") == 1 and proxy.count("GET") >= 1
        with urllib.request.urlopen(store.presign(uri, 60), timeout=10) as resp:  # the key signs a SAS
            assert resp.read() == b"via the resource"
    finally:
        proxy.close()


def test_without_resources_the_environment_is_used(pxt_home, s3_env):
    store_resources.reset()
    pxt.definitions()
    assert store_resources.get("s3") is None
    bucket = unique_bucket("nores")
    s3_env.client().create_bucket(Bucket=bucket)
    stores.store_for("s3://x/").write_bytes(b"x", f"s3://{bucket}/a")
    assert s3_env.client().get_object(Bucket=bucket, Key="a")["Body"].read() == b"x"
