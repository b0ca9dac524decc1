"""What the invariant checks read (pxt_assets/check.py): the files committed rows name, a row table's SQL
columns against the columns it should hold, batches being written now, staged records left behind; and every
text the database holds (the scale demo's scan for local paths, pxt_assets/scale_demo.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

from pxt_assets.procid import holder_gone
from pxt_assets.rowstore import schema
from pxt_assets.rowstore.batches import ACTIVE_RUN_TTL_S
from pxt_assets.rowstore.engine import Database
from pxt_assets.rowstore.rows import files_named
from pxt_assets.rowstore.schema import COMMITTED, RowTable
from pxt_assets.rowstore.tables import row_tables

_PAGE = 2000
#: the fixed tables whose texts `stored_texts` reads (every one of schema.py's)
_FIXED = (schema.dirs, schema.tables, schema.row_tables, schema.batches, schema.active_runs, schema.staged,
          schema.kv, schema.watch_taken)


@dataclass(frozen=True)
class NamedFile:
    """A file a committed row names: where, and whether we wrote it (else the user's, only referenced)."""

    batch: str
    row_id: str
    column: str
    uri: str
    owned: bool


@dataclass(frozen=True)
class SchemaDrift:
    """A row table's SQL columns against the columns it should hold. Empty when they agree."""

    sql_name: str
    #: column -> its SQL columns the SQL table lacks
    missing: dict[str, list[str]] = field(default_factory=dict)
    #: SQL columns that belong to none of the columns (nor to the row table's own: _pos, _row_id, ...)
    stray: list[str] = field(default_factory=list)
    #: column -> (type the row store recorded, type given)
    retyped: dict[str, tuple[str, str]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.missing or self.stray or self.retyped)


def _live_marks(conn: sa.Connection, slug: str) -> set[tuple[str, str]]:
    """(batch, run id) of the runs writing `slug`'s batches now (a mark whose process is provably gone, or
    older than ACTIVE_RUN_TTL_S, is not)."""
    a = schema.active_runs
    rows = conn.execute(sa.select(a.c.batch, a.c.run_id, a.c.holder).where(
        (a.c.slug == slug) & (a.c.started_at > time.time() - ACTIVE_RUN_TTL_S)))
    return {(r[0], r[1]) for r in rows if not holder_gone(r[2])}


class Audit(Database):
    def all_row_tables(self) -> list[RowTable]:
        """Every table that has a SQL table here (declared anywhere, or nowhere any more), by path."""
        with self._read() as conn:
            return sorted(row_tables(conn), key=lambda rt: rt.path)

    def named_files(self, rt: RowTable) -> Iterator[NamedFile]:
        """Every file the committed rows of `rt` name (media values, and the files of file lists), in row
        order, read a page at a time (no transaction stays open while the caller checks them)."""
        t, columns = rt.table(), rt.file_columns()
        if not columns:
            return
        fields = [t.c._pos, t.c._batch, t.c._row_id]
        for c in columns:
            fields += [t.c[rt.field(c, k)] for k in (schema.VALUE, schema.DESTINATION, schema.OWNED)]
        last = None
        while True:
            q = sa.select(*fields).order_by(t.c._pos).limit(_PAGE)
            if last is not None:
                q = q.where(t.c._pos > last)
            with self._read() as conn:
                page = conn.execute(q).all()
            if not page:
                return
            for r in page:
                for i, c in enumerate(columns):
                    value, dest, owned = r[3 + 3 * i], r[4 + 3 * i], r[5 + 3 * i]
                    for uri in files_named(value, dest):
                        yield NamedFile(r[1], r[2], c, uri, bool(owned))
            last = page[-1][0]

    def schema_drift(self, slug: str, columns: Sequence[tuple[str, str]] | None = None) -> SchemaDrift | None:
        """`slug`'s SQL table against `columns` ((name, type name): the table's definition; default: the
        columns the row store recorded for it). None if the table has no SQL table."""
        with self._read() as conn:
            rt = next((r for r in row_tables(conn) if r.slug == slug), None)
            if rt is None:
                return None
            try:
                actual = {c["name"] for c in sa.inspect(conn).get_columns(rt.sql_name)}
            except sa.exc.NoSuchTableError:
                actual = set()
        declared = list(rt.columns) if columns is None else list(columns)
        own = {c.name for c in RowTable(slug, rt.path, rt.sql_name, (), 1).table().columns}
        drift = SchemaDrift(rt.sql_name)
        expected = set(own)
        recorded = rt.column_types
        for name, type_name, *_ in declared:
            if name not in recorded:  # a declared column the row table never recorded: no SQL fields at all
                drift.missing[name] = []
                continue
            names = [c.name for c in schema.field_columns(rt.column_id(name), type_name)]
            expected.update(names)
            lacking = [n for n in names if n not in actual]
            if lacking:
                drift.missing[name] = lacking
            if name in recorded and recorded[name] != type_name:
                drift.retyped[name] = (recorded[name], type_name)
        drift.stray.extend(sorted(actual - expected))
        missing_own = sorted(own - actual)
        if missing_own:
            drift.missing[""] = missing_own
        return drift

    def uncomputed(self, rt: RowTable | None, columns: Sequence[str]) -> dict[str, list[str]]:
        """Committed batches whose rows lack some of `columns` (computed columns): rows whose record of the
        column has no version were never computed (a column added after the batch committed, whose backfill
        did not finish). batch -> those columns, in the order given. A reader sees no value for them yet;
        `resume()` computes them."""
        out: dict[str, list[str]] = {}
        if rt is None:
            return out
        t, b = rt.table(), schema.batches
        committed = sa.select(b.c.batch).where((b.c.slug == rt.slug) & (b.c.status == COMMITTED))
        with self._read() as conn:
            for column in columns:
                if column not in rt.column_types:
                    continue
                q = (sa.select(t.c._batch).distinct()
                     .where(rt.c(column, schema.VERSION).is_(None) & t.c._batch.in_(committed)))
                for (batch,) in conn.execute(q):
                    out.setdefault(batch, []).append(column)
        return dict(sorted(out.items()))

    def running_batches(self, slug: str) -> set[str]:
        """`slug`'s batches that a run is writing now (from a process that is alive)."""
        with self._read() as conn:
            return {batch for batch, _ in _live_marks(conn, slug)}

    def staged_of_committed(self, slug: str) -> list[tuple[str, str, str | None]]:
        """(batch, column, run id) of the records staged for `slug`'s committed batches by runs that are not
        writing now: a commit takes a batch's staged records with it, so these were left behind."""
        s, b = schema.staged, schema.batches
        q = (sa.select(s.c.batch, s.c.column, s.c.run_id)
             .select_from(s.join(b, (b.c.slug == s.c.slug) & (b.c.batch == s.c.batch)))
             .where((s.c.slug == slug) & (b.c.status == COMMITTED))
             .order_by(s.c.batch, s.c.column))
        with self._read() as conn:
            found = conn.execute(q).all()
            live = _live_marks(conn, slug) if found else set()
        live_batches = {batch for batch, _ in live}
        return [(batch, column, run_id) for batch, column, run_id in found
                if not ((batch, run_id) in live if run_id else batch in live_batches)]

    def stored_texts(self) -> Iterator[tuple[str, str]]:
        """(where, text) for every text this database holds: each text or JSON field (JSON as its JSON text) of
        every row of the fixed tables (catalog documents, row table records, batch manifests and sources, staged
        records, small values, ...) and of every row table (values, destinations, error messages, versions),
        read a page at a time. `where` is `table.column` and the row's key."""
        for table in _FIXED:
            yield from self._texts_of(table, list(table.primary_key.columns))
        for rt in self.all_row_tables():
            yield from self._texts_of(rt.table(), [rt.table().c._pos])

    def _texts_of(self, table: sa.Table, key: list[sa.Column]) -> Iterator[tuple[str, str]]:
        texts = [c for c in table.columns if isinstance(c.type, (sa.String, sa.Text, sa.JSON))]
        if not texts:
            return
        with self._read() as conn:
            if not sa.inspect(conn).has_table(table.name):
                return
        offset = 0
        while True:
            q = sa.select(*key, *texts).order_by(*key).limit(_PAGE).offset(offset)
            with self._read() as conn:
                page = conn.execute(q).all()
            for r in page:
                where = f"{table.name} {'/'.join(str(v) for v in r[:len(key)])}"
                for c, v in zip(texts, r[len(key):]):
                    if v is None:
                        continue
                    yield f"{where} {c.name}", v if isinstance(v, str) else json.dumps(v)
            if len(page) < _PAGE:
                return
            offset += _PAGE
