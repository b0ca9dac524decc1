"""Lifecycle on real components (a Dagster instance, local folders, moto, gcp-storage-emulator, Azurite):
deleting a batch, dropping a column or a table deletes exactly the files the project wrote for them, from
the locations recorded when they were written; `python -m pxt_assets gc` finds (and deletes) orphans."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

import pxt_assets as pxt
from pxt_assets import lifecycle, rowstore, stores
from pxt_assets.__main__ import main as cli_main
from pxt_assets_tests.conftest import forget_value, stored_records
from pxt_assets_tests.emulators import REPO
from pxt_assets_tests.places import SERVER_FIXTURE, Place


@pytest.fixture(params=["local", "s3", "gcs", "azure"])
def where(request, pxt_home, tmp_path):
    if request.param == "local":
        return Place("local", root=tmp_path / "bucket")
    return Place(request.param, request.getfixturevalue(SERVER_FIXTURE[request.param]))


def dest(where, sub: str) -> str:
    """A destination under the provider's prefix (local folders must exist before they are used)."""
    if where.name == "local":
        (where.root / sub).mkdir(parents=True, exist_ok=True)
    return where.prefix + sub + "/"


def owned(table: pxt.MediaTable, column: str, batch: str | None = None) -> list[str]:
    """The URIs a column's rows record as written by us, in one batch or all of them."""
    return sorted(r["value"] for r in stored_records(table, column, batch) if r.get("owned"))


