"""Pixeltable Cloud's home bucket (pxt://org:db/buckets/home/), against a stand-in control plane on 127.0.0.1
that issues short-lived keys to a moto bucket behind a gate that checks them (controlplane.py)."""

from __future__ import annotations

import time
import urllib.request
import warnings

import pytest

import pxt_assets as pxt
from pxt_assets import stores
from pxt_assets.functions import net
from pxt_assets.stores.pxt import LegacyURIWarning, PxtStore
from pxt_assets_tests.conftest import make_image, record_intent

HOME = "pxt://acme:main/buckets/home"


@pytest.fixture
def cloud(home_cloud):
    return home_cloud


@pytest.fixture
def sources(tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    return [make_image(folder / f"p{i:03d}.jpg", size=(40 + i % 7, 30), color=(i % 256, 60, 90)) for i in range(6)]


def test_a_computed_column_stores_in_the_home_bucket_under_its_logical_address(pxt_home, instance, cloud, sources):
    t = pxt.MediaTable("home/out", {"img": pxt.Image})
    t.add_computed_column(rot=t.img.rotate(90), destination=f"{HOME}/out/")
    result = t.insert([{"img": str(p)} for p in sources], instance=instance)
    assert result.num_errors == 0
    urls = list(t.select(t.rot.fileurl).collect()["rot_fileurl"])
    assert all(u.startswith(f"{HOME}/out/") for u in urls)  # logical: never the physical bucket
    assert {"out/" + u.split("/out/", 1)[1] for u in urls} == cloud.objects()
    assert [img.size for img in t.select(t.rot).collect()["rot"]] == [(30, 40 + i % 7) for i in range(6)]
    assert not cloud.rejected  # every request carried keys the control plane issued (not AWS_* from the env)
    assert len(cloud.ops("get_bucket_credentials")) == 1  # one session per bucket per process


def test_the_legacy_pxtfs_form_is_accepted_with_a_warning_and_stored_as_pxt(pxt_home, instance, cloud, sources,
                                                                            monkeypatch):
    monkeypatch.setenv("PIXELTABLE_INPUT_MEDIA_DEST", "pxtfs://acme:main/home/in/")
    with pytest.warns(LegacyURIWarning, match="pxtfs:// is deprecated"):
        t = pxt.MediaTable("home/legacy", {"img": pxt.Image})  # the destination is resolved here
    t.insert([{"img": str(sources[0])}], instance=instance)
    url = t.select(t.img.fileurl).collect()["img_fileurl"][0]
    assert url.startswith(f"{HOME}/in/") and "pxtfs" not in url
    assert stores.normalize_uri("pxtfs://acme:main/home/x/a.jpg") == f"{HOME}/x/a.jpg"


def test_without_an_api_key_the_destination_is_refused_when_the_column_is_defined(pxt_home, cloud, monkeypatch):
    monkeypatch.delenv("PIXELTABLE_API_KEY")
    t = pxt.MediaTable("home/nokey", {"img": pxt.Image})
    with pytest.raises(pxt.SpecError) as e:
        t.add_computed_column(rot=t.img.rotate(90), destination=f"{HOME}/out/")
    assert "api_key" in str(e.value) and "PIXELTABLE_API_KEY" in str(e.value) and "'rot'" in str(e.value)
    assert "rot" not in t.spec.columns and not cloud.calls


def test_a_rejected_key_names_where_it_came_from_and_is_never_shown(pxt_home, cloud, monkeypatch):
    monkeypatch.setenv("PIXELTABLE_API_KEY", "wrong-key-SECRET-42")
    t = pxt.MediaTable("home/badkey", {"img": pxt.Image})
    with pytest.raises(pxt.SpecError) as e:
        t.add_computed_column(rot=t.img.rotate(90), destination=f"{HOME}/out/")
    message = str(e.value)
    assert "PIXELTABLE_API_KEY environment variable was rejected" in message and "invalid API key" in message
    assert "wrong-key-SECRET-42" not in message and "wrong-key-SECRET-42" not in repr(e.value)
    assert len(cloud.calls) == 1  # a 401 is not retried


def test_credentials_are_refreshed_before_they_expire(cloud, tmp_path):
    cloud.ttl_seconds = 2
    store = PxtStore()
    src = make_image(tmp_path / "a.jpg")
    store.upload(src, f"{HOME}/r/a.jpg")
    first = next(iter(cloud.issued))
    while not cloud.expired(first):  # the first keys run out (the gate refuses them from now on)
        time.sleep(0.05)
    store.upload(src, f"{HOME}/r/b.jpg")  # botocore asks for new keys first
    assert store.read_bytes(f"{HOME}/r/b.jpg") == src.read_bytes()
    assert len(cloud.ops("get_bucket_credentials")) >= 2 and not cloud.rejected
    assert cloud.objects() == {"r/a.jpg", "r/b.jpg"}


def test_presigned_urls_come_from_the_control_plane_100_keys_a_call(pxt_home, instance, cloud, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    store = PxtStore()
    uris = []
    for i in range(130):
        uri = f"{HOME}/p/{i:03d}.jpg"
        store.write_bytes(f"file {i}".encode(), uri)
        uris.append(uri)
    t = pxt.MediaTable("home/presign", {"name": pxt.String})
    t.insert([{"name": u} for u in uris], instance=instance)
    before = len(cloud.ops("get_presigned_urls"))
    got = t.select(t.name, url=net.presigned_url(t.name, 600)).collect()
    calls = cloud.ops("get_presigned_urls")[before:]
    assert sorted(len(c["keys"]) for c in calls) == [30, 100] and all(c["expires_in"] == 600 for c in calls)
    by_name = dict(zip(got["name"], got["url"]))
    for i in (0, 99, 129):
        with urllib.request.urlopen(by_name[uris[i]], timeout=10) as resp:
            assert resp.read() == f"file {i}".encode()


def test_a_full_store_refuses_writes_but_reads_and_deletes_work(cloud, tmp_path):
    store = PxtStore()
    uri = f"{HOME}/q/a.jpg"
    store.write_bytes(b"kept", uri)
    cloud.no_space_left, cloud.no_space_detail = True, "Your 10 GB of storage are used; upgrade your plan."
    full = PxtStore()  # another process: it learns the quota with its credentials
    with pytest.raises(stores.StoreError) as e:
        full.write_bytes(b"new", f"{HOME}/q/b.jpg")
    assert e.value.kind == "store_full" and f"{HOME}/q/b.jpg" in str(e.value) and "10 GB" in str(e.value)
    assert full.read_bytes(uri) == b"kept"
    full.delete(uri)
    assert not full.exists(uri) and cloud.objects() == set()


@pytest.mark.parametrize("code", ["STORE_FULL", "PLAN_LIMIT", "PAYMENT_REQUIRED"])
def test_user_action_refusals_are_clear_and_not_retried(cloud, code):
    cloud.refuse_code = code
    with pytest.raises(stores.StoreError) as e:
        PxtStore().write_bytes(b"x", f"{HOME}/z/a.jpg")
    assert e.value.kind == "store_full" and code in str(e.value) and "upgrade" in str(e.value)
    assert len(cloud.calls) == 1


def test_dropping_a_table_deletes_its_files_in_the_home_bucket(pxt_home, instance, cloud, sources):
    t = pxt.MediaTable("home/life", {"img": pxt.Image})
    t.add_computed_column(rot=t.img.rotate(90), destination=f"{HOME}/life/")
    t.insert([{"img": str(p)} for p in sources[:3]], instance=instance)
    assert len(cloud.objects()) == 3
    pxt.drop_table("home/life", instance=instance)
    assert cloud.objects() == set()


def test_pxt_uris_are_the_home_bucket_provider_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert stores.provider_of(f"{HOME}/a.jpg") == "pxt"  # malformed ones: test_store_contract.py


def test_a_home_bucket_file_is_a_source(pxt_home, instance, cloud, sources):
    uri = f"{HOME}/src/a.jpg"
    PxtStore().write_bytes(sources[2].read_bytes(), uri)
    t = pxt.MediaTable("home/src", {"img": pxt.Image})
    t.add_computed_column(w=t.img.width)
    assert t.insert([{"img": uri}], instance=instance).num_errors == 0
    assert t.select(t.img.fileurl, t.w).collect().to_dict("records") == [{"img_fileurl": uri, "w": 42}]


def test_gc_and_delete_batch_work_on_the_home_bucket(pxt_home, instance, cloud, sources):
    from pxt_assets import lifecycle

    t = pxt.MediaTable("home/gc", {"img": pxt.Image})
    t.add_computed_column(rot=t.img.rotate(90), destination=f"{HOME}/gc/")
    first = t.insert([{"img": str(p)} for p in sources[:2]], instance=instance)
    t.insert([{"img": str(sources[3])}], instance=instance)
    kept = cloud.objects()
    # a file we wrote that no row names (a run killed after its upload)
    orphan = f"{HOME}/gc/home__gc/rot/00/00/home__gc_rot_20200101T000000000000-dead-000000_0123456789abcdef.jpg"
    record_intent(orphan, f"{HOME}/gc/")
    PxtStore().write_bytes(b"orphan", orphan)
    assert lifecycle.collect_garbage(f"{HOME}/gc/", delete=True, min_age=0) == [orphan]
    assert cloud.objects() == kept
    assert lifecycle.delete_batch(t, first.batch, instance=instance) == 2
    assert len(cloud.objects()) == 1


def test_the_api_key_and_the_temporary_keys_are_never_printed_or_stored(pxt_home, instance, cloud, sources, tmp_path,
                                                                        capfd, caplog):
    import logging

    t = pxt.MediaTable("home/quiet", {"img": pxt.Image})
    t.add_computed_column(rot=t.img.rotate(90), destination=f"{HOME}/quiet/")
    with caplog.at_level(logging.DEBUG):
        t.insert([{"img": str(p)} for p in sources[:2]], instance=instance)
        cloud.refuse_code = "STORE_FULL"  # then every control-plane answer is a refusal: errors are shown
        full = PxtStore()
        with pytest.raises(stores.StoreError) as e:
            full.write_bytes(b"x", f"{HOME}/quiet/x.jpg")
        print(repr(e.value), t, full)
    secrets = [cloud.api_key, "pxt-secret-1", "pxt-token-1"]
    out, err = capfd.readouterr()
    shown = out + err + caplog.text + "".join(repr(r.__dict__) for r in caplog.records)
    for secret in secrets:
        assert secret not in shown
    for path in [p for p in tmp_path.rglob("*") if p.is_file()]:
        data = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in data, (secret, path)
