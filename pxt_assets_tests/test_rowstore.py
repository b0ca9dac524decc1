"""Rows in a real database: SQLite (embedded default) and PostgreSQL (a throwaway cluster on 127.0.0.1).

Queries against a plain Python filter of the same rows, on both databases; a killed batch invisible until it
is run again; a failed insert that a retry completes without duplicates; gc running while an insert writes;
two homes sharing one PostgreSQL database and a bucket; the migration of a home written by the previous
release (Parquet files and a JSON catalog)."""

from __future__ import annotations

import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time

import pandas as pd
import PIL.Image
import pytest
import sqlalchemy as sa

import pxt_assets as pxt
from pxt_assets import lifecycle, rowstore, stores
from pxt_assets.assets import batch_job_name
from pxt_assets.rowstore import versions
from pxt_assets_tests.conftest import CountingHTTPServer, files_under, make_image, record_intent
from pxt_assets_tests.emulators import REPO

DATA = pathlib.Path(__file__).parent / "data"
SUBPROCESS_TIMEOUT_S = 300


def _plain(series: pd.Series) -> list:
    """A column's values with pandas' missing markers (<NA>, NaN) as None."""
    return [None if pd.isna(v) else v for v in series]


def _unique(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{time.monotonic_ns() % 10**9}"


def _python(code: str, env: dict[str, str], timeout: float = SUBPROCESS_TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def _env(home: pathlib.Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIXELTABLE_", "DAGSTER_"))}
    if os.environ.get("PIXELTABLE_DB_URL"):  # the `db` fixture's database, for child processes too
        env["PIXELTABLE_DB_URL"] = os.environ["PIXELTABLE_DB_URL"]
    env.update({"PIXELTABLE_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"), **extra})
    return env


# -- queries: SQL where / order_by / limit against a Python filter of the same rows ------------------------


def test_where_order_by_limit_and_count_match_a_python_filter_of_the_same_rows(db, tmp_path, instance):
    rng = random.Random(7)
    folder = tmp_path / "imgs"
    folder.mkdir()
    widths = [40, 56, 64, 72, 90]
    imgs = [make_image(folder / f"w{w}.jpg", size=(w, 30)) for w in widths]
    name = _unique("q")
    pxt.create_dir(name)
    t = pxt.create_table(f"{name}/rows", {"img": pxt.Image, "n": pxt.Int, "x": pxt.Float, "label": pxt.String,
                                          "flag": pxt.Bool})
    t.add_computed_column(w=t.img.width)
    rows = []
    for i in range(60):
        img = str(imgs[rng.randrange(len(imgs))]) if i % 9 else str(folder / f"missing{i}.jpg")
        rows.append({"img": img, "n": i, "x": rng.random(), "label": rng.choice(["a", "b", "c", None]),
                     "flag": rng.random() < 0.5})
    t.insert(rows[:35], instance=instance)
    t.insert(rows[35:], instance=instance)

    everything = t.select(n=t.n, x=t.x, label=t.label, flag=t.flag, w=t.w, url=t.img.fileurl,
                          et=t.img.errortype).collect()
    assert list(everything["n"]) == list(range(60))  # insertion order by default
    ref = [{k: (None if pd.isna(v) else v) for k, v in r.items()} for r in everything.to_dict("records")]
    assert sum(r["et"] is not None for r in ref) == 7 and all(r["w"] is None for r in ref if r["et"])
    some_url = next(r["url"] for r in ref if r["url"])

    def gt(a, b):
        return None if a is None else a > b

    cases = [
        (t.n > 10, lambda r: r["n"] > 10),
        ((t.n >= 5) & (t.label == "b"), lambda r: r["n"] >= 5 and r["label"] == "b"),
        ((t.x < 0.5) | ~(t.flag == True), lambda r: r["x"] < 0.5 or not r["flag"]),  # noqa: E712
        (t.label == None, lambda r: r["label"] is None),  # noqa: E711
        (t.label != "a", lambda r: r["label"] is not None and r["label"] != "a"),  # NULL != 'a' is unknown
        (~(t.label == "a"), lambda r: r["label"] is not None and r["label"] != "a"),
        (t.img.errortype != None, lambda r: r["et"] is not None),  # noqa: E711
        (t.img.fileurl == some_url, lambda r: r["url"] == some_url),
        (t.w > 60, lambda r: bool(gt(r["w"], 60))),
        (t.label.isin(["a", "c"]), lambda r: r["label"] in ("a", "c")),
        # no SQL form: evaluated in Python on the rows, with the same three-valued logic
        (t.img.width > 60, lambda r: bool(gt(r["w"], 60))),
        ((t.img.width > 60) & (t.n < 40), lambda r: bool(gt(r["w"], 60)) and r["n"] < 40),
        (~(t.img.width > 60), lambda r: r["w"] is not None and not r["w"] > 60),
        # IS NULL on a column in error (its value is missing) inside a predicate evaluated in Python
        ((t.w == None) | (t.img.width > 60), lambda r: r["w"] is None or r["w"] > 60),  # noqa: E711
        ((t.img == None) & (t.img.width > 0), lambda r: False),  # noqa: E711
    ]
    for pred, keep in cases:
        expected = [r["n"] for r in ref if keep(r)]
        got = t.where(pred).select(t.n).collect()
        assert list(got["n"]) == expected, pred
        assert t.where(pred).count() == len(expected), pred
        assert t.where(pred).limit(3).count() == min(3, len(expected)), pred
        assert list(t.select(t.n).where(pred).limit(4).collect()["n"]) == expected[:4], pred

    # order_by: descending floats; then label (NULLs last ascending) with ties broken by n descending
    got = t.order_by(t.x, asc=False).limit(7).select(t.n, t.x).collect()
    assert list(got["n"]) == [r["n"] for r in sorted(ref, key=lambda r: -r["x"])[:7]]
    got = t.order_by(t.label).order_by(t.n, asc=False).select(t.n).collect()
    assert list(got["n"]) == [r["n"] for r in sorted(ref, key=lambda r: (r["label"] is None, r["label"] or "", -r["n"]))]
    # ordering by a value with no SQL form, filtered in SQL, limited
    got = t.where(t.n < 30).order_by(t.img.width, asc=False).limit(5).select(t.n, t.w).collect()
    # (as PostgreSQL orders: NULLs last ascending, first descending; the same on SQLite and in Python)
    ordered = sorted((r for r in ref if r["n"] < 30), key=lambda r: (r["w"] is not None, -(r["w"] or 0)))
    assert _plain(got["w"]) == [r["w"] for r in ordered[:5]]
    # chained wheres combine with &
    assert t.where(t.n > 10).where(t.n < 20).count() == 9
    assert t.count() == 60


def test_json_values_strings_in_byte_order_and_bare_media_compare_alike_on_both_databases(db, tmp_path, instance):
    folder = tmp_path / "imgs"
    folder.mkdir()
    name = _unique("js")
    pxt.create_dir(name)
    t = pxt.create_table(f"{name}/rows", {"img": pxt.Image, "label": pxt.String, "info": pxt.Json})
    labels = ["b", "B", "a", "A", "ab", None]
    rows = [{"img": str(make_image(folder / f"{i}.jpg")), "label": label, "info": {"k": i % 2, "tags": ["x"] * i}}
            for i, label in enumerate(labels)]
    t.insert(rows, instance=instance)
    # strings compare and sort by bytes (uppercase first), on PostgreSQL too, whatever the cluster's locale
    assert list(t.order_by(t.label).select(t.label).collect()["label"]) == ["A", "B", "a", "ab", "b", None]
    assert sorted(t.where(t.label < "a").select(t.label).collect()["label"]) == ["A", "B"]
    # JSON equality has no SQL form on PostgreSQL (json has no =): evaluated in Python, the same rows
    assert t.where(t.info == {"k": 1, "tags": ["x"]}).count() == 1
    assert t.where(t.info != None).count() == 6  # noqa: E711
    assert list(t.order_by(t.label).where(t.info == {"k": 0, "tags": []}).select(t.label).collect()["label"]) == ["b"]
    # a bare media column compares by its URI, in SQL and in Python alike
    url = rows[2]["img"]
    from pxt_assets.stores import file_url

    assert list(t.where(t.img.fileurl == file_url(url)).select(t.label).collect()["label"]) == ["a"]
    assert list(t.where((t.img.fileurl == file_url(url)) & (t.img.width > 0)).select(t.label).collect()["label"]) == ["a"]


def test_one_runs_commit_does_not_unprotect_another_run_writing_the_same_batch(db, tmp_path):
    store = rowstore.for_settings(pxt.load_settings())
    rt = store.ensure_row_table("two__runs", "two/runs", [("img", "Image")])
    store.create_batch(rt.slug, "20260101T000000000000-aaaa", [{"img": "/x.jpg"}])
    batch = "20260101T000000000000-aaaa"
    store.start_run(rt.slug, batch, "run-1")
    store.start_run(rt.slug, batch, "run-2")
    store.stage_column(rt, batch, "img", [{"row_id": batch + "-000000", "value": "file:///x.jpg", "owned": False}])
    store.commit_batch(rt, batch, "run-1")
    assert batch in store.live_batches()  # run-2 is still writing
    store.commit_batch(rt, batch, "run-2")
    assert batch not in store.live_batches()
    assert store.count(rt) == 1
    store.drop_row_table(rt.slug)


def test_a_runs_mark_protects_its_batch_while_its_process_lives_and_not_once_it_is_killed(db, tmp_path):
    """Marks name their process: a killed process's mark protects nothing; a mark recorded without one (by
    the release before) counts until it is old."""
    store = rowstore.for_settings(pxt.load_settings())
    rt = store.ensure_row_table("marks__t", "marks/t", [("img", "Image")])
    alive, killed, old = "20260101T000000000000-aaaa", "20260101T000000000000-bbbb", "20260101T000000000000-cccc"
    for batch in (alive, killed, old):
        store.create_batch(rt.slug, batch, [])
        store.stage_column(rt, batch, "img", [])
        store.commit_batch(rt, batch)  # committed: only a mark can make it live
    store.start_run(rt.slug, alive, "run-here")
    code = (f"from pxt_assets import rowstore, faults; import pxt_assets as pxt; "
            f"rowstore.for_settings(pxt.load_settings()).start_run({rt.slug!r}, {killed!r}, 'run-killed'); "
            "faults.fault_point('after_commit')")
    done = _python(code, {**_env(pxt.load_settings().home), "PXT_FAULT_POINT": "after_commit:1"})
    assert done.returncode == -signal.SIGKILL, done.stderr
    with store.engine.begin() as conn:  # a mark as the release before wrote it: no holder
        conn.execute(sa.text("INSERT INTO pxt_active_runs (slug, batch, run_id, started_at) VALUES "
                             "(:s, :b, 'run-old', :t)"), {"s": rt.slug, "b": old, "t": time.time()})
    live = store.live_batches()
    assert alive in live and old in live and killed not in live
    store.drop_row_table(rt.slug)


def test_a_database_made_before_marks_named_their_process_gains_the_field(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # pxt_active_runs as the release before made it
        conn.execute("CREATE TABLE pxt_active_runs (slug VARCHAR(1000) NOT NULL, batch VARCHAR(200) NOT NULL, "
                     "run_id VARCHAR(100) NOT NULL, started_at FLOAT NOT NULL, PRIMARY KEY (slug, batch, run_id))")
    store = rowstore.RowStore(f"sqlite:///{path}")
    try:
        assert store.upgraded == list(range(1, versions.CURRENT + 1))  # no version recorded: 0, every step
        store.create_batch("old__t", "20260101T000000000000-aaaa", [])
        store.start_run("old__t", "20260101T000000000000-aaaa", "run-1")
        assert store.live_batches() == {"20260101T000000000000-aaaa"}
        with store.engine.connect() as conn:
            assert "holder" in {c["name"] for c in sa.inspect(conn).get_columns("pxt_active_runs")}
            assert versions.recorded(conn) == versions.CURRENT
    finally:
        store.dispose()


def test_a_row_table_named_by_column_names_moves_to_column_ids_with_its_rows_on_either_database(db):
    from pxt_assets.rowstore import schema

    slug = _unique("legacy") + "__t"
    sql_name = schema.sql_name_for(slug)
    long, gone = "x" * 70, "y" * 70  # PostgreSQL cut both at 63 bytes; `gone` was dropped, its fields stayed
    plain = ["BIGINT", "Text", "VARCHAR(100)", "Text"]
    fields = {"img": ["Text", "Text", "VARCHAR(100)", "Text", "Text", "BOOLEAN"], "n": plain, long: plain,
              gone: plain[:2]}
    store = rowstore.RowStore(db)
    q = store._q
    with store.engine.begin() as conn:  # a row table as the release before column ids made it
        prefixes = ("v_", "e_", "k_", "f_", "d_", "o_")
        defs = [f"{q(p + name)} {t}" for name, types in fields.items() for p, t in zip(prefixes, types)]
        pos = "INTEGER PRIMARY KEY AUTOINCREMENT" if store.is_sqlite else "BIGSERIAL PRIMARY KEY"
        conn.exec_driver_sql(f"CREATE TABLE {q(sql_name)} (_pos {pos}, _row_id VARCHAR(200) NOT NULL UNIQUE, "
                             f"_batch VARCHAR(200) NOT NULL, _idx INTEGER NOT NULL, {', '.join(defs)})")
        conn.exec_driver_sql(f"INSERT INTO {q(sql_name)} (_row_id, _batch, _idx, {q('v_img')}, {q('o_img')}, "
                             f"{q('v_n')}, {q('e_n')}, {q('v_' + long)}, {q('v_' + gone)}) "
                             "VALUES ('b-000000', 'b', 0, 'file:///a.jpg', true, 7, 'boom', 3, 9)")
        conn.execute(sa.text("INSERT INTO pxt_row_tables (slug, path, sql_name, columns) "
                             "VALUES (:s, :p, :n, :c)"),
                     {"s": slug, "p": "legacy/t", "n": sql_name,
                      "c": f'[["img", "Image"], ["n", "Int"], ["{long}", "Int"]]'})
        # the database is as that release left it: at the schema version before column ids (step 3)
        conn.execute(sa.text("UPDATE pxt_kv SET value = '2' WHERE key = 'schema_version'"))
    store.dispose()

    store = rowstore.RowStore(db)  # opening the database moves it
    try:
        rt = store.row_table(slug)
        assert rt.columns == (("img", "Image", 1), ("n", "Int", 2), (long, "Int", 3)) and rt.next_id == 4
        with store.engine.connect() as conn:
            names = {c["name"] for c in sa.inspect(conn).get_columns(sql_name)}
        assert names == {*schema.SYSTEM_COLUMNS, *(sql for c, _, _ in rt.columns for _, sql in rt.fields(c))}
        got = store.read_columns(rt, "b", ["img", "n", long])
        assert got["img"]["b-000000"]["value"] == "file:///a.jpg" and got["img"]["b-000000"]["owned"] is True
        assert got["n"]["b-000000"]["value"] == 7 and got["n"]["b-000000"]["error"] == "boom"
        assert got[long]["b-000000"]["value"] == 3
        # a column added now gets the next id; a dropped one's id is never given again
        store.drop_row_column(slug, "n")
        rt = store.ensure_row_table(slug, "legacy/t", [("n", "Int")])
        assert rt.column_id("n") == 4 and rt.next_id == 5
        assert rowstore.RowStore(db).row_table(slug) == rt  # opened again: nothing left to move
    finally:
        store.dispose()


# -- schema versions (rowstore/versions.py) -------------------------------------------------------------------

@pytest.fixture(params=["sqlite", "postgres"])
def fresh_db(request, tmp_path) -> str:
    """The URL of a new, empty database of the test's own."""
    if request.param == "postgres":
        return request.getfixturevalue("pg_server").create_database("ver")
    return f"sqlite:///{tmp_path / 'ver.db'}"


def _version_of(url: str) -> int | None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return versions.recorded(conn)
    finally:
        engine.dispose()


def test_a_new_database_records_the_current_schema_version_and_runs_no_step(fresh_db):
    store = rowstore.RowStore(fresh_db)
    try:
        assert store.upgraded == [] and _version_of(fresh_db) == versions.CURRENT
        again = rowstore.RowStore(fresh_db)
        assert again.upgraded == []
        again.dispose()
    finally:
        store.dispose()


def test_each_schema_step_runs_once_though_four_processes_open_the_database_at_once(fresh_db, monkeypatch):
    """A database at version 1 of a release with three steps more; four openers at once (threads with their own
    engines and connections: the database's own locks decide, as between processes). Steps 3 and 4 add a
    column and fill it: run twice, the first would fail and the second would count twice."""
    rowstore.RowStore(fresh_db).dispose()  # the tables, at the current version
    engine = sa.create_engine(fresh_db)
    with engine.begin() as conn:  # as a release with one step left it
        versions._record(conn, 1)
    ran: list[int] = []

    def step(number):
        def run(conn):
            ran.append(number)
            time.sleep(0.05)  # long enough for every opener to be waiting for the lock
            if number == 3:
                conn.exec_driver_sql("ALTER TABLE pxt_dirs ADD COLUMN n INTEGER")  # fails if run twice
            if number == 4:
                conn.exec_driver_sql("UPDATE pxt_dirs SET n = COALESCE(n, 0) + 1")
        return run

    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO pxt_dirs (path) VALUES ('a')"))
    monkeypatch.setattr(versions, "STEPS", [step(1), step(2), step(3), step(4)])
    monkeypatch.setattr(versions, "CURRENT", 4)
    barrier = threading.Barrier(4)
    stores, errors = [], []

    def open_it():
        barrier.wait()
        try:
            stores.append(rowstore.RowStore(fresh_db))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert errors == [] and sorted(ran) == [2, 3, 4]
        assert sorted(s.upgraded for s in stores) == [[], [], [], [2, 3, 4]]
        assert _version_of(fresh_db) == 4
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT n FROM pxt_dirs")).scalar() == 1
    finally:
        for s in stores:
            s.dispose()
        engine.dispose()


def test_a_failed_schema_step_leaves_the_database_as_it_was_and_the_next_open_runs_it_again(fresh_db,
                                                                                        monkeypatch):
    rowstore.RowStore(fresh_db).dispose()
    base = versions.CURRENT

    def add_n(conn):
        versions.add_column(conn, "pxt_dirs", sa.Column("n", sa.Integer))

    def broken(conn):
        raise RuntimeError("step failed")

    monkeypatch.setattr(versions, "STEPS", [*versions.STEPS, add_n, broken])
    monkeypatch.setattr(versions, "CURRENT", base + 2)
    with pytest.raises(RuntimeError, match="step failed"):
        rowstore.RowStore(fresh_db)
    engine = sa.create_engine(fresh_db)
    try:
        with engine.connect() as conn:  # the step before the broken one rolled back with it
            assert versions.recorded(conn) == base and not versions.has_column(conn, "pxt_dirs", "n")
        monkeypatch.setattr(versions, "STEPS", [*versions.STEPS[:-1], lambda conn: None])
        store = rowstore.RowStore(fresh_db)
        assert store.upgraded == [base + 1, base + 2]
        store.dispose()
        with engine.connect() as conn:
            assert versions.recorded(conn) == base + 2 and versions.has_column(conn, "pxt_dirs", "n")
    finally:
        engine.dispose()

    # a database written by a later release is refused, naming both versions
    monkeypatch.setattr(versions, "STEPS", versions.STEPS[:-1])
    monkeypatch.setattr(versions, "CURRENT", base + 1)
    with pytest.raises(RuntimeError, match=rf"has schema version {base + 2}, .* knows versions up to {base + 1}"):
        rowstore.RowStore(fresh_db)


def test_a_database_password_is_never_printed():
    from pxt_assets.rowstore import redact

    shown = redact("postgresql+psycopg://me:s3cret@db.example:5432/pxt?password=an0ther&sslmode=require")
    assert "s3cret" not in shown and "an0ther" not in shown and "db.example:5432/pxt" in shown
    with pytest.raises(pxt.ConfigError) as e:
        pxt.load_settings(environ={"PIXELTABLE_DB_URL": "mysql://me:s3cret@h/db"})
    assert "s3cret" not in str(e.value) and "PIXELTABLE_DB_URL" in str(e.value)
    settings = pxt.load_settings(environ={"PIXELTABLE_DB_URL": "postgresql://me:s3cret@h/db"})
    assert settings.db_url == "postgresql+psycopg://me:s3cret@h/db" and "s3cret" not in repr(settings)


def test_count_and_value_selects_never_read_media_and_collect_fetches_only_returned_rows(db, tmp_path, instance,
                                                                                       http_server):
    name = _unique("lazy")
    pxt.create_dir(name)
    t = pxt.create_table(f"{name}/urls", {"img": pxt.Image, "n": pxt.Int})
    t.insert([{"img": http_server.url(p), "n": i} for i, p in enumerate(["000000000036.jpg", "000000000090.jpg",
                                                                          "000000000106.jpg"])], instance=instance)
    http_server.requests.clear()
    assert t.count() == 3 and t.where(t.n >= 1).count() == 2
    frame = t.select(t.n, t.img.fileurl).where(t.img.fileurl != None).collect()  # noqa: E711
    assert list(frame["n"]) == [0, 1, 2]
    assert sum(http_server.requests.values()) == 0  # no media byte read
    (img,) = t.where(t.n == 1).select(t.img).collect()["img"]
    assert isinstance(img, PIL.Image.Image)
    assert dict(http_server.requests) == {"/000000000090.jpg": 1}


# -- atomic batches: a killed batch shows nothing until run again; a failed insert completes once -------------


def test_a_killed_batch_is_invisible_from_every_process_until_it_is_run_again_and_never_duplicates(
        db, pxt_home, tmp_path, instance, images):
    root = tmp_path / "served"
    root.mkdir()
    for img in images:
        shutil.copyfile(img, root / img.name)
    server = CountingHTTPServer(root)
    try:
        pxt.create_dir("kill")
        t = pxt.create_table("kill/media", {"img": pxt.Image})
        t.add_computed_column(w=t.img.width)
        t.add_computed_column(flipped=t.img.transpose(0))
        urls = [server.url(img.name) for img in images]
        # the insert kills itself (SIGKILL) once two of the three flipped files are written (pxt_assets/faults.py)
        child = subprocess.run(
            [sys.executable, "-c", f"import pxt_assets as pxt; pxt.get_table('kill/media').insert("
                                   f"[{{'img': u}} for u in {urls!r}])"],
            cwd=REPO, env=_env(pxt_home, DAGSTER_HOME=str(tmp_path / "child_dagster"), PXT_FAULT_POINT="after_upload:2"),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=SUBPROCESS_TIMEOUT_S)
        assert child.returncode == -signal.SIGKILL
        written = files_under(pxt_home / "media")
        assert len(written) >= 2, "the killed run wrote no file before it died: the test proves nothing"

        # nothing of the batch is visible, here or in another process
        (batch,) = t.pending_batches()
        assert t.count() == 0 and len(t.collect()) == 0 and t.where(t.w > 0).count() == 0
        other = _python("import pxt_assets as pxt; t = pxt.get_table('kill/media'); print(t.count(), len(t.collect()))",
                        _env(pxt_home))
        assert other.returncode == 0, other.stderr
        assert other.stdout.split() == ["0", "0"]
        # gc leaves the killed batch's files alone: the batch is not committed, a re-run will name them
        assert lifecycle.find_orphans(str(pxt_home / "media"), min_age=0) == []

        (result,) = t.resume(instance=instance)
        assert (result.batch, result.num_rows) == (batch, 3)
        assert t.pending_batches() == [] and t.count() == 3
        assert sorted(t.select(t.w).collect()["w"]) == [481, 640, 640]
        # run again (as a re-execution from the UI would): the same rows, not twice as many
        job = t.definitions().resolve_job_def(batch_job_name(t.spec))
        assert job.execute_in_process(instance=instance, partition_key=batch).success
        assert t.count() == 3 and len(set(t.select(t.flipped.fileurl).collect()["flipped_fileurl"])) == 3
        assert all(stores.path_of(u).is_file() for u in t.select(t.flipped.fileurl).collect()["flipped_fileurl"])
    finally:
        server.close()


def test_a_failed_insert_shows_no_rows_and_a_retry_completes_it_once(db, pxt_home, tmp_path, instance, images):
    out = tmp_path / "out"
    out.mkdir()
    t = pxt.MediaTable(f"{_unique('retry')}/media", {"img": pxt.Image})
    t.add_computed_column(rotated=t.img.rotate(90), destination=str(out))
    out.rmdir()  # the destination vanishes: the computing step fails before it writes anything
    with pytest.raises(RuntimeError, match=r"t.resume\(") as e:
        t.insert([{"img": str(p)} for p in images], instance=instance)
    assert "'rotated'" in str(e.value)
    (batch,) = t.pending_batches()
    assert t.count() == 0 and len(t.collect()) == 0
    out.mkdir()
    (result,) = t.resume(batch, instance=instance)
    assert result.num_rows == 3 and t.count() == 3
    assert t.resume(instance=instance) == []  # nothing pending any more
    again = t.definitions().resolve_job_def(batch_job_name(t.spec))
    assert again.execute_in_process(instance=instance, partition_key=batch).success
    assert t.count() == 3 and len(files_under(out)) == 3


# -- gc while an insert is writing ------------------------------------------------------------------------------


def test_gc_delete_with_min_age_zero_during_an_insert_deletes_no_live_file(db, pxt_home, tmp_path, instance):
    src = tmp_path / "src"
    src.mkdir()
    paths = [make_image(src / f"{i:03d}.jpg", size=(320 + i, 240), color=(i * 4 % 256, 90, 160)) for i in range(48)]
    out = tmp_path / "out"
    out.mkdir()
    pxt.create_dir("gcrace")
    t = pxt.create_table("gcrace/media", {"img": pxt.Image})
    t.add_computed_column(rotated=t.img.rotate(90), destination=str(out))
    t.add_computed_column(flipped=t.img.transpose(0), destination=str(out))
    # a real orphan (written through the journal, of a batch no row names): gc must delete it, so it is running
    orphan = out / "gcrace__media" / "rotated" / "aa" / "bb" / "gcrace__media_rotated_20200101T000000000000-abcd-000001_0123456789abcdef.jpg"
    record_intent(stores.normalize_uri(str(orphan)), str(out))
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"old")
    child = subprocess.Popen(
        [sys.executable, "-c", f"import pxt_assets as pxt; pxt.get_table('gcrace/media').insert("
                               f"[{{'img': p}} for p in {[str(p) for p in paths]!r}])"],
        cwd=REPO, env=_env(pxt_home, DAGSTER_HOME=str(tmp_path / "child_dagster")),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    rounds = deleted = 0
    while child.poll() is None:
        deleted += len(lifecycle.collect_garbage(str(out), delete=True, min_age=0))
        rounds += 1
    output = child.stdout.read()
    assert child.returncode == 0, output[-3000:]
    assert rounds >= 3, f"gc ran only {rounds} times during the insert"
    assert deleted == 1 and not orphan.exists()
    assert t.count() == 48
    urls = [u for c in ("rotated", "flipped") for u in t.select(getattr(t, c).fileurl).collect().iloc[:, 0]]
    assert len(urls) == 96 and all(stores.path_of(u).is_file() for u in urls), "gc deleted a live file"
    assert lifecycle.collect_garbage(str(out), delete=True, min_age=0) == []


# -- two homes, no shared disk, one PostgreSQL database and one bucket ----------------------------------------


def test_two_homes_sharing_postgres_and_a_bucket_see_the_same_tables(tmp_path, pg_database, s3_env):
    bucket = "shared-" + _unique("b").replace("_", "-")[-20:]
    s3_env.client().create_bucket(Bucket=bucket)
    homes = [tmp_path / "a", tmp_path / "b"]
    for i, h in enumerate(homes):
        (h / "private").mkdir(parents=True)
        for j in range(2):
            make_image(h / "private" / f"{j}.jpg", size=(50 + 10 * i + j, 40))
    aws = {k: os.environ[k] for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                      "AWS_DEFAULT_REGION", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")}
    env_a = _env(homes[0], PIXELTABLE_DB_URL=pg_database, PIXELTABLE_INPUT_MEDIA_DEST=f"s3://{bucket}/in/", **aws)
    env_b = _env(homes[1], PIXELTABLE_DB_URL=pg_database, **aws)
    report = ("t = pxt.get_table('shared/media'); f = t.select(t.img.fileurl, t.thumb.fileurl, t.w).collect(); "
              "print(t.count()); print(sorted(f['img_fileurl'])); print(sorted(f['thumb_fileurl'])); "
              "print(sorted(int(x) for x in f['w']))")
    done = _python(
        "import pxt_assets as pxt\n"
        "pxt.create_dir('shared')\n"
        "t = pxt.create_table('shared/media', {'img': pxt.Image})\n"
        f"t.add_computed_column(thumb=t.img.thumbnail((16, 16)), destination='s3://{bucket}/out/')\n"
        "t.add_computed_column(w=t.img.width)\n"
        f"t.insert([{{'img': str(p)}} for p in sorted(__import__('pathlib').Path({str(homes[0] / 'private')!r}).glob('*.jpg'))])\n",
        env_a)
    assert done.returncode == 0, done.stderr[-3000:]
    done = _python(
        "import pxt_assets as pxt\n"
        "t = pxt.get_table('shared/media')\n"
        f"t.insert([{{'img': str(p)}} for p in sorted(__import__('pathlib').Path({str(homes[1] / 'private')!r}).glob('*.jpg'))])\n"
        + report.replace("; ", "\n"), env_b)
    assert done.returncode == 0, done.stderr[-3000:]
    seen_b = done.stdout.splitlines()[-4:]
    done = _python("import pxt_assets as pxt\n" + report.replace("; ", "\n"), env_a)
    assert done.returncode == 0, done.stderr[-3000:]
    seen_a = done.stdout.splitlines()[-4:]
    assert seen_a == seen_b
    assert seen_a[0] == "4" and seen_a[3] == "[50, 51, 60, 61]"
    img_urls, thumb_urls = eval(seen_a[1]), eval(seen_a[2])  # noqa: S307 - our own printed lists
    # the source column's destination was resolved once, from A's input_media_dest, and recorded with the
    # column: B's inserts upload there too, though B's own config has no input_media_dest
    assert all(u.startswith(f"s3://{bucket}/in/") for u in img_urls) and len(set(img_urls)) == 4
    assert all(u.startswith(f"s3://{bucket}/out/") for u in thumb_urls) and len(set(thumb_urls)) == 4
    # no shared disk: neither home holds the other's rows, and nothing of the rows is under either home
    for h in homes:
        assert not (h / "pxt.db").exists() and not (h / "tables").exists() and not (h / "catalog").exists()


# -- migration of a home written by the previous release ---------------------------------------------------------

V1_ROOT = "/tmp/PXT_V1_HOME"  # where the fixture home was written by the previous release


def _v1_home(dest: pathlib.Path) -> pathlib.Path:
    """The fixture home (written by the release that kept rows in Parquet files), moved to `dest`: its
    recorded paths are rewritten to the new place, as if it had been written there."""
    with tarfile.open(DATA / "home_v1.tar.gz") as tar:
        tar.extractall(dest, filter="data")
    for f in dest.rglob("*.json"):
        f.write_text(f.read_text().replace(V1_ROOT, str(dest)))
    for f in dest.rglob("*.parquet"):
        frame = pd.read_parquet(f, use_threads=False)
        for c in frame.columns:
            if frame[c].dtype == object:
                frame[c] = frame[c].map(lambda v: v.replace(V1_ROOT, str(dest)) if isinstance(v, str) else v)
        frame.to_parquet(f, index=False)
    return dest


def test_a_home_written_by_the_previous_release_is_migrated_once_and_keeps_working(tmp_path, monkeypatch,
                                                                                   instance, capsys):
    home = _v1_home(tmp_path / "home")
    monkeypatch.setenv("PIXELTABLE_HOME", str(home))
    for var in ("PIXELTABLE_CONFIG", "PIXELTABLE_DB_URL", "PIXELTABLE_INPUT_MEDIA_DEST", "PIXELTABLE_OUTPUT_MEDIA_DEST"):
        monkeypatch.delenv(var, raising=False)
    assert pxt.list_tables() == ["mig/photos"]
    out = capsys.readouterr().out
    assert out.count("pxt_assets: migrated") == 1 and "1 catalog tables" in out and "6 rows in 3 batches of 2 tables" in out
    assert (home / "tables.migrated").is_dir() and (home / "catalog.migrated").is_dir()
    assert not (home / "tables").exists() and not (home / "catalog").exists()

    t = pxt.get_table("mig/photos")
    assert t.count() == 4
    frame = t.select(t.label, t.width, t.img.errortype, t.flipped.fileurl).collect()
    assert list(frame["label"]) == ["red", "green", "gone", "blue"]
    assert _plain(frame["width"]) == [64, 72, None, 80]
    assert list(frame["img_errortype"]) == [None, None, "not_found", None]
    flipped = t.select(t.flipped).collect()["flipped"]
    assert [im.size if im is not None else None for im in flipped] == [(64, 48), (72, 48), None, (80, 48)]
    assert t.where(t.width > 70).count() == 2

    # a table declared in code finds its rows when declared again
    code = pxt.MediaTable("code/thumbs", {"img": pxt.Image})
    code.add_computed_column(thumb=code.img.thumbnail((16, 16)), destination=str(home / "thumbs"))
    code.add_computed_column(h=code.img.height)
    assert code.count() == 2 and list(code.select(code.h).collect()["h"]) == [48, 48]

    # once only: a new process finds nothing to migrate and the same rows
    done = _python("import pxt_assets as pxt; print(pxt.get_table('mig/photos').count())", _env(home))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["4"]

    # and it keeps working: inserts, deletes of old batches (their files, from the recorded locations)
    t.insert(img=str(home / "inputs" / "img0.jpg"), label="again", instance=instance)
    assert t.count() == 5
    first = t.batches()[0]
    before = files_under(home / "media")
    assert t.delete(batch=first, instance=instance) == 2
    assert len(files_under(home / "media")) == len(before) - 2
    assert t.count() == 2 and all((home / "inputs" / f"img{i}.jpg").is_file() for i in range(3))
