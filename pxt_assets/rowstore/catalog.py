"""The catalog: table documents (versioned, changed compare-and-set), directories, the views of a table, small
named values."""

from __future__ import annotations

import functools
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from pxt_assets.rowstore import schema
from pxt_assets.rowstore.engine import insert_new, upsert
from pxt_assets.rowstore.rows import dumps
from pxt_assets.rowstore.tables import TableGone, Tables

_ENTRY = (schema.tables.c.path, schema.tables.c.doc, schema.tables.c.version, schema.tables.c.table_id)


@dataclass(eq=False)
class TableEntry:
    """A catalog table as stored: its path, document (JSON text), version and identity."""

    path: str
    text: str
    version: int
    table_id: str | None

    @functools.cached_property
    def doc(self) -> dict[str, Any]:
        """The document, parsed (a fresh dict of this entry's own)."""
        return json.loads(self.text)

    @property
    def token(self) -> tuple[str | None, int]:
        return self.table_id, self.version


class Catalog(Tables):
    # -- directories ---------------------------------------------------------------------------------------
    def dir_exists(self, path: str) -> bool:
        if not path:
            return True
        with self._read() as conn:
            return conn.execute(sa.select(schema.dirs.c.path).where(schema.dirs.c.path == path)).first() is not None

    def create_dirs(self, paths: Sequence[str]) -> None:
        with self._write() as conn:
            for p in paths:
                insert_new(conn, schema.dirs, {"path": p})

    def remove_dir(self, path: str) -> None:
        prefix = path + "/"
        with self._write() as conn:
            conn.execute(schema.dirs.delete().where(
                (schema.dirs.c.path == path) | (sa.func.substr(schema.dirs.c.path, 1, len(prefix)) == prefix)))

    # -- table documents -----------------------------------------------------------------------------------
    # A table's document has a version (one more at every change) and an identity (new at every creation).
    # Every change is compare-and-set on the version (`change_table_doc`), in one transaction with the DDL
    # that makes its row table hold the document's columns, so two processes changing one table both land,
    # and the catalog's columns are the SQL table's. Creation is an INSERT that does nothing if a table of
    # that path exists, so of two creators exactly one wins.

    def table_entry(self, path: str) -> TableEntry | None:
        """The catalog's table at `path` as stored now: its document, version and identity."""
        with self._read() as conn:
            row = conn.execute(sa.select(*_ENTRY).where(schema.tables.c.path == path)).first()
        return None if row is None else TableEntry(*row)

    def table_token(self, path: str) -> tuple[str | None, int] | None:
        """(identity, version) of the catalog's table at `path` (None if there is none): what a process that
        holds the table reads before each call to learn whether another process changed or re-created it."""
        with self._read() as conn:
            row = conn.execute(sa.select(schema.tables.c.table_id, schema.tables.c.version)
                               .where(schema.tables.c.path == path)).first()
        return None if row is None else (row[0], row[1])

    def table_entries(self) -> list[TableEntry]:
        """Every catalog table as stored, by path (documents are parsed when asked for)."""
        with self._read() as conn:
            return [TableEntry(*r) for r in conn.execute(sa.select(*_ENTRY).order_by(schema.tables.c.path))]

    def create_table_doc(self, path: str, slug: str, doc: dict[str, Any],
                         columns: Sequence[tuple[str, str]]) -> TableEntry | None:
        """Create the catalog's table at `path` (version 1, a new identity) with its row table holding
        `columns` (name, type name), in one transaction, unless a table of that path exists: then nothing
        is done and None returned."""
        text, table_id = dumps(doc), schema.new_table_id()
        with self._changing(slug) as (conn, row):
            if not insert_new(conn, schema.tables, {"path": path, "doc": text, "version": 1, "table_id": table_id,
                                                    "updated_at": time.time()}):
                return None
            self._widen(conn, slug, path, columns, row)
        return TableEntry(path, text, 1, table_id)

    def replace_table_doc(self, entry: TableEntry, slug: str, doc: dict[str, Any],
                          columns: Sequence[tuple[str, str]]) -> TableEntry | None:
        """Compare-and-set: `doc` becomes the document of `entry`'s table if it is still at `entry`'s
        version (and identity), with its row table made to hold `columns`, in one transaction. None (and
        nothing changed) if another change came first. Columns new in `doc` whose fields the row table still
        has (a drop of that name not finished) get new, empty fields; columns `doc` no longer has lose theirs
        (their values and staged records), in the same transaction: the catalog's columns are always the
        row table's."""
        text = dumps(doc)
        t = schema.tables
        same = (t.c.path == entry.path) & (t.c.version == entry.version) & (
            t.c.table_id == entry.table_id if entry.table_id is not None else t.c.table_id.is_(None))
        before = {c.get("name") for c in entry.doc.get("columns", [])}
        after = {c.get("name") for c in doc.get("columns", [])}
        with self._changing(slug) as (conn, row):
            done = conn.execute(t.update().where(same).values(doc=text, version=entry.version + 1,
                                                               updated_at=time.time()))
            if done.rowcount != 1:
                return None
            self._widen(conn, slug, entry.path, columns, row, fresh=[n for n, _ in columns if n not in before],
                        gone=sorted(before - after))
        return TableEntry(entry.path, text, entry.version + 1, entry.table_id)

    def change_table_doc(self, path: str, slug: str,
                         change: Callable[[TableEntry], tuple[dict[str, Any], Sequence[tuple[str, str]]] | None],
                         *, table_id: str | None) -> TableEntry:
        """Change the catalog's table at `path` whose identity is `table_id`: `change(entry)` gives, from
        the document as it is now, the new document and the columns its row table must hold (or None: no
        change needed); it is written compare-and-set, and on a version mismatch the document is read
        again and `change` asked again. `change` raises when the change no longer applies. Raises TableGone
        when the table is not there or another of its path replaced it. Returns the entry as written."""
        attempt = 0
        while True:
            entry = self.table_entry(path)
            if entry is None or (table_id is not None and entry.table_id != table_id):
                raise TableGone(path, replaced=entry is not None)
            changed = change(entry)
            if changed is None:
                return entry
            written = self.replace_table_doc(entry, slug, *changed)
            if written is not None:
                return written
            # another change came first: read it and apply this one to it (never more than the number of
            # changes made meanwhile; a short pause spreads out many writers of one table)
            time.sleep(random.uniform(0, min(0.002 * 2 ** min(attempt, 8), 0.25)))
            attempt += 1

    def save_table_doc(self, path: str, doc: dict[str, Any]) -> None:
        """Write a document as it is, whatever the catalog has (a new version; a new identity if the path
        had none): for tools and tests that plant an entry. Tables change through change_table_doc."""
        with self._write() as conn:
            t = schema.tables
            done = conn.execute(t.update().where(t.c.path == path).values(
                doc=dumps(doc), version=t.c.version + 1, updated_at=time.time()))
            if done.rowcount != 1:
                upsert(conn, t, {"path": path}, {"doc": dumps(doc), "version": 1, "table_id": schema.new_table_id(),
                                                 "updated_at": time.time()})

    def table_doc(self, path: str) -> dict[str, Any] | None:
        entry = self.table_entry(path)
        return None if entry is None else entry.doc

    def remove_table_doc(self, path: str) -> None:
        with self._write() as conn:
            conn.execute(schema.tables.delete().where(schema.tables.c.path == path))

    def table_docs(self) -> list[tuple[str, str]]:
        """(path, document text) of every catalog table, by path."""
        with self._read() as conn:
            return [(r[0], r[1]) for r in conn.execute(
                sa.select(schema.tables.c.path, schema.tables.c.doc).order_by(schema.tables.c.path))]

    def view_entries(self, base_path: str) -> list[TableEntry]:
        """The catalog entries of the views whose base table is `base_path`, by path."""
        out = []
        for entry in self.table_entries():
            doc = entry.doc
            if doc.get("view") and doc["view"]["base"]["path"] == base_path:
                out.append(entry)
        return out

    def view_docs(self, base_path: str) -> list[dict[str, Any]]:
        """The catalog documents of the views whose base table is `base_path`, by path."""
        return [e.doc for e in self.view_entries(base_path)]

    # -- pickled UDFs ---------------------------------------------------------------------------------------
    def put_code(self, sha256: str, text: str) -> None:
        """Keep a pickled UDF (base64 text) under its hash, once."""
        with self._write() as conn:
            insert_new(conn, schema.udf_code, {"sha256": sha256, "data": text, "created_at": time.time()})

    def get_code(self, sha256: str) -> str | None:
        with self._read() as conn:
            return conn.execute(sa.select(schema.udf_code.c.data).where(schema.udf_code.c.sha256 == sha256)).scalar()

    # -- small values --------------------------------------------------------------------------------------
    def get_value(self, key: str) -> str | None:
        with self._read() as conn:
            return conn.execute(sa.select(schema.kv.c.value).where(schema.kv.c.key == key)).scalar()

    def set_value(self, key: str, value: str) -> None:
        with self._write() as conn:
            upsert(conn, schema.kv, {"key": key}, {"value": value})