def test_delete_batch_drop_column_drop_table_and_gc_touch_exactly_what_was_written(where, monkeypatch, instance,
                                                                                   images, capsys):
    # Another table that references its sources in place and writes its own files to the same bucket.
    refs = pxt.MediaTable("life/refs", {"img": pxt.Image})
    refs.add_computed_column(small=refs.img.thumbnail((32, 32)), destination=dest(where, "refs"))
    refs_batch = refs.insert([{"img": str(p)} for p in images[:2]], instance=instance).batch
    refs_files = where.objects("refs/")
    assert len(refs_files) == 2

    monkeypatch.setenv("PIXELTABLE_INPUT_MEDIA_DEST", dest(where, "inputs"))
    monkeypatch.setenv("PIXELTABLE_OUTPUT_MEDIA_DEST", dest(where, "out"))
    t = pxt.MediaTable("life/media", {"img": pxt.Image})
    t.add_computed_column(rotated=t.img.rotate(90), destination=dest(where, "rotated"))
    t.add_computed_column(flipped=t.img.transpose(0))  # output_media_dest
    t.add_computed_column(width=t.img.width)
    # The user's own files, some with names close to our scheme: never deleted, never listed by gc.
    user_files = [
        where.put("rotated/mine.jpg", b"u"), where.put("inputs/notes.txt", b"u"), where.put("top_level.jpg", b"u"),
        where.put("out/life__media/rotated/keep.jpg", b"u"),
        where.put("out/life__media_rotated_20240101T000000000000-abcd-000003_0123456789abcdeX.jpg", b"u"),
        where.put("out/notes_x_20240101T000000000000-abcd-000003_0123456789abcdef", b"u"),
    ]
    b1 = t.insert([{"img": str(p)} for p in images[:2]], instance=instance).batch
    b2 = t.insert([{"img": str(images[2])}], instance=instance).batch
    assert len(where.objects()) == 2 + 6 + 3 * 3  # refs, the user's files, 3 columns x 3 rows

    def written() -> list[str]:
        return sorted(set(where.objects()) - set(refs_files) - set(user_files))

    # delete(batch=): that batch's files in every column, nothing else.
    b1_files = owned(t, "img", b1) + owned(t, "rotated", b1) + owned(t, "flipped", b1)
    assert len(b1_files) == 6 and set(b1_files) <= set(written())
    before = written()
    assert t.delete(batch=b1, instance=instance) == 6
    assert written() == sorted(set(before) - set(b1_files))
    assert t.batches() == [b2] and t.count() == 1
    assert instance.get_dynamic_partitions("life__media__batches") == [b2]

    # A column others read cannot be dropped.
    with pytest.raises(pxt.SpecError, match="'rotated', 'flipped', 'width'"):
        t.drop_column("img", instance=instance)

    # The configuration changes and the table is declared again with other destinations: what was written
    # under the old ones is still found (from the recorded locations) and deleted.
    monkeypatch.setenv("PIXELTABLE_OUTPUT_MEDIA_DEST", dest(where, "out2"))
    t = pxt.MediaTable("life/media", {"img": pxt.Image})
    t.add_computed_column(rotated=t.img.rotate(90), destination=dest(where, "rotated2"))
    t.add_computed_column(flipped=t.img.transpose(0))
    t.add_computed_column(width=t.img.width)
    flipped_b2 = owned(t, "flipped")
    assert len(flipped_b2) == 1 and flipped_b2[0].startswith(where.prefix + "out/")
    before = written()
    assert t.drop_column("flipped", instance=instance) == 1
    assert written() == sorted(set(before) - set(flipped_b2))
    assert "flipped" not in t.spec.columns
    assert "flipped" not in rowstore.for_settings(t.settings).row_table(t.spec.slug).column_types
    assert list(t.collect().columns) == ["img", "rotated", "width", "errors"]

    # drop_table from storage alone: every file, where it was written, the row data, the partitions.
    assert len(written()) == 2 and t.spec.columns["rotated"].destination.rstrip("/").endswith("rotated2")
    assert pxt.drop_table("life/media", instance=instance) == 2
    assert written() == []
    assert sorted(where.objects()) == sorted(refs_files + user_files)
    assert rowstore.for_settings(t.settings).row_table(t.spec.slug) is None
    assert instance.get_dynamic_partitions("life__media__batches") == []
    assert all(p.is_file() for p in images)  # referenced in place by refs: never deleted
    assert len(refs.collect()) == 2
    with pytest.raises(pxt.SpecError, match="'life/media' does not exist"):
        pxt.drop_table("life/media", instance=instance)
    assert pxt.drop_table("life.media", if_not_exists="ignore", instance=instance) == 0

    # gc. The orphan: a row of refs removed from its row data behind the table's back (its file is in the
    # journal). A file named by our scheme copied in is not ours (the journal does not hold it): never a
    # candidate, only reported by --reconcile. Nothing drop_table left behind, nothing referenced, no user file.
    records = stored_records(refs, "small", refs_batch)
    lost, kept = records[0]["value"], records[1]["value"]
    forget_value(refs, "small", records[0]["row_id"])
    name = "old__tbl_thumb_20240101T000000000000-abcd-000003_0123456789abcdef.png"
    copied = where.put(f"out/old__tbl/thumb/aa/bb/{name}", b"png")
    target = str(where.root) if where.name == "local" else where.prefix  # a plain path works locally
    assert run_gc(target) == ["0 orphaned files"]  # younger than --min-age (default one hour): left alone
    assert run_gc(target, "--min-age", "0") == [lost, "1 orphaned file"]
    assert run_gc(target, "--reconcile") == [copied, "1 file named like ours that this database did not write "
                                                     "(none deleted)"]
    assert {lost, copied} <= set(where.objects())  # listing deletes nothing
    assert lifecycle.find_orphans(where.prefix + "refs/", min_age=0) == [lost]

    capsys.readouterr()
    assert cli_main(["gc", target, "--delete", "--min-age", "0"]) == 0  # the same command, in process (a new one costs ~5 s)
    assert capsys.readouterr().out.splitlines() == [lost, "1 orphaned file deleted"]
    assert sorted(where.objects()) == sorted([kept, copied] + user_files)
    assert lifecycle.find_orphans(target, min_age=0) == []
    paths = refs.select(refs.small.localpath).collect()["small_localpath"]
    assert [p is not None and pathlib.Path(p).is_file() for p in paths] == [False, True]  # the kept file reads


def test_a_failed_file_delete_keeps_the_rows_and_a_retry_finishes(pxt_home, tmp_path, instance, images):
    out = tmp_path / "out"
    out.mkdir()
    t = pxt.MediaTable("life/retry", {"img": pxt.Image})
    t.add_computed_column(rotated=t.img.rotate(90), destination=str(out))
    t.add_computed_column(flipped=t.img.transpose(0), destination=str(out))
    batch = t.insert([{"img": str(p)} for p in images], instance=instance).batch
    files = owned(t, "rotated") + owned(t, "flipped")
    # A directory where a file was: unlinking it fails (for root too), as a real store failure would.
    blocked = stores.path_of(files[0])
    blocked.unlink()
    blocked.mkdir()
    (blocked / "x").write_bytes(b"x")
    with pytest.raises(stores.StoreError) as e:
        t.delete(batch=batch, instance=instance)
    assert files[0] in str(e.value) and "same call again" in str(e.value)
    assert t.batches() == [batch] and t.count() == 3  # rows kept: they still say where the rest is
    assert owned(t, "rotated") + owned(t, "flipped") == files
    assert instance.has_dynamic_partition("life__retry__batches", batch)

    shutil.rmtree(blocked)
    assert t.delete(batch=batch, instance=instance) == 6
    assert [p for p in out.rglob("*")] == []  # files gone, and the shard folders they left empty
    assert t.batches() == [] and t.count() == 0
    assert not instance.has_dynamic_partition("life__retry__batches", batch)


