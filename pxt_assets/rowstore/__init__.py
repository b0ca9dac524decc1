"""Rows and the catalog in one SQL database, through SQLAlchemy: the only code that speaks SQL.

The database is a SQLite file under `$PIXELTABLE_HOME` by default (nothing to install or start), or the
PostgreSQL server that `[pixeltable] db_url` / `PIXELTABLE_DB_URL` names; then every process and worker that
shares the URL sees the same tables, with no shared disk. Media bytes never pass through here: a media value
is its URI.

A batch's rows become visible atomically. Steps stage each column's records for a batch (`stage_column`);
the step that finishes the batch calls `commit_batch`, which moves every staged column into the table's
rows in one transaction. Until then `count()` and queries do not see the batch, from any process; a failed
or killed batch stays staged until it is run again, and a re-run replaces what it staged (row ids are
deterministic), so nothing is duplicated.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from pxt_assets import fsutil
from pxt_assets.cache import process_alive, process_identity
from pxt_assets.faults import fault_point
from pxt_assets.rowstore import schema
from pxt_assets.rowstore.schema import COMMITTED, PENDING, RowTable

__all__ = ["RowStore", "RowTable", "CommitResult", "BatchInfo", "for_settings", "default_url", "NotSQL",
           "COMMITTED", "PENDING"]

DB_FILE = "pxt.db"
#: a run marked as writing a batch that has not committed after this long is taken as killed: gc may then
#: collect what it wrote (its batch's rows, if committed by another run, name what is kept)
ACTIVE_RUN_TTL_S = 24 * 3600.0


class NotSQL(Exception):
    """An expression that has no SQL form (a function call on an image, say): evaluated in Python instead."""


@dataclass(frozen=True)
class CommitResult:
    rows: int
    errors: int
    replaced: list[str]  # files we wrote that the committed values no longer name (to delete)


@dataclass(frozen=True)
class BatchInfo:
    batch: str
    status: str
    num_rows: int | None
    num_errors: int | None
    source: Any


def default_url(home: pathlib.Path) -> str:
    return f"sqlite:///{pathlib.Path(home).absolute() / DB_FILE}"


_SECRET_QUERY_KEYS = frozenset({"password", "sslpassword", "passfile", "sslkey"})


def redact(url: str | sa.URL) -> str:
    """A database URL fit to print: the password hidden, in the URL and in its query string."""
    try:
        parsed = sa.make_url(url)
        query = {k: ("***" if k.lower() in _SECRET_QUERY_KEYS else v) for k, v in parsed.query.items()}
        return parsed.set(query=query).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy understands: show only its scheme
        return str(url).split("://", 1)[0] + "://***"


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)


def _split_row_id(row_id: str) -> int:
    tail = row_id.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


class RowStore:
    """One database: catalog, batches, staged columns and every table's rows."""

    def __init__(self, url: str) -> None:
        self.url = sa.make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self.engine = self._make_engine()
        self._ensured: dict[tuple, RowTable] = {}
        self._lock = threading.Lock()
        with self._write() as conn:  # serialised: two processes may open a new database at once
            self._lock_key(conn, "schema")
            schema.metadata.create_all(conn, checkfirst=True)
            marks = {c["name"] for c in sa.inspect(conn).get_columns(schema.active_runs.name)}
            if "holder" not in marks:  # a database made before runs' marks named their process
                self._add_sql_column(conn, schema.active_runs.name, sa.Column("holder", sa.String(500)))

    def __repr__(self) -> str:
        return f"RowStore({redact(self.url)})"

    # -- connections -------------------------------------------------------------------------------------
    def _make_engine(self) -> sa.Engine:
        # hide_parameters: a failed statement's message would show the values it wrote (URLs with signatures)
        if self.is_sqlite:
            db = self.url.database
            if db and db != ":memory:":
                fsutil.make_dirs(pathlib.Path(db).parent)
            engine = sa.create_engine(self.url, connect_args={"timeout": 120, "check_same_thread": False},
                                      pool_size=4, max_overflow=8, hide_parameters=True)

            @event.listens_for(engine, "connect")
            def _connect(dbapi_conn, _record) -> None:
                dbapi_conn.isolation_level = None  # transactions are begun below, not by the driver
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                # FULL: a commit is on disk when it returns (the WAL is synced at every commit), so an insert
                # that reported its rows keeps them through an OS crash or power cut; NORMAL (SQLite's advice
                # for WAL) keeps the database consistent but may roll the last commits back. The catalog,
                # batches and cursors are the record, and the cost is about ten WAL syncs per insert (measured:
                # ~0.1 ms each here, against the per-file fsyncs of its media).
                cur.execute("PRAGMA synchronous=FULL")
                cur.execute("PRAGMA busy_timeout=120000")
                cur.close()

            @event.listens_for(engine, "begin")
            def _begin(conn) -> None:
                # Writers take the write lock up front, so two processes never both read then fail to upgrade.
                conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("pxt_write") else "BEGIN")

            return engine
        return sa.create_engine(self.url, pool_pre_ping=True, pool_size=4, max_overflow=8, hide_parameters=True)

    @contextlib.contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        with self.engine.connect() as conn:
            conn.execution_options(pxt_write=True)
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        with self.engine.connect() as conn:
            yield conn

    def _lock_key(self, conn: sa.Connection, name: str) -> None:
        """Serialise writers of one name (schema changes) on PostgreSQL; SQLite's write lock already does."""
        if not self.is_sqlite:
            import zlib

            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": zlib.crc32(name.encode())})

    def dispose(self) -> None:
        self.engine.dispose()

    # -- catalog -----------------------------------------------------------------------------------------
    def dir_exists(self, path: str) -> bool:
        if not path:
            return True
        with self._read() as conn:
            return conn.execute(sa.select(schema.dirs.c.path).where(schema.dirs.c.path == path)).first() is not None

    def create_dirs(self, paths: Sequence[str]) -> None:
        with self._write() as conn:
            have = {r[0] for r in conn.execute(sa.select(schema.dirs.c.path).where(schema.dirs.c.path.in_(paths)))}
            new = [{"path": p} for p in paths if p not in have]
            if new:
                conn.execute(schema.dirs.insert(), new)

    def remove_dir(self, path: str) -> None:
        prefix = path + "/"
        with self._write() as conn:
            conn.execute(schema.dirs.delete().where(
                (schema.dirs.c.path == path) | (sa.func.substr(schema.dirs.c.path, 1, len(prefix)) == prefix)))

    def save_table_doc(self, path: str, doc: dict[str, Any]) -> None:
        with self._write() as conn:
            values = {"doc": _dumps(doc), "updated_at": time.time()}
            done = conn.execute(schema.tables.update().where(schema.tables.c.path == path).values(**values))
            if done.rowcount == 0:
                conn.execute(schema.tables.insert().values(path=path, **values))

    def table_doc(self, path: str) -> dict[str, Any] | None:
        with self._read() as conn:
            row = conn.execute(sa.select(schema.tables.c.doc).where(schema.tables.c.path == path)).first()
        return None if row is None else json.loads(row[0])

    def remove_table_doc(self, path: str) -> None:
        with self._write() as conn:
            conn.execute(schema.tables.delete().where(schema.tables.c.path == path))

    def table_docs(self) -> list[tuple[str, str]]:
        """(path, document text) of every catalog table, by path."""
        with self._read() as conn:
            return [(r[0], r[1]) for r in conn.execute(
                sa.select(schema.tables.c.path, schema.tables.c.doc).order_by(schema.tables.c.path))]

    def view_docs(self, base_path: str) -> list[dict[str, Any]]:
        """The catalog documents of the views whose base table is `base_path`, by path."""
        out = []
        for _, text in self.table_docs():
            doc = json.loads(text)
            if doc.get("view") and doc["view"]["base"]["path"] == base_path:
                out.append(doc)
        return out

    # -- row tables ----------------------------------------------------------------------------------------
    def row_table(self, slug: str) -> RowTable | None:
        """The SQL table holding `slug`'s rows as it is now, or None if it has none."""
        with self._read() as conn:
            row = conn.execute(sa.select(schema.row_tables).where(schema.row_tables.c.slug == slug)).first()
        return None if row is None else self._row_table_of(row)

    @staticmethod
    def _row_table_of(row: Any) -> RowTable:
        return RowTable(row.slug, row.path, row.sql_name, tuple((n, t) for n, t in json.loads(row.columns)))

    def ensure_row_table(self, slug: str, path: str, columns: Sequence[tuple[str, str]]) -> RowTable:
        """The SQL table for a media table, created or widened (new columns added) to hold `columns`
        (name, type name). Columns it has and `columns` lacks are kept (dropping is `drop_column`'s job)."""
        key = (slug, tuple(columns))
        cached = self._ensured.get(key)
        if cached is not None:
            return cached
        with self._write() as conn:
            self._lock_key(conn, "schema:" + slug)
            row = conn.execute(sa.select(schema.row_tables).where(schema.row_tables.c.slug == slug)).first()
            if row is None:
                rt = RowTable(slug, path, schema.sql_name_for(slug), tuple(columns))
                rt.table().create(conn)
                conn.execute(schema.row_tables.insert().values(
                    slug=slug, path=path, sql_name=rt.sql_name, columns=_dumps([list(c) for c in rt.columns])))
            else:
                rt = self._row_table_of(row)
                known = rt.column_types
                missing = [(n, t) for n, t in columns if n not in known]
                # a column recorded as a plain value that is now media (a migrated table) gains d_ / o_ fields
                widened = [(n, t) for n, t in columns if n in known and t in schema.WRITES_FILES
                           and known[n] not in schema.WRITES_FILES]
                if missing or widened:
                    existing = {c["name"] for c in sa.inspect(conn).get_columns(rt.sql_name)}
                    for n, t in missing + widened:
                        for col in schema.field_columns(n, t):
                            if col.name not in existing:
                                self._add_sql_column(conn, rt.sql_name, col)
                    merged = {**known, **dict(missing), **dict(widened)}
                    rt = RowTable(slug, rt.path, rt.sql_name, tuple(merged.items()))
                    conn.execute(schema.row_tables.update().where(schema.row_tables.c.slug == slug).values(
                        columns=_dumps([list(c) for c in rt.columns])))
        self._ensured[key] = rt
        return rt

    def for_spec(self, spec) -> RowTable:
        """The row table of a `spec.TableSpec`, holding (at least) its current columns."""
        return self.ensure_row_table(spec.slug, spec.display_path,
                                     [(c.name, c.storage_type) for c in spec.columns.values()])

    def _add_sql_column(self, conn: sa.Connection, table: str, col: sa.Column) -> None:
        spec = sa.schema.CreateColumn(col).compile(dialect=self.engine.dialect)
        conn.exec_driver_sql(f"ALTER TABLE {self._q(table)} ADD COLUMN {spec}")

    def _q(self, name: str) -> str:
        return self.engine.dialect.identifier_preparer.quote(name)

    def drop_row_column(self, slug: str, column: str) -> None:
        """Remove a column's fields from its row table (and staged records of it)."""
        self._ensured.clear()
        with self._write() as conn:
            self._lock_key(conn, "schema:" + slug)
            row = conn.execute(sa.select(schema.row_tables).where(schema.row_tables.c.slug == slug)).first()
            conn.execute(schema.staged.delete().where((schema.staged.c.slug == slug)
                                                      & (schema.staged.c.column == column)))
            if row is None:
                return
            rt = self._row_table_of(row)
            existing = {c["name"] for c in sa.inspect(conn).get_columns(rt.sql_name)}
            for prefix in (schema.VALUE, schema.ERROR, schema.ERRORTYPE, schema.VERSION, schema.DESTINATION,
                           schema.OWNED):
                if prefix + column in existing:
                    conn.exec_driver_sql(f"ALTER TABLE {self._q(rt.sql_name)} DROP COLUMN {self._q(prefix + column)}")
            cols = [[n, t] for n, t in rt.columns if n != column]
            conn.execute(schema.row_tables.update().where(schema.row_tables.c.slug == slug).values(columns=_dumps(cols)))

    def drop_row_table(self, slug: str) -> None:
        """Remove every row, batch and staged record of a table, and its SQL table."""
        self._ensured.clear()
        with self._write() as conn:
            self._lock_key(conn, "schema:" + slug)
            row = conn.execute(sa.select(schema.row_tables).where(schema.row_tables.c.slug == slug)).first()
            if row is not None:
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {self._q(row.sql_name)}")
                conn.execute(schema.row_tables.delete().where(schema.row_tables.c.slug == slug))
            conn.execute(schema.staged.delete().where(schema.staged.c.slug == slug))
            conn.execute(schema.active_runs.delete().where(schema.active_runs.c.slug == slug))
            conn.execute(schema.batches.delete().where(schema.batches.c.slug == slug))
            conn.execute(schema.watch_taken.delete().where(schema.watch_taken.c.slug == slug))

    # -- batches -------------------------------------------------------------------------------------------
    def create_batch(self, slug: str, batch: str, rows: list[dict[str, Any]], source: Any = None) -> bool:
        """Record a new batch and what was inserted in it. False if it already exists (a retried sensor tick
        re-creating the same batch): its manifest is kept."""
        with self._write() as conn:
            have = conn.execute(sa.select(schema.batches.c.status).where(
                (schema.batches.c.slug == slug) & (schema.batches.c.batch == batch))).first()
            if have is not None:
                return False
            conn.execute(schema.batches.insert().values(
                slug=slug, batch=batch, status=PENDING, manifest=_dumps(rows),
                source=None if source is None else _dumps(source), created_at=time.time()))
        return True

    def manifest(self, slug: str, batch: str) -> list[dict[str, Any]] | None:
        with self._read() as conn:
            row = conn.execute(sa.select(schema.batches.c.manifest).where(
                (schema.batches.c.slug == slug) & (schema.batches.c.batch == batch))).first()
        return None if row is None else json.loads(row[0])

    def batch_info(self, slug: str, batch: str) -> BatchInfo | None:
        with self._read() as conn:
            r = conn.execute(sa.select(schema.batches).where(
                (schema.batches.c.slug == slug) & (schema.batches.c.batch == batch))).first()
        return None if r is None else BatchInfo(r.batch, r.status, r.num_rows, r.num_errors,
                                                json.loads(r.source) if r.source else None)

    def batches(self, slug: str, status: str | None = None) -> list[str]:
        """Batch keys of a table (all, or those with `status`), oldest first."""
        q = sa.select(schema.batches.c.batch).where(schema.batches.c.slug == slug)
        if status is not None:
            q = q.where(schema.batches.c.status == status)
        with self._read() as conn:
            return [r[0] for r in conn.execute(q.order_by(schema.batches.c.created_at, schema.batches.c.batch))]

    def start_run(self, slug: str, batch: str, run_id: str, *, new_batch: bool = False) -> None:
        """A run is about to write this batch's files (from this process): until it commits, or this process
        is gone, gc leaves them alone. Each step of a run marks it again: steps may be processes of their own.
        `new_batch`: the batch is not recorded yet (an insert uploading its files first; see end_run)."""
        a = schema.active_runs
        holder = _dumps(process_identity())
        with self._write() as conn:
            if not new_batch:
                self._batch_row(conn, slug, batch)
            where = (a.c.slug == slug) & (a.c.batch == batch) & (a.c.run_id == run_id)
            if conn.execute(a.update().where(where).values(started_at=time.time(), holder=holder)).rowcount == 0:
                conn.execute(a.insert().values(slug=slug, batch=batch, run_id=run_id, started_at=time.time(),
                                               holder=holder))

    def end_run(self, slug: str, batch: str, run_id: str) -> None:
        """Remove a run's mark without committing (the batch is recorded as pending now, which protects it)."""
        a = schema.active_runs
        with self._write() as conn:
            conn.execute(a.delete().where((a.c.slug == slug) & (a.c.batch == batch) & (a.c.run_id == run_id)))

    def live_batches(self) -> set[str]:
        """Keys of batches whose files may not all be named by committed rows yet: not committed, or being
        (re)written by a run now. A run killed while writing counts while its mark may still be alive: until
        ACTIVE_RUN_TTL_S for a process of another machine, not at all once its process is provably gone."""
        b, a = schema.batches, schema.active_runs
        with self._read() as conn:
            pending = {r[0] for r in conn.execute(sa.select(b.c.batch).where(b.c.status != COMMITTED))}
            running = {r[0] for r in conn.execute(sa.select(a.c.batch, a.c.holder).where(
                a.c.started_at > time.time() - ACTIVE_RUN_TTL_S)) if not _holder_gone(r[1])}
        return pending | running

    def _batch_row(self, conn: sa.Connection, slug: str, batch: str) -> Any:
        """The batch's row, locked until the transaction ends (staging and committing one batch serialise);
        an error naming the batch if it was deleted (by `delete` or `drop_table`) while a run was writing."""
        b = schema.batches
        row = conn.execute(sa.select(b.c.status).where((b.c.slug == slug) & (b.c.batch == batch))
                           .with_for_update()).first()
        if row is None:
            raise LookupError(f"table {slug.replace('__', '/')!r} has no batch {batch!r} in {self!r} (deleted "
                              "while this run was writing it?)")
        return row

    def delete_batch(self, rt: RowTable | None, slug: str, batch: str) -> None:
        with self._write() as conn:
            conn.execute(schema.active_runs.delete().where((schema.active_runs.c.slug == slug)
                                                           & (schema.active_runs.c.batch == batch)))
            if rt is not None:
                t = rt.table()
                conn.execute(t.delete().where(t.c._batch == batch))
            conn.execute(schema.staged.delete().where((schema.staged.c.slug == slug)
                                                      & (schema.staged.c.batch == batch)))
            conn.execute(schema.batches.delete().where((schema.batches.c.slug == slug)
                                                       & (schema.batches.c.batch == batch)))

    # -- staging and committing ----------------------------------------------------------------------------
    def stage_column(self, rt: RowTable, batch: str, column: str, records: list[dict[str, Any]],
                     run_id: str | None = None) -> list[str]:
        """Keep a column's records for a batch until the batch commits. Returns the files an earlier,
        uncommitted attempt staged (ours) that neither these records nor the committed rows name."""
        s = schema.staged
        where = (s.c.slug == rt.slug) & (s.c.batch == batch) & (s.c.column == column)
        with self._write() as conn:
            self._batch_row(conn, rt.slug, batch)
            old = conn.execute(sa.select(s.c.records).where(where)).first()
            if old is None:
                conn.execute(s.insert().values(slug=rt.slug, batch=batch, column=column, records=_dumps(records),
                                               run_id=run_id))
                return []
            conn.execute(s.update().where(where).values(records=_dumps(records), run_id=run_id))
            replaced = _replaced(json.loads(old[0]), records)
            if replaced and column in rt.column_types:
                t = rt.table()
                value = t.c[schema.VALUE + column]
                if rt.column_types[column] == schema.FILE_LIST:
                    dest = t.c[schema.DESTINATION + column]
                    committed = {u for v, d in conn.execute(sa.select(value, dest).where(t.c._batch == batch))
                                 for u in files_named(v, d)}
                else:
                    committed = {r[0] for r in conn.execute(sa.select(value).where(
                        (t.c._batch == batch) & value.in_(replaced)))}
                replaced = [u for u in replaced if u not in committed]
        return replaced

    def read_columns(self, rt: RowTable, batch: str, columns: Iterable[str]) -> dict[str, dict[str, dict[str, Any]]]:
        """Each column's records for a batch, by row id: staged ones if staged, else the committed rows. A
        column with neither is left out."""
        columns = list(columns)
        s = schema.staged
        out: dict[str, dict[str, dict[str, Any]]] = {}
        with self._read() as conn:
            for column, text in conn.execute(sa.select(s.c.column, s.c.records).where(
                    (s.c.slug == rt.slug) & (s.c.batch == batch) & s.c.column.in_(columns))):
                out[column] = {r["row_id"]: r for r in json.loads(text)}
            rest = [c for c in columns if c not in out and c in rt.column_types]
            if rest:
                t = rt.table()
                fields = [t.c._row_id]
                for c in rest:
                    fields += [t.c[schema.VALUE + c], t.c[schema.ERROR + c], t.c[schema.ERRORTYPE + c],
                               t.c[schema.VERSION + c]]
                rows = conn.execute(sa.select(*fields).where(t.c._batch == batch).order_by(t.c._pos)).all()
                if rows:
                    media = set(rt.file_columns())
                    for i, c in enumerate(rest):
                        out[c] = {}
                        base = 1 + 4 * i
                        for r in rows:
                            rec = {"row_id": r[0], "value": r[base], "error": r[base + 1],
                                   "errortype": r[base + 2], "version": r[base + 3]}
                            out[c][r[0]] = rec
                    owned = [c for c in rest if c in media]
                    if owned:
                        extra = conn.execute(sa.select(t.c._row_id, *[t.c[schema.OWNED + c] for c in owned],
                                                       *[t.c[schema.DESTINATION + c] for c in owned])
                                             .where(t.c._batch == batch)).all()
                        for r in extra:
                            for j, c in enumerate(owned):
                                out[c][r[0]]["owned"] = bool(r[1 + j])
                                out[c][r[0]]["destination"] = r[1 + len(owned) + j]
        return out

    def commit_batch(self, rt: RowTable, batch: str, run_id: str | None = None, *,
                     rows_from: str | None = None) -> CommitResult:
        """Move every staged column of `batch` into the table's rows, in one transaction, and mark the batch
        committed (and `run_id` no longer writing it). A batch seen for the first time gets its rows
        inserted; a committed one (a re-run, a new column's backfill) has the staged columns updated in
        place. When the column `rows_from` (the first source column) is staged, its records are the batch's
        rows: rows it no longer has are deleted (their files returned as replaced), new ones inserted (a
        view's batch recomputed from a changed video can have more or fewer frames)."""
        s, b, t, a = schema.staged, schema.batches, rt.table(), schema.active_runs
        with self._write() as conn:
            status = self._batch_row(conn, rt.slug, batch).status
            staged = {c: json.loads(text) for c, text in conn.execute(
                sa.select(s.c.column, s.c.records).where((s.c.slug == rt.slug) & (s.c.batch == batch)))}
            staged = {c: recs for c, recs in staged.items() if c in rt.column_types}
            media = set(rt.file_columns())
            replaced: list[str] = []
            if status != COMMITTED:
                rows: dict[str, dict[str, Any]] = {}
                for column, recs in staged.items():
                    for rec in recs:
                        row = rows.get(rec["row_id"])
                        if row is None:
                            row = rows[rec["row_id"]] = {"_row_id": rec["row_id"], "_batch": batch,
                                                         "_idx": _split_row_id(rec["row_id"])}
                        row.update(_fields(column, rec, column in media))
                conn.execute(t.delete().where(t.c._batch == batch))
                if rows:
                    ordered = sorted(rows.values(), key=lambda r: r["_idx"])
                    names = sorted({k for r in ordered for k in r})
                    conn.execute(t.insert(), [{k: r.get(k) for k in names} for r in ordered])
            else:
                if rows_from is not None and rows_from in staged:
                    replaced += self._reshape_rows(conn, rt, batch, staged, rows_from, media)
                for column, recs in staged.items():
                    if column in media:
                        before = conn.execute(sa.select(t.c._row_id, t.c[schema.VALUE + column],
                                                        t.c[schema.OWNED + column], t.c[schema.DESTINATION + column])
                                              .where(t.c._batch == batch)).all()
                        replaced += _replaced([{"row_id": r[0], "value": r[1], "owned": r[2], "destination": r[3]}
                                               for r in before], recs)
                    params = []
                    for rec in recs:
                        p = {"b_" + k: v for k, v in _fields(column, rec, column in media).items()}
                        p["b_rid"] = rec["row_id"]
                        params.append(p)
                    if params:
                        names = [k[2:] for k in params[0] if k != "b_rid"]
                        stmt = t.update().where(t.c._row_id == sa.bindparam("b_rid")).values(
                            {n: sa.bindparam("b_" + n) for n in names})
                        conn.execute(stmt, params)
            num_rows = conn.execute(sa.select(sa.func.count()).select_from(t).where(t.c._batch == batch)).scalar()
            err_cols = [t.c[schema.ERROR + c] for c in rt.column_types]
            num_errors = conn.execute(sa.select(sa.func.count()).select_from(t).where(
                (t.c._batch == batch) & sa.or_(*[c.is_not(None) for c in err_cols]))).scalar() if err_cols else 0
            conn.execute(s.delete().where((s.c.slug == rt.slug) & (s.c.batch == batch)))
            conn.execute(b.update().where((b.c.slug == rt.slug) & (b.c.batch == batch)).values(
                status=COMMITTED, num_rows=num_rows, num_errors=num_errors, committed_at=time.time()))
            # This run's marker, and markers of runs long dead or killed; another run writing now keeps its own.
            mine = (a.c.slug == rt.slug) & (a.c.batch == batch)
            dead = [r[0] for r in conn.execute(sa.select(a.c.run_id, a.c.holder).where(mine)) if _holder_gone(r[1])]
            conn.execute(a.delete().where(mine & ((a.c.run_id == (run_id or "")) | a.c.run_id.in_(dead) | (
                a.c.started_at < time.time() - ACTIVE_RUN_TTL_S))))
            fault_point("mid_commit")  # tests: killed with every statement made and none committed
        return CommitResult(int(num_rows or 0), int(num_errors or 0), replaced)

    def _reshape_rows(self, conn: sa.Connection, rt: RowTable, batch: str, staged: dict[str, list[dict[str, Any]]],
                      rows_from: str, media: set[str]) -> list[str]:
        t = rt.table()
        target = {rec["row_id"] for rec in staged[rows_from]}
        files = [c for c in rt.file_columns()]
        fields = [t.c._row_id] + [f for c in files for f in (t.c[schema.VALUE + c], t.c[schema.OWNED + c],
                                                              t.c[schema.DESTINATION + c])]
        existing = conn.execute(sa.select(*fields).where(t.c._batch == batch)).all()
        gone = [r for r in existing if r[0] not in target]
        replaced = [u for r in gone for i in range(len(files)) if r[2 + 3 * i]
                    for u in files_named(r[1 + 3 * i], r[3 + 3 * i])]
        if gone:
            conn.execute(t.delete().where(t.c._row_id.in_([r[0] for r in gone])))
        have = {r[0] for r in existing}
        new_rows: dict[str, dict[str, Any]] = {}
        for column, recs in staged.items():
            for rec in recs:
                if rec["row_id"] in have:
                    continue
                row = new_rows.setdefault(rec["row_id"], {"_row_id": rec["row_id"], "_batch": batch,
                                                          "_idx": _split_row_id(rec["row_id"])})
                row.update(_fields(column, rec, column in media))
        if new_rows:
            ordered = sorted(new_rows.values(), key=lambda r: r["_idx"])
            names = sorted({k for r in ordered for k in r})
            conn.execute(t.insert(), [{k: r.get(k) for k in names} for r in ordered])
        return replaced

    # -- reading rows ----------------------------------------------------------------------------------------
    def owned_files(self, rt: RowTable | None, slug: str, *, batch: str | None = None,
                    column: str | None = None) -> list[tuple[str, str | None]]:
        """(uri, recorded destination) of every file we wrote for the table (or one batch or column): from
        its rows and from records staged by runs that have not committed."""
        out: list[tuple[str, str | None]] = []
        with self._read() as conn:
            if rt is not None:
                t = rt.table()
                for c in rt.file_columns():
                    if column is not None and c != column:
                        continue
                    q = sa.select(t.c[schema.VALUE + c], t.c[schema.DESTINATION + c]).where(
                        (t.c[schema.OWNED + c] == sa.true()) & t.c[schema.VALUE + c].is_not(None))
                    if batch is not None:
                        q = q.where(t.c._batch == batch)
                    out += [(u, r[1]) for r in conn.execute(q) for u in files_named(r[0], r[1])]
            s = schema.staged
            q = sa.select(s.c.records).where(s.c.slug == slug)
            if batch is not None:
                q = q.where(s.c.batch == batch)
            if column is not None:
                q = q.where(s.c.column == column)
            for (text,) in conn.execute(q):
                out += [(u, r.get("destination")) for r in json.loads(text) if r.get("owned")
                        for u in files_named(r.get("value"), r.get("destination"))]
        return out

    def referenced_uris(self) -> Iterator[str]:
        """Every media URI any row or staged record of any table in this database refers to."""
        with self._read() as conn:
            for row in conn.execute(sa.select(schema.row_tables)):
                rt = self._row_table_of(row)
                t = rt.table()
                for c in rt.media_columns():
                    col = t.c[schema.VALUE + c]
                    for (uri,) in conn.execute(sa.select(col).where(col.is_not(None))):
                        yield uri
                for c in rt.file_columns():
                    if c not in rt.media_columns():
                        col, dest = t.c[schema.VALUE + c], t.c[schema.DESTINATION + c]
                        for value, d in conn.execute(sa.select(col, dest).where(col.is_not(None))):
                            yield from files_named(value, d)
            for (text,) in conn.execute(sa.select(schema.staged.c.records)):
                for r in json.loads(text):
                    if isinstance(r.get("value"), str) and r["value"]:
                        yield r["value"]
                    elif r.get("destination"):
                        yield from files_named(r.get("value"), r["destination"])

    def count(self, rt: RowTable | None, where: Any = None) -> int:
        if rt is None:
            return 0
        t = rt.table()
        q = sa.select(sa.func.count()).select_from(t)
        if where is not None:
            q = q.where(self.compile(rt, t, where))
        with self._read() as conn:
            return int(conn.execute(q).scalar() or 0)

    def select(self, rt: RowTable, items: Sequence[Any], *, where: Any = None,
               order: Sequence[tuple[Any, bool]] = (), limit: int | None = None) -> list[Sequence[Any]]:
        """Rows of `items` (expressions with a SQL form, see `compile`), filtered, ordered (insertion order
        last) and limited in SQL."""
        t = rt.table()
        q = sa.select(*[self.compile(rt, t, e) for e in items]) if items else sa.select(t.c._row_id)
        if where is not None:
            q = q.where(self.compile(rt, t, where))
        for expr, asc in order:
            if self._is_json(rt, expr):
                raise NotSQL(expr)
            c = self.compile(rt, t, expr)
            q = q.order_by(c.asc().nulls_last() if asc else c.desc().nulls_first())  # one order on both databases
        q = q.order_by(t.c._pos)
        if limit is not None:
            q = q.limit(limit)
        with self._read() as conn:
            result = conn.execute(q)
            if all(c.type.result_processor(self.engine.dialect, None) is None for c in q.selected_columns):
                # Values come back from the driver as they are stored (integers, floats, text): the DBAPI's
                # plain tuples, without a SQLAlchemy Row each (half the time of a million-row select).
                return result.cursor.fetchall()
            return result.all()

    def compiles(self, rt: RowTable, expr: Any, *, order: bool = False) -> bool:
        """Whether `expr` has a SQL form (as a filter, or with `order` as an ordering)."""
        try:
            if order and self._is_json(rt, expr):
                return False
            self.compile(rt, rt.table(), expr)
        except NotSQL:
            return False
        return True

    @staticmethod
    def _is_json(rt: RowTable, expr: Any) -> bool:
        from pxt_assets import spec as s

        return isinstance(expr, s.ColumnRef) and rt.column_types.get(expr.name) in ("Json", schema.FILE_LIST)

    def compile(self, rt: RowTable, t: sa.Table, expr: Any) -> Any:
        """An expression as SQL: stored values and their `.fileurl`, `.errormsg`, `.errortype`, literals,
        comparisons and `&`, `|`, `~`. Anything else raises NotSQL."""
        from pxt_assets import spec as s

        if isinstance(expr, s.ColumnRef):
            return self._field(rt, t, schema.VALUE, expr.name)
        if isinstance(expr, s.Prop) and isinstance(expr.of, s.ColumnRef):
            prefix = {"fileurl": schema.VALUE, "errormsg": schema.ERROR, "errortype": schema.ERRORTYPE}.get(expr.prop)
            if prefix is None:
                raise NotSQL(expr)
            return self._field(rt, t, prefix, expr.of.name)
        if isinstance(expr, s.Literal):
            return sa.literal(expr.value)
        if isinstance(expr, s.Compare):
            left = self.compile(rt, t, expr.left)
            right_expr = expr.right
            if self._is_json(rt, expr.left) and not (isinstance(right_expr, s.Literal) and right_expr.value is None):
                raise NotSQL(expr)  # PostgreSQL's json has no = or <: compared in Python
            if isinstance(right_expr, s.Literal) and right_expr.value is None:
                if expr.op == "==":
                    return left.is_(None)
                if expr.op == "!=":
                    return left.is_not(None)
                raise NotSQL(expr)
            if expr.op == "in":
                return left.in_(list(right_expr.value))
            right = self.compile(rt, t, right_expr)
            return {"==": left == right, "!=": left != right, "<": left < right, "<=": left <= right,
                    ">": left > right, ">=": left >= right}[expr.op]
        if isinstance(expr, s.BoolOp):
            parts = [self.compile(rt, t, a) for a in expr.args]
            if expr.op == "not":
                return sa.not_(parts[0])
            return sa.and_(*parts) if expr.op == "and" else sa.or_(*parts)
        raise NotSQL(expr)

    def _field(self, rt: RowTable, t: sa.Table, prefix: str, column: str) -> Any:
        name = prefix + column
        if name not in t.c:
            # a column defined since the last batch: no row has it yet
            return sa.null()
        col = t.c[name]
        if not self.is_sqlite and isinstance(col.type, sa.Text):
            # byte order, as SQLite and Python compare strings (not the cluster's locale)
            return col.collate("C")
        return col

    # -- small values ----------------------------------------------------------------------------------------
    def get_value(self, key: str) -> str | None:
        with self._read() as conn:
            return conn.execute(sa.select(schema.kv.c.value).where(schema.kv.c.key == key)).scalar()

    def set_value(self, key: str, value: str) -> None:
        with self._write() as conn:
            if conn.execute(schema.kv.update().where(schema.kv.c.key == key).values(value=value)).rowcount == 0:
                conn.execute(schema.kv.insert().values(key=key, value=value))

    # -- watched prefixes (pxt_assets.watch) ------------------------------------------------------------------
    def record_watch_batches(self, slug: str, watch: str, seq: int,
                             batches: Sequence[tuple[str, list[dict[str, Any]], Any, Sequence[str]]]) -> None:
        """Record the batches one tick of a watch planned, as (key, rows, source, names of the objects taken),
        with the names, in one transaction. A name the watch already took (another process's tick took it
        first) fails the whole call, and nothing is recorded."""
        w = schema.watch_taken
        now = time.time()
        with self._write() as conn:
            for key, rows, source, names in batches:
                conn.execute(schema.batches.insert().values(
                    slug=slug, batch=key, status=PENDING, manifest=_dumps(rows),
                    source=None if source is None else _dumps(source), created_at=now))
                conn.execute(w.insert(), [{"slug": slug, "watch": watch, "name": n, "batch": key, "seq": seq}
                                          for n in names])

    def record_watch_taken(self, slug: str, watch: str, seq: int, taken: Iterable[tuple[str, str]]) -> int:
        """Record (name, batch) pairs as taken by a watch, skipping names it has already taken. The number
        recorded."""
        w = schema.watch_taken
        with self._write() as conn:
            have = {r[0] for r in conn.execute(sa.select(w.c.name).where((w.c.slug == slug) & (w.c.watch == watch)))}
            new = {n: b for n, b in taken if n not in have}
            if new:
                conn.execute(w.insert(), [{"slug": slug, "watch": watch, "name": n, "batch": b, "seq": seq}
                                          for n, b in new.items()])
        return len(new)

    def watch_taken(self, slug: str, watch: str, names: Sequence[str]) -> set[str]:
        """The names among `names` that the watch has taken: one query per 1,000 names."""
        w = schema.watch_taken
        out: set[str] = set()
        with self._read() as conn:
            for i in range(0, len(names), 1000):
                out.update(r[0] for r in conn.execute(sa.select(w.c.name).where(
                    (w.c.slug == slug) & (w.c.watch == watch) & w.c.name.in_(names[i:i + 1000]))))
        return out

    def watch_has_taken(self, slug: str, watch: str) -> bool:
        w = schema.watch_taken
        with self._read() as conn:
            return conn.execute(sa.select(w.c.name).where((w.c.slug == slug) & (w.c.watch == watch))
                                .limit(1)).first() is not None

    def watch_unconfirmed(self, slug: str, watch: str, after_seq: int) -> list[tuple[str, int, list[dict[str, Any]]]]:
        """(key, seq, rows) of the pending batches that ticks numbered above `after_seq` planned for the watch,
        oldest first: Dagster never kept those ticks' cursors, so their runs may never have been requested."""
        w, b = schema.watch_taken, schema.batches
        with self._read() as conn:
            seqs: dict[str, int] = {}
            for key, seq in conn.execute(sa.select(w.c.batch, w.c.seq).distinct().where(
                    (w.c.slug == slug) & (w.c.watch == watch) & (w.c.seq > after_seq))):
                seqs[key] = max(seq, seqs.get(key, seq))
            if not seqs:
                return []
            found = conn.execute(sa.select(b.c.batch, b.c.manifest).where(
                (b.c.slug == slug) & b.c.batch.in_(list(seqs)) & (b.c.status != COMMITTED))).all()
        return sorted((key, seqs[key], json.loads(manifest)) for key, manifest in found)

    def batches_from(self, slug: str, source: Any) -> list[tuple[str, list[dict[str, Any]]]]:
        """(key, rows) of every batch of a table whose recorded source is `source`."""
        b = schema.batches
        with self._read() as conn:
            found = conn.execute(sa.select(b.c.batch, b.c.source, b.c.manifest).where(
                (b.c.slug == slug) & b.c.source.is_not(None))).all()
        return [(key, json.loads(manifest)) for key, src, manifest in found if json.loads(src) == source]


