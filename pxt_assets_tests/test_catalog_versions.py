"""A versioned catalog (issue #25, observations 2 and 3): every change to a table's document is
compare-and-set on its version, in one transaction with the DDL its row table needs; creation is an INSERT
that does nothing if the path is taken; a table created again has a new identity, and every process sees
either at its next call. On SQLite and on PostgreSQL."""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
import sqlalchemy as sa

import pxt_assets as pxt
from pxt_assets import rowstore
from pxt_assets_tests.emulators import REPO
from pxt_assets_tests.test_faults import SUBPROCESS_TIMEOUT_S, child_env, output_of

#: the randomized run's seed (each worker's ops are drawn from SEED * 100 + its number); a failure names it
SEED = int(os.environ.get("PXT_CATALOG_SEED", "25"))
WORKERS = 4
STEPS = 30

_n = iter(range(10**6))


def _unique(prefix: str) -> str:
    return f"{prefix}{os.getpid()}x{next(_n)}"


def _store() -> rowstore.RowStore:
    return rowstore.for_settings(pxt.load_settings())


def _columns_everywhere(path: str) -> tuple[list[str], set[str], set[str], str | None]:
    """The catalog's columns of `path` (in order), its row table's record's, the SQL table's own (its value
    fields `col_<id>`, named by the record's ids; a field no record names counts as `?col_<id>`), and the
    catalog's identity of the table."""
    store = _store()
    entry = store.table_entry(path)
    catalog = [c["name"] for c in entry.doc["columns"]]
    rt = store.row_table(path.replace("/", "__"))
    with store.engine.connect() as conn:
        fields = [c["name"] for c in sa.inspect(conn).get_columns(rt.sql_name)]
    by_id = {i: n for n, _, i in rt.columns}
    physical = {by_id.get(int(m.group(1)), "?" + f) for f in fields if (m := re.fullmatch(r"col_(\d+)", f))}
    return catalog, set(rt.column_types), physical, entry.table_id


# -- many processes changing one table -----------------------------------------------------------------------

# A worker: ready, wait for the start signal, then its seeded ops on one table: add an inserted column, add a
# computed column, count (which makes sure of the row table), or create the table again (if_exists='replace').
# A change refused because the table was dropped or re-created meanwhile is reported and the table got again.
# Changes take milliseconds and a re-creation most of a second (the Dagster instance's part of dropping), so
# each op starts after a short random pause, for the changes to meet the re-creations.
WORKER = """
import json, pathlib, random, sys, time
import pxt_assets as pxt
path, me, seed, steps, ready, go = json.loads(sys.argv[1])
rng = random.Random(seed)

def fresh():
    while True:
        try:
            return pxt.get_table(path)
        except pxt.SpecError:  # dropped by a re-creation, not created again yet
            time.sleep(0.005)

t = fresh()
pathlib.Path(ready).touch()
while not pathlib.Path(go).exists():
    time.sleep(0.005)
for step in range(steps):
    op = rng.choices(["add", "compute", "count", "recreate"], weights=[4, 4, 2, 1])[0]
    name = f"c{me}_{step}"
    time.sleep(rng.uniform(0, 0.05))  # spread the fast changes over the slow re-creations of others
    try:
        if op == "add":
            t.add_column(**{name: pxt.String})
        elif op == "compute":
            t.add_computed_column(**{name: t.img.width})
        elif op == "count":
            t.count()
        else:
            t = pxt.create_table(path, {"img": pxt.Image}, if_exists="replace")
    except pxt.SpecError as e:
        if "dropped" not in str(e):
            raise
        print(json.dumps({"refused": op, "name": name, "why": str(e)}), flush=True)
        t = fresh()
        continue
    if op in ("add", "compute"):
        print(json.dumps({"added": name, "table_id": t._table_id}), flush=True)
    elif op == "recreate":
        print(json.dumps({"created": t._table_id}), flush=True)
"""


