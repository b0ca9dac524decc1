"""The database connection: URLs, engines, transactions, the upsert every writer shares, one store per
database per process."""

from __future__ import annotations

import contextlib
import os
import pathlib
import threading
import zlib
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite

from pxt_assets import fsutil
from pxt_assets.rowstore import versions

DB_FILE = "pxt.db"

_SECRET_QUERY_KEYS = frozenset({"password", "sslpassword", "passfile", "sslkey"})


def default_url(home: pathlib.Path) -> str:
    return f"sqlite:///{pathlib.Path(home).absolute() / DB_FILE}"


def redact(url: str | sa.URL) -> str:
    """A database URL fit to print: the password hidden, in the URL and in its query string."""
    try:
        parsed = sa.make_url(url)
        query = {k: ("***" if k.lower() in _SECRET_QUERY_KEYS else v) for k, v in parsed.query.items()}
        return parsed.set(query=query).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy understands: show only its scheme
        return str(url).split("://", 1)[0] + "://***"


def _insert(conn: sa.Connection, table: sa.Table) -> sqlite.Insert | postgresql.Insert:
    return (sqlite.insert if conn.dialect.name == "sqlite" else postgresql.insert)(table)


def upsert(conn: sa.Connection, table: sa.Table, keys: dict[str, Any], values: dict[str, Any]) -> None:
    """Write one row of `table`: `keys` (its primary key) with `values`, inserted or, if it exists, updated, in
    one statement (INSERT ... ON CONFLICT DO UPDATE, on SQLite and PostgreSQL alike)."""
    conn.execute(_insert(conn, table).values(**keys, **values).on_conflict_do_update(
        index_elements=list(keys), set_=values))


def upsert_many(conn: sa.Connection, table: sa.Table, keys: list[str], rows: list[dict[str, Any]]) -> None:
    """`upsert` for many rows with the same columns, in one statement executed with every row's parameters
    (one compiled statement, not one per row: a step's group commit of file intents writes hundreds)."""
    if not rows:
        return
    shape = (conn.dialect.name, table.name, tuple(keys), tuple(rows[0]))
    stmt = _UPSERTS.get(shape)
    if stmt is None:  # built once per shape: building and cache-keying a construct costs more than running it
        stmt = _insert(conn, table)
        stmt = _UPSERTS[shape] = stmt.on_conflict_do_update(
            index_elements=keys, set_={c: stmt.excluded[c] for c in rows[0] if c not in keys})
    conn.execute(stmt, rows)


_UPSERTS: dict[tuple[str, str, tuple[str, ...], tuple[str, ...]], Any] = {}


def insert_new(conn: sa.Connection, table: sa.Table, values: dict[str, Any]) -> bool:
    """Insert one row unless `table` has one with its key (INSERT ... ON CONFLICT DO NOTHING): whether it did."""
    # preserve_rowcount: SQLAlchemy reports an INSERT's row count only when asked (psycopg gives -1 otherwise)
    stmt = _insert(conn, table).values(**values).on_conflict_do_nothing().execution_options(preserve_rowcount=True)
    return conn.execute(stmt).rowcount == 1


def _make_engine(url: sa.URL) -> sa.Engine:
    # hide_parameters: a failed statement's message would show the values it wrote (URLs with signatures)
    if url.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=8, hide_parameters=True)
    db = url.database
    if db and db != ":memory:":
        fsutil.make_dirs(pathlib.Path(db).parent)
    engine = sa.create_engine(url, connect_args={"timeout": 120, "check_same_thread": False},
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


class Database:
    """One database's engine and transactions; the row store's parts (catalog, tables, batches, ...) build
    on it."""

    def __init__(self, url: str) -> None:
        self.url = sa.make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self.engine = _make_engine(self.url)
        #: the schema steps this open ran (versions.py): empty when the database was at the current version
        self.upgraded: list[int] = []
        # A SQLite file is opened under its folder's set-up lock: a new file's first connection switches it to
        # WAL, which needs the file to itself (two processes switching at once: "database is locked", at once).
        with self._setup_lock():
            with self._read() as conn:
                if versions.is_current(conn, repr(self)):
                    return
            # A new database, or one of an earlier release: set up or brought to the current version under the
            # schema lock, so processes opening it at once do it one after another (the others find it done).
            with self._write() as conn:
                self._lock_key(conn, "schema")
                self.upgraded = versions.upgrade(conn, repr(self))

    def _setup_lock(self) -> contextlib.AbstractContextManager:
        db = self.url.database
        if not self.is_sqlite or not db or db == ":memory:":
            return contextlib.nullcontext()
        return fsutil.setup_lock(pathlib.Path(db).absolute().parent)

    def __repr__(self) -> str:
        return f"RowStore({redact(self.url)})"

    @contextlib.contextmanager
    def _write(self, durable: bool = True) -> Iterator[sa.Connection]:
        """A write transaction. `durable=False`: its commit returns without waiting for the log to reach the
        disk (SQLite: synchronous=NORMAL for it; PostgreSQL: synchronous_commit off). It is as atomic and as
        visible to other connections at once; only an OS crash or power cut can lose it, and then only until
        the next durable commit, which syncs the log up to and past it. For records whose loss costs nothing
        but a leak (the write-intent journal: a file it does not name is never collected)."""
        with self.engine.connect() as conn:
            conn.execution_options(pxt_write=True)
            raw = None
            if not durable and self.is_sqlite:
                raw = conn.connection.dbapi_connection  # outside any transaction (a PRAGMA's place)
                raw.execute("PRAGMA synchronous=NORMAL")
            try:
                with conn.begin():
                    if not durable and not self.is_sqlite:
                        conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
                    yield conn
            finally:
                if raw is not None:
                    raw.execute("PRAGMA synchronous=FULL")  # as every other transaction expects

    @contextlib.contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        with self.engine.connect() as conn:
            yield conn

    def _lock_key(self, conn: sa.Connection, name: str) -> None:
        """Serialise writers of one name (schema changes) on PostgreSQL; SQLite's write lock already does."""
        if not self.is_sqlite:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": zlib.crc32(name.encode())})

    def _add_sql_column(self, conn: sa.Connection, table: str, col: sa.Column) -> None:
        spec = sa.schema.CreateColumn(col).compile(dialect=self.engine.dialect)
        conn.exec_driver_sql(f"ALTER TABLE {self._q(table)} ADD COLUMN {spec}")

    def _q(self, name: str) -> str:
        return self.engine.dialect.identifier_preparer.quote(name)

    def dispose(self) -> None:
        self.engine.dispose()


# -- one store per database per process ---------------------------------------------------------------------

STORES: dict[tuple[str, int], Database] = {}
CHECKED_HOMES: set[tuple[str, str, int]] = set()  # (url, home, pid): homes checked for files to migrate
STORES_LOCK = threading.Lock()


def _dispose_all_in_child() -> None:
    for store in list(STORES.values()):
        store.engine.dispose(close=False)  # the parent's connections are the parent's (SQLAlchemy's advice)
    STORES.clear()
    CHECKED_HOMES.clear()


os.register_at_fork(after_in_child=_dispose_all_in_child)