def _holder_gone(holder: str | None) -> bool:
    """Whether the process that marked a run as writing is provably gone (see cache.process_alive)."""
    if not holder:
        return False  # marked by a release that did not record it: only the age of the mark counts
    try:
        return not process_alive(json.loads(holder))
    except (ValueError, TypeError):
        return False


def _fields(column: str, rec: dict[str, Any], media: bool) -> dict[str, Any]:
    out = {schema.VALUE + column: rec.get("value"), schema.ERROR + column: rec.get("error"),
           schema.ERRORTYPE + column: rec.get("errortype"), schema.VERSION + column: rec.get("version")}
    if media:
        out[schema.DESTINATION + column] = rec.get("destination")
        out[schema.OWNED + column] = bool(rec.get("owned"))
    return out


def files_named(value: Any, destination: str | None) -> list[str]:
    """The files a stored value names: a media value is its URI; a file list (Json) names every string in it
    under its recorded destination (texts inline in it are not files)."""
    if isinstance(value, str):
        if value.startswith(("[", "{")) and destination:  # a file list read back as text (SQLite JSON)
            try:
                value = json.loads(value)
            except ValueError:
                return [value]
        else:
            return [value] if value else []
    if not destination or value is None:
        return []
    out: list[str] = []

    for item in value if isinstance(value, list) else []:
        if isinstance(item, dict):
            for key in FILE_KEYS:  # only an iterator's media outputs: text that names a file is just text
                uri = item.get(key)
                if isinstance(uri, str) and uri.startswith(destination):
                    out.append(uri)
    return out


