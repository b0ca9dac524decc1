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


class TableGone(LookupError):
    """A catalog table is not there any more: dropped, or dropped and created again (another identity),
    since the caller read it."""

    def __init__(self, path: str, replaced: bool) -> None:
        super().__init__(f"table {path!r} was {'dropped and created again' if replaced else 'dropped'}")
        self.path, self.replaced = path, replaced


def row_columns(spec) -> list[tuple[str, str]]:
    """The (name, type name) a `spec.TableSpec`'s row table holds."""
    return [(c.name, c.storage_type) for c in spec.stored_columns()]


def catalog_columns(conn: sa.Connection, path: str) -> set[str]:
    """The column names of the catalog's table at `path` (none if there is none)."""
    found = catalog_columns_or_none(conn, path)
    return found if found is not None else set()


def catalog_columns_or_none(conn: sa.Connection, path: str) -> set[str] | None:
    """The column names of the catalog's table at `path`, or None if the catalog has no table there."""
    text = conn.execute(sa.select(schema.tables.c.doc).where(schema.tables.c.path == path)).scalar()
    return {c.get("name") for c in json.loads(text).get("columns", [])} if text else None


def check_catalog_identity(conn: sa.Connection, path: str, table_id: str) -> None:
    """Raise TableGone unless the catalog's table at `path` is the one with identity `table_id`."""
    found = conn.execute(sa.select(schema.tables.c.table_id).where(schema.tables.c.path == path)).first()
    if found is None or found[0] != table_id:
        raise TableGone(path, replaced=found is not None)


