"""Azure Blob Storage (wasbs://, abfss://, https://<account>.blob.core.windows.net) against Azurite."""

from __future__ import annotations

import base64
import collections
import functools
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from pxt_assets import stores
from pxt_assets.stores.azure import AzureStore
from pxt_assets_tests.conftest import query_params, random_file, unique_bucket
from pxt_assets_tests.faultproxy import FaultProxy
from pxt_assets_tests.emulators import AZURITE_ACCOUNT

# Each form, as a user writes it, for container `c` and blob name `key` (Azurite's account in the host).
FORMS = {
    "wasbs": lambda c, key: f"wasbs://{c}@{AZURITE_ACCOUNT}.blob.core.windows.net/{key}",
    "abfss": lambda c, key: f"abfss://{c}@{AZURITE_ACCOUNT}.dfs.core.windows.net/{key}",
    "https": lambda c, key: f"https://{AZURITE_ACCOUNT}.blob.core.windows.net/{c}/{key}",
}
LEGACY_FORMS = {
    "wasb": lambda c, key: f"wasb://{c}@{AZURITE_ACCOUNT}.blob.core.windows.net/{key}",
    "abfs": lambda c, key: f"abfs://{c}@{AZURITE_ACCOUNT}.dfs.core.windows.net/{key}",
}
ALL_FORMS = {**FORMS, **LEGACY_FORMS}


@pytest.fixture
def azure(pxt_home, azure_env):
    """Azurite, with the AZURE_STORAGE_ACCOUNT_* variables pointing at it and no config file in the way."""
    return azure_env


@pytest.fixture
def container(azure):
    name = unique_bucket("az")
    azure.client().create_container(name)
    return name


@pytest.fixture
def store(azure):
    s = AzureStore()
    yield s
    s.close()




def _fetch(url: str, method: str = "GET", data: bytes | None = None, headers: dict | None = None):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.read(), resp.headers


def _http_status(url: str, **kwargs) -> int:
    try:
        _fetch(url, **kwargs)
    except urllib.error.HTTPError as e:
        return e.code
    return 200


# -- routing and parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ALL_FORMS)
def test_every_azure_form_is_routed_to_the_azure_store(form):
    assert isinstance(stores.store_for(ALL_FORMS[form]("photos", "dir/a.jpg")), AzureStore)


# -- reading and writing --------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ALL_FORMS)
def test_each_form_reads_writes_lists_and_validates_the_same_blobs(form, azure, container, store, tmp_path):
    """The store contract (test_store_contract.py) runs on wasbs:// URIs; here every form does the same."""
    at = functools.partial(ALL_FORMS[form], container)
    blobs = azure.client().get_container_client(container)
    src = random_file(tmp_path, "a.jpg", 1000)
    store.upload(src, at("dir/a.jpg"))
    assert blobs.get_blob_client("dir/a.jpg").get_blob_properties().content_settings.content_type == "image/jpeg"
    for other in FORMS.values():  # one blob, whichever form names it
        store.download(other(container, "dir/a.jpg"), tmp_path / "back.jpg")
        assert (tmp_path / "back.jpg").read_bytes() == src.read_bytes()
    for key in ("dir/sub/b.png", "dirx/c.jpg", "other/d.jpg"):
        store.upload(src, at(key))

    want = [at("dir/a.jpg"), at("dir/sub/b.png")]
    assert sorted(store.list(at("dir/"))) == want  # listed in the form given
    assert sorted(store.list(at("dir"))) == want  # a prefix is a folder, not "dir*"
    assert len(list(store.list(at("")))) == 4
    assert store.exists(at("dir/a.jpg")) and not store.exists(at("dir/missing.jpg"))
    for prefix in (at("out"), at("out/"), at("out//")):
        assert store.join(prefix, "t/ab/x.jpg") == store.join(prefix, "/t/ab/x.jpg") == at("out/t/ab/x.jpg")

    with pytest.raises(stores.StoreError) as e:
        store.download(at("dir/"), tmp_path / "out.jpg")
    assert e.value.kind == "invalid"  # a container or folder URI is not a blob
    with pytest.raises(stores.StoreError) as e:
        store.download(at("dir/missing.jpg"), tmp_path / "out.jpg")
    assert e.value.kind == "not_found" and at("dir/missing.jpg") in str(e.value)
    no_container = functools.partial(ALL_FORMS[form], "no-such-container")
    with pytest.raises(stores.StoreError) as e:
        store.download(no_container("a.jpg"), tmp_path / "out.jpg")
    assert e.value.kind == "not_found" and "'no-such-container'" in str(e.value)
    assert not (tmp_path / "out.jpg").exists()
    assert not store.exists(no_container("a.jpg"))
    with pytest.raises(stores.StoreError) as e:
        list(store.list(no_container("")))
    assert e.value.kind == "not_found"

    store.validate_destination(at("out/"))
    store.validate_destination(at(""))
    with pytest.raises(stores.StoreError) as e:
        store.validate_destination(no_container("out/"))
    assert str(e.value) == f"Container 'no-such-container' not found in account '{AZURITE_ACCOUNT}'"

    store.delete(at("dir/a.jpg"))
    assert not store.exists(at("dir/a.jpg"))
    store.delete(at("dir/a.jpg"))  # already gone: fine
    assert sorted(store.list(at("dir/"))) == want[1:]
    assert len(list(blobs.list_blobs())) == 3  # validating wrote nothing


