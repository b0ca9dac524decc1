"""Upgrades keep homes working: a home written by an earlier release (committed as a fixture, see
`data/make_home_v2.py`) opens, queries, resumes and gcs correctly with this one."""

from __future__ import annotations

import pathlib
import sqlite3
import tarfile

import pxt_assets as pxt
from pxt_assets import lifecycle, rowstore, stores
from pxt_assets.rowstore import versions
from pxt_assets_tests.conftest import files_under

DATA = pathlib.Path(__file__).parent / "data"
V2_ROOT = "/tmp/PXT_V2_HOME"  # where data/make_home_v2.py wrote the fixture home


def unpack_home(name: str, root: str, dest: pathlib.Path) -> pathlib.Path:
    """The fixture home `name`, moved to `dest`: every text value in its database naming `root` is rewritten to
    the new place, as if the home had been written there."""
    with tarfile.open(DATA / name) as tar:
        tar.extractall(dest, filter="data")
    db = sqlite3.connect(dest / "pxt.db")
    with db:
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            for col in db.execute(f'PRAGMA table_info("{table}")').fetchall():
                if col[2].upper() in ("TEXT", "VARCHAR", "JSON", "") or "CHAR" in col[2].upper():
                    db.execute(f'UPDATE "{table}" SET "{col[1]}" = replace("{col[1]}", ?, ?) '
                               f'WHERE "{col[1]}" LIKE ?', (root, str(dest), f"%{root}%"))
    db.close()
    return dest


def test_a_home_written_before_the_batch_state_machine_opens_queries_resumes_and_gcs(tmp_path, monkeypatch,
                                                                                     instance):
    home = unpack_home("home_v2.tar.gz", V2_ROOT, tmp_path / "home")
    monkeypatch.setenv("PIXELTABLE_HOME", str(home))
    for var in ("PIXELTABLE_CONFIG", "PIXELTABLE_DB_URL", "PIXELTABLE_INPUT_MEDIA_DEST", "PIXELTABLE_OUTPUT_MEDIA_DEST"):
        monkeypatch.delenv(var, raising=False)
    assert pxt.list_tables() == ["up/chunks", "up/docs", "up/photos"]

    # its database recorded no schema version (that release did not): every step ran, once, and the version is
    # recorded; opening it again runs none
    store = rowstore.for_settings(pxt.load_settings())
    assert store.upgraded == list(range(1, versions.CURRENT + 1))
    with store.engine.connect() as conn:
        assert versions.recorded(conn) == versions.CURRENT
    again = rowstore.RowStore(store.url.render_as_string())
    assert again.upgraded == []
    again.dispose()

    t = pxt.get_table("up/photos")
    assert t.count() == 3 and len(t.pending_batches()) == 1
    rows = t.select(t.label, t.w, t.flipped.fileurl).order_by(t.label).collect()
    assert list(rows["label"]) == ["blue", "green", "red"] and list(rows["w"]) == [80, 72, 64]
    assert all(stores.path_of(u).is_file() for u in rows["flipped_fileurl"])
    assert t.where(t.w > 70).count() == 2

    chunks = pxt.get_table("up/chunks")
    assert sorted(chunks.select(chunks.text).collect()["text"]) == ["Alpha text.", "Opening words."]

    # the batch left pending by the earlier release completes, once
    (result,) = t.resume(instance=instance)
    assert result.num_rows == 1 and t.pending_batches() == [] and t.count() == 4
    assert sorted(t.select(t.label).collect()["label"]) == ["blue", "green", "pending", "red"]
    out = home / "out"
    assert len(files_under(out)) == 4

    # gc: every file is named by a row, so nothing is an orphan; a file the project never wrote is not its to delete
    assert lifecycle.find_orphans(str(out), min_age=0) == []
    stray = out / "up__photos" / "stray.jpg"
    stray.write_bytes(b"not named by any row")
    assert lifecycle.collect_garbage(str(out), delete=True, min_age=0) == []
    assert stray.exists() and len(files_under(out)) == 5
    stray.unlink()

    # and it keeps working: a new insert, a view row for a new base batch, a batch deleted with its files
    t.insert([{"img": str(home / "inputs" / "img1.jpg"), "label": "new"}], instance=instance)
    assert t.count() == 5
    docs = pxt.get_table("up/docs")
    (home / "inputs" / "more.md").write_text("# More\n\nMore words.\n")
    docs.insert([{"doc": str(home / "inputs" / "more.md")}], instance=instance)
    assert chunks.count() == 3
    first = t.batches()[0]
    assert t.delete(batch=first, instance=instance) == 2
    assert t.count() == 3 and len(files_under(out)) == 3
