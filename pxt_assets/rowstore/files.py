"""Which files rows and staged records name: what gc may collect and what it must keep."""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator

import sqlalchemy as sa

from pxt_assets.rowstore import schema
from pxt_assets.rowstore.engine import Database
from pxt_assets.rowstore.rows import files_named
from pxt_assets.rowstore.schema import RowTable
from pxt_assets.rowstore.tables import _row_table_of, row_tables


class Files(Database):
    def owned_files(self, rt: RowTable | None, slug: str, *, batch: str | None = None,
                    column: str | None = None) -> list[tuple[str, str | None]]:
        """(uri, recorded destination) of every file we wrote for the table (or one batch or column): from
        its rows and from records staged by runs that have not committed. The row table is the one `slug` has
        now (`rt`: as the caller last saw it, or None): another process may have dropped it, or a column,
        since, and their files were that process's to delete."""
        out: list[tuple[str, str | None]] = []
        with self._read() as conn:
            if not self.is_sqlite:  # no schema change of the table while it is read (SQLite reads a snapshot)
                conn.execute(sa.text("SELECT pg_advisory_xact_lock_shared(:k)"),
                             {"k": zlib.crc32(f"schema:{slug}".encode())})
            if rt is not None:
                row = conn.execute(sa.select(schema.row_tables).where(schema.row_tables.c.slug == slug)).first()
                rt = None if row is None else _row_table_of(row)
            if rt is not None:
                t = rt.table()
                for c in rt.file_columns():
                    if column is not None and c != column:
                        continue
                    value, dest = t.c[rt.field(c, schema.VALUE)], t.c[rt.field(c, schema.DESTINATION)]
                    q = sa.select(value, dest).where(
                        (t.c[rt.field(c, schema.OWNED)] == sa.true()) & value.is_not(None))
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
            for rt in row_tables(conn):
                t = rt.table()
                for c in rt.media_columns():
                    col = t.c[rt.field(c, schema.VALUE)]
                    for (uri,) in conn.execute(sa.select(col).where(col.is_not(None))):
                        yield uri
                for c in rt.file_columns():
                    if c not in rt.media_columns():
                        col, dest = t.c[rt.field(c, schema.VALUE)], t.c[rt.field(c, schema.DESTINATION)]
                        for value, d in conn.execute(sa.select(col, dest).where(col.is_not(None))):
                            yield from files_named(value, d)
            for (text,) in conn.execute(sa.select(schema.staged.c.records)):
                for r in json.loads(text):
                    if isinstance(r.get("value"), str) and r["value"]:
                        yield r["value"]
                    elif r.get("destination"):
                        yield from files_named(r.get("value"), r["destination"])