def test_percent_encoded_names_round_trip_through_list(container, store, tmp_path):
    uri = FORMS["https"](container, "my%20dir/100%25%20sure.jpg")
    store.upload(random_file(tmp_path, "a.jpg", 10), uri)
    assert list(store.list(FORMS["https"](container, "my%20dir/"))) == [uri]
    assert store.exists(uri)


def test_a_wrong_account_key_is_access_denied(monkeypatch, container, store, tmp_path):
    store.upload(random_file(tmp_path, "a.jpg", 10), FORMS["wasbs"](container, "a.jpg"))
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", base64.b64encode(b"not the key" * 6).decode())
    with pytest.raises(stores.StoreError) as e:
        store.validate_destination(FORMS["wasbs"](container, "out/"))
    assert e.value.kind == "access_denied"
    assert str(e.value) == f"Access denied to container '{container}'"
    with pytest.raises(stores.StoreError) as e:
        store.download(FORMS["wasbs"](container, "a.jpg"), tmp_path / "out.jpg")
    assert e.value.kind == "access_denied"


# -- presigned URLs -----------------------------------------------------------------------------------


@pytest.fixture
def photo(container, store, tmp_path):
    """A JPEG-named blob in the container: (its wasbs URI, its bytes)."""
    src = random_file(tmp_path, "p.jpg", 50_000)
    uri = FORMS["wasbs"](container, "dir/p.jpg")
    store.upload(src, uri)
    return uri, src.read_bytes()


@pytest.mark.parametrize("form", FORMS)
def test_presigned_url_fetches_the_blob_from_the_account_url_in_use(form, azure, container, store, photo):
    _, data = photo
    url = store.presign(FORMS[form](container, "dir/p.jpg"), 300)
    assert url.startswith(f"{azure.account_url}/{container}/dir/p.jpg?")
    body, headers = _fetch(url)
    assert body == data
    assert headers["Content-Type"] == "image/jpeg"


def test_a_tampered_sas_signature_is_refused_by_azurite(store, photo):
    url = store.presign(photo[0], 300)
    at = url.index("sig=") + len("sig=")
    width = 3 if url[at] == "%" else 1  # the first character may be percent-encoded ('+' as %2B)
    tampered = url[:at] + ("B" if url[at] == "A" else "A") + url[at + width:]
    assert query_params(tampered)["sig"] != query_params(url)["sig"]
    assert _http_status(tampered) == 403


def test_an_expired_sas_is_refused_by_azurite(store, photo):
    url = store.presign(photo[0], 1)
    assert _http_status(url) == 200  # start is backdated 5 minutes, so it is valid at once
    time.sleep(2.5)
    assert _http_status(url) == 403


def test_the_sas_grants_read_only(azure, container, store, photo):
    url = store.presign(photo[0], 300)
    assert query_params(url)["sp"] == "r"
    status = _http_status(url, method="PUT", data=b"overwritten",
                          headers={"x-ms-blob-type": "BlockBlob", "Content-Type": "image/jpeg"})
    assert status == 403
    stored = azure.client().get_blob_client(container, "dir/p.jpg").download_blob().readall()
    assert stored == photo[1]