def test_drop_column_refusals_and_drop_table_arguments(pxt_home, tmp_path, instance, images):
    t = pxt.MediaTable("life/refuse", {"img": pxt.Image, "label": pxt.String})
    t.add_computed_column(rotated=t.img.rotate(90))
    t.add_computed_column(url=t.rotated.fileurl)
    t.insert([{"img": str(images[0]), "label": "a"}], instance=instance)
    with pytest.raises(pxt.SpecError, match=r"'rotated' of table 'life/refuse': column\(s\) 'url' compute"):
        t.drop_column("rotated", instance=instance)
    with pytest.raises(pxt.SpecError, match="has no column 'nope'"):
        t.drop_column("nope", instance=instance)
    assert t.drop_column("label", instance=instance) == 0  # an inserted column nothing reads: allowed
    assert t.drop_column("url", instance=instance) == 0
    assert t.drop_column("rotated", instance=instance) == 1
    with pytest.raises(pxt.SpecError, match="only inserted column"):
        t.drop_column("img", instance=instance)
    assert list(t.collect().columns) == ["img", "errors"]
    t.add_computed_column(flipped=t.img.transpose(0))
    t.insert([{"img": str(images[1])}], instance=instance)  # the definitions were rebuilt: 2 batches, 1 column
    assert t.select(t.flipped.fileurl).collect()["flipped_fileurl"].notna().tolist() == [False, True]
    assert len(files_in(pxt_home / "media")) == 1
    assert lifecycle.drop_table(t, instance=instance) == 1  # a MediaTable works too; its inputs were referenced
    with pytest.raises(ValueError, match="if_not_exists"):
        pxt.drop_table("life/refuse", if_not_exists="replace", instance=instance)
    with pytest.raises(pxt.SpecError, match="invalid table path"):
        pxt.drop_table("life/re-fuse", instance=instance)
    with pytest.raises(ValueError, match="invalid batch key"):
        t.delete(batch="../x", instance=instance)
    assert files_in(pxt_home / "media") == [] and all(p.is_file() for p in images)
    assert not (pxt_home / "tables" / "life").exists()


def test_drop_table_keeps_a_table_nested_under_its_path(pxt_home, instance, images):
    outer = pxt.MediaTable("nest/a", {"img": pxt.Image})
    outer.add_computed_column(flipped=outer.img.transpose(0))
    inner = pxt.MediaTable("nest/a/b", {"img": pxt.Image})
    inner.add_computed_column(flipped=inner.img.transpose(0))
    outer.insert(img=str(images[0]), instance=instance)
    inner.insert(img=str(images[1]), instance=instance)
    assert pxt.drop_table("nest/a", instance=instance) == 1
    assert inner.count() == 1 and len(files_in(pxt_home / "media")) == 1
    assert pxt.drop_table("nest/a/b", instance=instance) == 1
    assert not (pxt_home / "tables" / "nest").exists() and files_in(pxt_home / "media") == []


def files_in(folder: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def run_gc(*args: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-m", "pxt_assets", "gc", *args], cwd=REPO, env=dict(os.environ),
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_the_gc_name_pattern_matches_what_writers_write_and_little_else(tmp_path):
    from pxt_assets.io_managers.rows import new_batch_key, row_id
    from pxt_assets.io_managers.writers import ColumnWriter
    from pxt_assets.spec import ColumnSpec, TableSpec

    spec = TableSpec(("my_dir", "my_table"))
    col = ColumnSpec("rotated_2", pxt.Image, None, None, str(tmp_path), "column")
    writer = ColumnWriter(spec, col, None)
    watched = "20261122T211640123456-3fa9c2d1"  # the batch keys watch() makes
    for batch in (new_batch_key(), watched):
        name = writer.object_name(row_id(batch, 12), "0123456789abcdef" * 4, ".jpg").rsplit("/", 1)[-1]
        assert lifecycle.OBJECT_NAME_RE.match(name), name
    for not_ours in ("IMG_0001.jpg", "my_dir__my_table_rotated_2_0123456789abcdef.jpg",
                     "a_b_20261122T211640123456-3fa9-000012_0123456789abcdef",  # no extension
                     "a_b_20261122T211640123456-3fa9-12_0123456789abcdef.jpg",
                     "a_b_20261122T211640123456-3fa9-000012_0123456789ABCDEF.jpg"):
        assert not lifecycle.OBJECT_NAME_RE.match(not_ours), not_ours