#: the outputs of frame_iterator, audio_splitter and document_splitter that are files
FILE_KEYS = ("frame", "audio_segment", "image")


def _replaced(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[str]:
    keep = {u for r in after for u in files_named(r.get("value"), r.get("destination"))}
    return [u for r in before if r.get("owned") for u in files_named(r.get("value"), r.get("destination"))
            if u not in keep]


# -- one store per database per process ---------------------------------------------------------------------

_STORES: dict[tuple[str, int], RowStore] = {}
_STORES_LOCK = threading.Lock()


def _dispose_all_in_child() -> None:
    for store in list(_STORES.values()):
        store.engine.dispose(close=False)  # the parent's connections are the parent's (SQLAlchemy's advice)
    _STORES.clear()
    _CHECKED_HOMES.clear()


os.register_at_fork(after_in_child=_dispose_all_in_child)


def for_settings(settings) -> RowStore:
    """The row store for `settings` (`db_url`, else SQLite under the home), one per database per process. A
    home written by the release that kept rows in Parquet files is migrated into it the first time it is
    opened."""
    url = settings.db_url or default_url(settings.home)
    pid = os.getpid()
    store = _STORES.get((url, pid))
    home_key = (url, str(settings.home), pid)
    if store is not None and home_key in _CHECKED_HOMES:
        return store
    with _STORES_LOCK:
        store = _STORES.get((url, pid))
        if store is None:
            store = _STORES[(url, pid)] = RowStore(url)
        if home_key not in _CHECKED_HOMES:
            from pxt_assets.rowstore import migrate

            migrate.migrate_home_if_needed(store, pathlib.Path(settings.home))
            _CHECKED_HOMES.add(home_key)
    return store


_CHECKED_HOMES: set[tuple[str, str, int]] = set()