def test_presign_without_an_account_key_says_which_setting_to_set(monkeypatch, store, photo):
    assert store.presign(photo[0], 60)  # works with the key...
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT_KEY")  # ...and the store notices it is gone
    with pytest.raises(stores.StoreError) as e:
        store.presign(photo[0], 60)
    assert e.value.kind == "no_signing_credentials"
    assert "AZURE_STORAGE_ACCOUNT_KEY" in str(e.value) and "user-delegation" in str(e.value)


def test_presigning_makes_no_network_call(monkeypatch, store):
    # An endpoint where nothing listens, and a container that does not exist: signing still succeeds.
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_URL", f"http://127.0.0.1:1/{AZURITE_ACCOUNT}")
    url = store.presign(FORMS["abfss"]("no-such-container", "x.jpg"), 60)
    assert url.startswith(f"http://127.0.0.1:1/{AZURITE_ACCOUNT}/no-such-container/x.jpg?")


def test_an_https_url_carrying_a_sas_is_read_with_that_sas(monkeypatch, container, store, photo, tmp_path):
    sas = urllib.parse.urlsplit(store.presign(photo[0], 300)).query
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT_KEY")  # only the SAS can grant access now
    uri = FORMS["https"](container, "dir/p.jpg") + "?" + sas
    assert store.exists(uri)
    store.download(uri, tmp_path / "via_sas.jpg")
    assert (tmp_path / "via_sas.jpg").read_bytes() == photo[1]
    with pytest.raises(stores.StoreError) as e:
        store.upload(tmp_path / "via_sas.jpg", uri)  # a SAS URL is for reading only
    assert e.value.kind == "invalid"


# -- retries ------------------------------------------------------------------------------------------


class FaultyProxy(FaultProxy):
    """A proxy in front of Azurite that answers the first requests with scripted errors (faultproxy.py)."""

    def __init__(self, upstream_port: int, faults: list[tuple[int, str | None]]) -> None:
        super().__init__("127.0.0.1", upstream_port)
        self.faults = collections.deque(faults)  # (status, Retry-After or None), consumed in order
        self.requests: list[str] = []
        self.gate = self._next_fault
        self.account_url = f"{self.endpoint}/{AZURITE_ACCOUNT}"

    def _next_fault(self, method: str, path: str, headers) -> tuple[int, bytes, str | None] | None:
        self.requests.append(f"{method} {path}")
        if self.faults:
            status, retry_after = self.faults.popleft()
            return status, b"", retry_after
        return None


@pytest.fixture
def faulty(monkeypatch, azure):
    proxies = []

    def start(faults):
        proxy = FaultyProxy(azure.port, faults)
        proxies.append(proxy)
        monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_URL", proxy.account_url)
        return proxy

    yield start
    for p in proxies:
        p.close()


def test_throttling_and_server_errors_are_retried_with_backoff(faulty, container, store, tmp_path):
    # The one fault without Retry-After comes first, where the exponential backoff is shortest (0-2 s).
    proxy = faulty([(500, None), (429, "0"), (503, "0"), (429, "0")])
    src = random_file(tmp_path, "a.jpg", 100_000)
    uri = FORMS["abfss"](container, "retried/a.jpg")
    store.upload(src, uri)
    assert [r.split()[0] for r in proxy.requests] == ["PUT"] * 5
    store.download(uri, tmp_path / "back.jpg")
    assert (tmp_path / "back.jpg").read_bytes() == src.read_bytes()  # the rewound body was sent whole


def test_a_429_without_retry_after_is_retried(faulty, container, store):
    proxy = faulty([(429, None)])
    store.validate_destination(FORMS["wasbs"](container, "out/"))
    assert len(proxy.requests) == 2


def test_throttling_that_never_stops_gives_up_when_the_retry_budget_is_spent(faulty, container, store, monkeypatch):
    monkeypatch.setenv("PIXELTABLE_RETRY_BUDGET_S", "1")
    proxy = faulty([(429, "0")] * 500)
    with pytest.raises(stores.StoreError) as e:
        store.exists(FORMS["wasbs"](container, "a.jpg"))
    assert e.value.kind == "throttled" and e.value.retryable
    assert "retry_budget_s = 1 s" in str(e.value) and "HTTP 429" in str(e.value)
    assert 2 <= len(proxy.requests) < 500
    assert proxy.faults  # it gave up while the server was still throttling
