"""How `home_v2.tar.gz` was written: a small home made by the release before the batch state machine and the
versioned catalog (rows in SQLite, commit `20923af`), kept so every later release is tested opening it.

    PIXELTABLE_HOME=/tmp/PXT_V2_HOME DAGSTER_HOME=/tmp/PXT_V2_DAGSTER .venv/bin/python pxt_assets_tests/data/make_home_v2.py

It holds `up/photos` (two committed batches, a computed width, computed files in `out/`, and one pending
batch whose computed step failed), `up/docs` with a view `up/chunks` (document_splitter), and the input files
under `inputs/`. The Dagster instance and the file cache are left out (neither is the home's data)."""

from __future__ import annotations

import os
import pathlib
import shutil
import sqlite3
import subprocess
import sys
import tarfile

from PIL import Image

ROOT = pathlib.Path("/tmp/PXT_V2_HOME")  # the tests rewrite this prefix to where they unpack the home


def main() -> None:
    assert pathlib.Path(os.environ["PIXELTABLE_HOME"]) == ROOT and not ROOT.exists(), "needs a fresh /tmp/PXT_V2_HOME"
    import pxt_assets as pxt
    from pxt_assets.functions.document import document_splitter

    inputs = ROOT / "inputs"
    inputs.mkdir(parents=True)
    for i, (color, width) in enumerate([("red", 64), ("green", 72), ("blue", 80)]):
        Image.new("RGB", (width, 48), color).save(inputs / f"img{i}.jpg")
    (inputs / "notes.md").write_text("# Notes\n\nOpening words.\n\n## Part A\n\nAlpha text.\n")

    pxt.create_dir("up")
    t = pxt.create_table("up/photos", {"img": pxt.Image, "label": pxt.String})
    t.add_computed_column(w=t.img.width)
    out = ROOT / "out"
    out.mkdir()
    t.add_computed_column(flipped=t.img.transpose(0), destination=str(out))
    t.insert([{"img": str(inputs / "img0.jpg"), "label": "red"}, {"img": str(inputs / "img1.jpg"), "label": "green"}])
    t.insert([{"img": str(inputs / "img2.jpg"), "label": "blue"}])
    out.rename(ROOT / "out.away")  # the destination vanishes: this batch's computed step fails, it stays pending
    try:
        t.insert([{"img": str(inputs / "img0.jpg"), "label": "pending"}])
    except RuntimeError as e:
        print("pending as intended:", str(e).splitlines()[0])
    (ROOT / "out.away").rename(out)
    assert len(t.pending_batches()) == 1

    docs = pxt.create_table("up/docs", {"doc": pxt.Document})
    docs.insert([{"doc": str(inputs / "notes.md")}])
    pxt.create_view("up/chunks", docs, iterator=document_splitter(docs.doc, "heading"))


def pack() -> None:
    """Run after the writing process has exited: the database checkpointed into one file, then the tarball."""
    db = sqlite3.connect(ROOT / "pxt.db")
    db.execute("PRAGMA journal_mode=DELETE")  # folds the WAL into pxt.db
    db.close()
    shutil.rmtree(ROOT / "file_cache", ignore_errors=True)
    target = pathlib.Path(__file__).with_name("home_v2.tar.gz")
    with tarfile.open(target, "w:gz") as tar:
        for path in sorted(ROOT.rglob("*")):
            if path.is_file() and "dagster" not in path.relative_to(ROOT).parts:
                tar.add(path, arcname=str(path.relative_to(ROOT)), recursive=False)
    print(target, target.stat().st_size, "bytes")


if __name__ == "__main__":
    if sys.argv[1:] == ["write"]:
        main()
    else:
        subprocess.run([sys.executable, __file__, "write"], check=True)
        pack()
