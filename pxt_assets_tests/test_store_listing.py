"""Listing local folders (paths or file:// URLs, hidden and temporary files skipped), and a store that cannot
list. What every provider's listing does is the store contract, in test_store_contract.py."""

from __future__ import annotations

import pytest

from pxt_assets import stores
from pxt_assets.stores.base import StoreError
from pxt_assets.stores.local import file_url


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