def test_processes_adding_columns_and_recreating_one_table_lose_nothing(db, pxt_home, tmp_path):
    folder = _unique("cas")
    path = f"{folder}/t"
    pxt.create_dir(folder)
    pxt.create_table(path, {"img": pxt.Image})
    go = tmp_path / "go"
    procs = []
    for me in range(WORKERS):
        ready = tmp_path / f"ready{me}"
        env = child_env(pxt_home, tmp_path / f"dagster{me}")
        args = json.dumps([path, me, SEED * 100 + me, STEPS, str(ready), str(go)])
        procs.append((ready, subprocess.Popen([sys.executable, "-c", WORKER, args], cwd=REPO, env=env,
                                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                              stdin=subprocess.DEVNULL)))
    deadline = time.monotonic() + SUBPROCESS_TIMEOUT_S
    while not all(ready.exists() or p.poll() is not None for ready, p in procs):
        assert time.monotonic() < deadline, "the workers did not start"
        time.sleep(0.05)
    go.touch()
    events = []
    for _, p in procs:
        out, err = p.communicate(timeout=SUBPROCESS_TIMEOUT_S)
        done = subprocess.CompletedProcess(p.args, p.returncode, out, err)
        assert p.returncode == 0, f"seed {SEED}: " + output_of(done)
        events += [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    catalog, recorded, physical, table_id = _columns_everywhere(path)
    added = {e["added"] for e in events if "added" in e and e["table_id"] == table_id}
    why = f"seed {SEED}: {events}"
    assert len(catalog) == len(set(catalog)), why
    assert set(catalog) == recorded == physical, why  # the catalog's columns are the SQL table's
    assert set(catalog) == {"img"} | added, why  # every column added to this table is there, and no other
    assert any("added" in e for e in events), why
    # and any process sees the table as it is, at its next call
    assert pxt.get_table(path).columns() == catalog


# -- creating: exactly one of two creators wins ----------------------------------------------------------------

def _race(n: int, fn) -> list:
    barrier = threading.Barrier(n)

    def one(i: int):
        barrier.wait()
        return fn(i)

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return [f.result() for f in [pool.submit(one, i) for i in range(n)]]


def test_two_create_tables_with_if_exists_error_racing_one_wins_and_one_is_told_it_exists(db, pxt_home):
    folder = _unique("race")
    pxt.create_dir(folder)
    for i in range(10):
        path = f"{folder}/t{i}"

        def create(me: int, path=path) -> str:
            try:
                pxt.create_table(path, {"img": pxt.Image, f"only{me}": pxt.Int})
                return f"won {me}"
            except pxt.SpecError as e:
                assert str(e) == f"table {path!r} already exists: {path!r} is an existing table"  # Pixeltable's words
                return "lost"

        results = sorted(_race(2, create))
        assert results[0] == "lost" and results[1].startswith("won"), results
        winner = int(results[1].split()[1])
        catalog, recorded, physical, _ = _columns_everywhere(path)
        assert catalog == ["img", f"only{winner}"] and recorded == physical == set(catalog)


def test_of_two_processes_creating_a_catalog_entry_at_once_exactly_one_inserts_it(db, pxt_home):
    store = _store()
    for i in range(30):
        path = f"{_unique('ins')}/t{i}"
        slug = path.replace("/", "__")
        entries = _race(2, lambda me: store.create_table_doc(path, slug, {"path": path, "columns": [
            {"name": "img", "type": "Image"}, {"name": f"c{me}", "type": "Int"}]}, [("img", "Image"), (f"c{me}", "Int")]))
        won = [e for e in entries if e is not None]
        assert len(won) == 1
        assert store.table_entry(path).table_id == won[0].table_id
        assert set(store.row_table(slug).column_types) == {c["name"] for c in won[0].doc["columns"]}


def test_if_exists_ignore_racing_gives_both_callers_the_same_table(db, pxt_home):
    folder = _unique("ign")
    pxt.create_dir(folder)
    tables = _race(3, lambda me: pxt.create_table(f"{folder}/t", {"img": pxt.Image}, if_exists="ignore"))
    assert len({t._table_id for t in tables}) == 1


# -- changes: compare-and-set, retried on the document as it is ---------------------------------------------------

def test_a_change_that_finds_another_first_is_applied_again_to_the_new_document(db, pxt_home):
    store = _store()
    path = f"{_unique('retry')}/t"
    slug = path.replace("/", "__")
    first = store.create_table_doc(path, slug, {"path": path, "columns": [{"name": "a", "type": "Int"}]},
                                   [("a", "Int")])
    seen: list[list[str]] = []

    def add_c(entry):
        names = [c["name"] for c in entry.doc["columns"]]
        seen.append(names)
        if len(seen) == 1:  # another process's change lands between this read and this write
            assert store.replace_table_doc(entry, slug, {"path": path, "columns": [*entry.doc["columns"],
                                                                                   {"name": "b", "type": "Int"}]},
                                           [("a", "Int"), ("b", "Int")]) is not None
        doc = json.loads(entry.text)
        doc["columns"].append({"name": "c", "type": "String"})
        return doc, [(n, "Int") for n in names] + [("c", "String")]

    written = store.change_table_doc(path, slug, add_c, table_id=first.table_id)
    assert seen == [["a"], ["a", "b"]]
    assert [c["name"] for c in written.doc["columns"]] == ["a", "b", "c"] and written.version == 3
    assert store.table_entry(path).version == 3 and set(store.row_table(slug).column_types) == {"a", "b", "c"}
    # a stale entry no longer writes
    assert store.replace_table_doc(first, slug, {"path": path, "columns": []}, []) is None


def test_a_change_from_a_stale_handle_lands_on_the_current_table_or_names_the_table(db, pxt_home, instance):
    folder = _unique("stale")
    pxt.create_dir(folder)
    a = pxt.create_table(f"{folder}/t", {"img": pxt.Image})
    b = pxt.get_table(f"{folder}/t")
    a.add_computed_column(w=a.img.width)
    b.add_column(label=pxt.String)  # b was loaded before `w`: both stay
    assert a.columns() == b.columns() == ["img", "w", "label"]
    with pytest.raises(pxt.SpecError, match=rf"table '{folder}/t' already has a column 'w'"):
        b.add_computed_column(w=b.img.height)
    b.drop_column("w", instance=instance)
    assert a.columns() == ["img", "label"] and "w" not in _columns_everywhere(f"{folder}/t")[2]


def test_a_handle_on_a_table_created_again_is_never_taken_for_the_new_one(db, pxt_home, instance):
    folder = _unique("again")
    pxt.create_dir(folder)
    old = pxt.create_table(f"{folder}/t", {"img": pxt.Image, "label": pxt.String})
    assert old.count() == 0
    new = pxt.create_table(f"{folder}/t", {"img": pxt.Image}, if_exists="replace", instance=instance)
    for call in (old.count, lambda: old.add_column(x=pxt.Int), old.batches,
                 lambda: old.insert([{"img": "/nowhere.jpg"}], instance=instance)):
        with pytest.raises(pxt.SpecError, match=rf"table '{folder}/t' was dropped and created again .*"
                                                rf"pxt.get_table\('{folder}/t'\)"):
            call()
    assert new.count() == 0 and new.columns() == ["img"]
    assert _columns_everywhere(f"{folder}/t")[:3] == (["img"], {"img"}, {"img"})
    pxt.drop_table(f"{folder}/t", instance=instance)
    with pytest.raises(pxt.SpecError, match=rf"table '{folder}/t' was dropped since this handle was loaded"):
        new.count()
    assert _store().row_table(f"{folder}/t".replace("/", "__")) is None  # the handle did not bring it back


# -- a database made before catalog versions -------------------------------------------------------------------

def test_a_catalog_made_before_versions_gains_them_and_its_tables_change_compare_and_set(pxt_home):
    with sqlite3.connect(pxt_home / rowstore.DB_FILE) as conn:  # pxt_tables as the releases before made it
        conn.execute("CREATE TABLE pxt_dirs (path VARCHAR(1000) NOT NULL PRIMARY KEY)")
        conn.execute("CREATE TABLE pxt_tables (path VARCHAR(1000) NOT NULL PRIMARY KEY, doc TEXT NOT NULL, "
                     "updated_at FLOAT NOT NULL)")
        conn.execute("INSERT INTO pxt_dirs VALUES ('old')")
        for name in ("a", "b"):
            doc = {"path": f"old/{name}", "columns": [{"name": "img", "type": "Image"}], "automation": True}
            conn.execute("INSERT INTO pxt_tables VALUES (?, ?, 0)", (f"old/{name}", json.dumps(doc)))
    a, b = _store().table_entry("old/a"), _store().table_entry("old/b")
    assert a.version == b.version == 1 and a.table_id and b.table_id and a.table_id != b.table_id
    t = pxt.get_table("old/a")
    t.add_column(label=pxt.String)
    assert _columns_everywhere("old/a") == (["img", "label"], {"img", "label"}, {"img", "label"}, a.table_id)
    assert _store().table_entry("old/a").version == 2
