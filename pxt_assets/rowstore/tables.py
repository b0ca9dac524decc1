"""Row tables' DDL: the SQL table of each media table, created, widened with new columns, narrowed, dropped."""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa

from pxt_assets.rowstore import schema
from pxt_assets.rowstore.engine import Database
from pxt_assets.rowstore.rows import dumps
from pxt_assets.rowstore.schema import RowTable


def _row_table_of(row: Any) -> RowTable:
    if row.next_column_id is None:
        raise RuntimeError(f"the row table of {row.path!r} in the database is as a release before column ids "
                           "wrote it: open the database with this release to move it (column_ids.py)")
    return _parsed(row.slug, row.path, row.sql_name, row.columns, row.next_column_id)


@functools.lru_cache(maxsize=512)
def _parsed(slug: str, path: str, sql_name: str, columns: str, next_id: int) -> RowTable:
    """A row table from its record, parsed once per version of the record (the same RowTable object, so its
    SQLAlchemy Table is built once too)."""
    return RowTable(slug, path, sql_name, tuple((n, t, int(i)) for n, t, i in json.loads(columns)), next_id)


def row_tables(conn: sa.Connection) -> list[RowTable]:
    """Every row table in the database."""
    return [_row_table_of(row) for row in conn.execute(sa.select(schema.row_tables))]


def record_row_table(conn: sa.Connection, rt: RowTable) -> None:
    """Create a row table's SQL table and record it."""
    rt.table().create(conn)
    conn.execute(schema.row_tables.insert().values(
        slug=rt.slug, path=rt.path, sql_name=rt.sql_name, columns=_columns_json(rt),
        next_column_id=rt.next_id))


def _columns_json(rt: RowTable) -> str:
    return dumps([list(c) for c in rt.columns])


class Tables(Database):
    def row_table(self, slug: str) -> RowTable | None:
        """The SQL table holding `slug`'s rows as it is now, or None if it has none."""
        with self._read() as conn:
            row = self._row_table_row(conn, slug)
        return None if row is None else _row_table_of(row)

    @staticmethod
    def _row_table_row(conn: sa.Connection, slug: str) -> Any:
        return conn.execute(sa.select(schema.row_tables).where(schema.row_tables.c.slug == slug)).first()

    @contextlib.contextmanager
    def _changing(self, slug: str) -> Iterator[tuple[sa.Connection, Any]]:
        """A transaction changing `slug`'s row table (serialised with any other), and its record (or None)."""
        with self._write() as conn:
            self._lock_key(conn, "schema:" + slug)
            yield conn, self._row_table_row(conn, slug)

    @staticmethod
    def _set_row_columns(conn: sa.Connection, rt: RowTable) -> None:
        conn.execute(schema.row_tables.update().where(schema.row_tables.c.slug == rt.slug).values(
            columns=_columns_json(rt), next_column_id=rt.next_id))

    def ensure_row_table(self, slug: str, path: str, columns: Sequence[tuple[str, str]]) -> RowTable:
        """The SQL table for a media table, created or widened (new columns added) to hold `columns`
        (name, type name). Columns it has and `columns` lacks are kept (dropping is `drop_column`'s job).

        Remembered per process until this process changes the table's columns. Known limit: a column another
        process dropped and added again under the same name has a new id, which this process sees once it
        restarts (to be keyed by the catalog's version)."""
        columns = tuple(columns)
        key = (slug, columns)
        cached = self._ensured.get(key)
        if cached is not None:
            return cached
        with self._changing(slug) as (conn, row):
            if row is None:
                rt = RowTable.new(slug, path, columns)
                record_row_table(conn, rt)
            else:
                rt = _row_table_of(row)
                known = rt.column_types
                missing = [(n, t) for n, t in columns if n not in known]
                # a column recorded as a plain value that is now media (a migrated table) gains its file fields
                widened = [(n, t) for n, t in columns if n in known and t in schema.WRITES_FILES
                           and known[n] not in schema.WRITES_FILES]
                if missing or widened:
                    rt = rt.with_columns(missing + widened)
                    existing = {c["name"] for c in sa.inspect(conn).get_columns(rt.sql_name)}
                    for n, t in missing + widened:
                        for col in schema.field_columns(rt.column_id(n), t):
                            if col.name not in existing:
                                self._add_sql_column(conn, rt.sql_name, col)
                    self._set_row_columns(conn, rt)
        self._ensured[key] = rt
        return rt

    def for_spec(self, spec) -> RowTable:
        """The row table of a `spec.TableSpec`, holding (at least) its current columns."""
        return self.ensure_row_table(spec.slug, spec.display_path,
                                     [(c.name, c.storage_type) for c in spec.columns.values()])

    def drop_row_column(self, slug: str, column: str) -> None:
        """Remove a column's fields from its row table (and staged records of it)."""
        self._ensured.clear()
        with self._changing(slug) as (conn, row):
            conn.execute(schema.staged.delete().where((schema.staged.c.slug == slug)
                                                      & (schema.staged.c.column == column)))
            if row is None:
                return
            rt = _row_table_of(row)
            if column not in rt.column_types:
                return
            existing = {c["name"] for c in sa.inspect(conn).get_columns(rt.sql_name)}
            for _, name in rt.fields(column):
                if name in existing:
                    conn.exec_driver_sql(f"ALTER TABLE {self._q(rt.sql_name)} DROP COLUMN {self._q(name)}")
            self._set_row_columns(conn, rt.without(column))

    def drop_row_table(self, slug: str) -> None:
        """Remove every row, batch and staged record of a table, and its SQL table."""
        self._ensured.clear()
        with self._changing(slug) as (conn, row):
            if row is not None:
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {self._q(row.sql_name)}")
                conn.execute(schema.row_tables.delete().where(schema.row_tables.c.slug == slug))
            for t in (schema.staged, schema.active_runs, schema.batches, schema.watch_taken):
                conn.execute(t.delete().where(t.c.slug == slug))