def _fields_to_add(rt: RowTable, columns: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The columns (name, type name) whose fields `rt` lacks: new ones, and those it records as a plain
    value that now write files (a migrated table's media) and so gain d_ / o_ fields."""
    known = rt.column_types
    return [(n, t) for n, t in columns
            if n not in known or (t in schema.WRITES_FILES and known[n] not in schema.WRITES_FILES)]


class Tables(Database):
    def row_table(self, slug: str) -> RowTable | None:
        """The SQL table holding `slug`'s rows as it is now, or None if it has none."""
        with self._read() as conn:
            row = self._row_table_row(conn, slug)
        return None if row is None else _row_table_of(row)

    @contextlib.contextmanager
    def reading(self, rt: RowTable) -> Iterator[None]:
        """Around reads of `rt`'s rows: if they fail because the row table is not `rt` any more (another
        process dropped it, or a column of it, meanwhile), TableGone rather than the database's error, so the
        caller can look at the table again."""
        try:
            yield
        except sa.exc.DBAPIError:
            if self.row_table(rt.slug) == rt:
                raise
            raise TableGone(rt.path, replaced=False) from None

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

    def ensure_row_table(self, slug: str, path: str, columns: Sequence[tuple[str, str]], *,
                         table_id: str | None = None) -> RowTable:
        """The SQL table for a media table, created or widened (new columns added) to hold `columns`
        (name, type name). Columns it has and `columns` lacks are kept (dropping is `drop_column`'s job).

        Its record is read at every call (one lookup, no lock unless something is missing): another process
        may have dropped the table, or a column of it, or dropped and created it again, since this one last
        used it. `table_id` (a catalog table's identity): the row table is made or widened only while the
        catalog holds that table, else `TableGone`, so a handle on a dropped table never brings its rows
        table back. A catalog table's row table only gains columns its catalog document has: a caller holding
        the table as it was (a run whose definitions were loaded before another process dropped a column)
        never brings a dropped column's fields back; the row table it gets lacks that column."""
        with self._read() as conn:
            row = self._row_table_row(conn, slug)
        if row is not None and not _fields_to_add(_row_table_of(row), columns):
            return _row_table_of(row)
        with self._changing(slug) as (conn, row):
            if table_id is not None:
                check_catalog_identity(conn, path, table_id)
            in_catalog = catalog_columns_or_none(conn, path)
            if in_catalog is not None:
                columns = [(n, t) for n, t in columns if n in in_catalog]
            return self._widen(conn, slug, path, columns, row)

    def _widen(self, conn: sa.Connection, slug: str, path: str, columns: Sequence[tuple[str, str]], row: Any,
               fresh: Sequence[str] = (), gone: Sequence[str] = ()) -> RowTable:
        """Within a transaction changing `slug`'s row table (`row`: its record, or None): create it, or add
        the fields of `columns` it lacks. `fresh`: columns new to the table, whose fields it must not keep
        (the remains of a dropped column of that name, whose drop has not finished): dropped, and the column
        added again with a new id, empty. `gone`: columns the table no longer has: their fields and staged
        records dropped."""
        if row is None:
            rt = RowTable.new(slug, path, columns)
            record_row_table(conn, rt)
            return rt
        rt = _row_table_of(row)
        stale = [n for n in (*fresh, *gone) if n in rt.column_types]
        for name in stale:
            conn.execute(schema.staged.delete().where((schema.staged.c.slug == slug)
                                                      & (schema.staged.c.column == name)))
            self._drop_fields(conn, rt, name)
            rt = rt.without(name)
        todo = _fields_to_add(rt, columns)
        if not todo:
            if stale:
                self._set_row_columns(conn, rt)
            return rt
        rt = rt.with_columns(todo)
        existing = {c["name"] for c in sa.inspect(conn).get_columns(rt.sql_name)}
        for n, t in todo:
            for col in schema.field_columns(rt.column_id(n), t):
                if col.name not in existing:
                    self._add_sql_column(conn, rt.sql_name, col)
        self._set_row_columns(conn, rt)
        return rt

    def _drop_fields(self, conn: sa.Connection, rt: RowTable, column: str) -> None:
        """Drop a column's SQL fields from its row table (the record is the caller's to update)."""
        existing = {c["name"] for c in sa.inspect(conn).get_columns(rt.sql_name)}
        for _, name in rt.fields(column):
            if name in existing:
                conn.exec_driver_sql(f"ALTER TABLE {self._q(rt.sql_name)} DROP COLUMN {self._q(name)}")

    def for_spec(self, spec, *, table_id: str | None = None) -> RowTable:
        """The row table of a `spec.TableSpec`, holding (at least) its current columns (`table_id`: see
        ensure_row_table)."""
        return self.ensure_row_table(spec.slug, spec.display_path, row_columns(spec), table_id=table_id)

    def drop_row_column(self, slug: str, column: str, *, unless_in_catalog: str | None = None) -> None:
        """Remove a column's fields from its row table (and staged records of it). `unless_in_catalog`: the
        catalog path of its table; nothing is removed if the catalog's table there has a column of that name
        (added again since its drop began: the fields are the new column's now)."""
        with self._changing(slug) as (conn, row):
            if unless_in_catalog is not None and column in catalog_columns(conn, unless_in_catalog):
                return
            conn.execute(schema.staged.delete().where((schema.staged.c.slug == slug)
                                                      & (schema.staged.c.column == column)))
            if row is None:
                return
            rt = _row_table_of(row)
            if column not in rt.column_types:
                return
            self._drop_fields(conn, rt, column)
            self._set_row_columns(conn, rt.without(column))

    def drop_row_table(self, slug: str, *, catalog_path: str | None = None, table_id: str | None = None) -> bool:
        """Remove every row, batch and staged record of a table, and its SQL table; with `catalog_path`,
        its catalog entry too, in the same transaction (no process sees the one without the other). With
        `table_id` (its identity), nothing is removed if the catalog has another table at that path (it
        replaced this one meanwhile: the rows are its own now). Whether it removed them."""
        with self._changing(slug) as (conn, row):
            if catalog_path is not None:
                found = conn.execute(sa.select(schema.tables.c.table_id)
                                     .where(schema.tables.c.path == catalog_path)).first()
                if found is not None and table_id is not None and found[0] != table_id:
                    return False
                conn.execute(schema.tables.delete().where(schema.tables.c.path == catalog_path))
            if row is not None:
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {self._q(row.sql_name)}")
                conn.execute(schema.row_tables.delete().where(schema.row_tables.c.slug == slug))
            for t in (schema.staged, schema.active_runs, schema.batches, schema.watch_taken):
                conn.execute(t.delete().where(t.c.slug == slug))
            cursors = f"watch:{slug}:"  # its schedules' cursors: a table created again starts its watch afresh
            conn.execute(schema.kv.delete().where(sa.func.substr(schema.kv.c.key, 1, len(cursors)) == cursors))
        return True
