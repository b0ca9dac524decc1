"""Row tables' DDL: the SQL table of each media table, created, widened with new columns, narrowed, dropped."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa

from pxt_assets.rowstore import schema
from pxt_assets.rowstore.engine import Database
from pxt_assets.rowstore.rows import dumps
from pxt_assets.rowstore.schema import RowTable


def _row_table_of(row: Any) -> RowTable:
    return RowTable(row.slug, row.path, row.sql_name, tuple((n, t) for n, t in json.loads(row.columns)))


def row_tables(conn: sa.Connection) -> list[RowTable]:
    """Every row table in the database."""
    return [_row_table_of(row) for row in conn.execute(sa.select(schema.row_tables))]


def record_row_table(conn: sa.Connection, rt: RowTable) -> None:
    """Create a row table's SQL table and record it."""
    rt.table().create(conn)
    conn.execute(schema.row_tables.insert().values(
        slug=rt.slug, path=rt.path, sql_name=rt.sql_name, columns=dumps([list(c) for c in rt.columns])))


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
    def _set_row_columns(conn: sa.Connection, slug: str, columns: Sequence[Sequence[str]]) -> None:
        conn.execute(schema.row_tables.update().where(schema.row_tables.c.slug == slug).values(
            columns=dumps([list(c) for c in columns])))

    def ensure_row_table(self, slug: str, path: str, columns: Sequence[tuple[str, str]]) -> RowTable:
        """The SQL table for a media table, created or widened (new columns added) to hold `columns`
        (name, type name). Columns it has and `columns` lacks are kept (dropping is `drop_column`'s job)."""
        key = (slug, tuple(columns))
        cached = self._ensured.get(key)
        if cached is not None:
            return cached
        with self._changing(slug) as (conn, row):
            if row is None:
                rt = RowTable(slug, path, schema.sql_name_for(slug), tuple(columns))
                record_row_table(conn, rt)
            else:
                rt = _row_table_of(row)
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
                    self._set_row_columns(conn, slug, rt.columns)
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
            existing = {c["name"] for c in sa.inspect(conn).get_columns(rt.sql_name)}
            for prefix in (schema.VALUE, schema.ERROR, schema.ERRORTYPE, schema.VERSION, schema.DESTINATION,
                           schema.OWNED):
                if prefix + column in existing:
                    conn.exec_driver_sql(f"ALTER TABLE {self._q(rt.sql_name)} DROP COLUMN {self._q(prefix + column)}")
            self._set_row_columns(conn, slug, [c for c in rt.columns if c[0] != column])

    def drop_row_table(self, slug: str) -> None:
        """Remove every row, batch and staged record of a table, and its SQL table."""
        self._ensured.clear()
        with self._changing(slug) as (conn, row):
            if row is not None:
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {self._q(row.sql_name)}")
                conn.execute(schema.row_tables.delete().where(schema.row_tables.c.slug == slug))
            for t in (schema.staged, schema.active_runs, schema.batches, schema.watch_taken):
                conn.execute(t.delete().where(t.c.slug == slug))
