"""The catalog: table documents, directories, the views of a table, small named values."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from pxt_assets.rowstore import schema
from pxt_assets.rowstore.engine import Database, insert_new, upsert
from pxt_assets.rowstore.rows import dumps


class Catalog(Database):
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
    def save_table_doc(self, path: str, doc: dict[str, Any]) -> None:
        with self._write() as conn:
            upsert(conn, schema.tables, {"path": path}, {"doc": dumps(doc), "updated_at": time.time()})

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

    # -- small values --------------------------------------------------------------------------------------
    def get_value(self, key: str) -> str | None:
        with self._read() as conn:
            return conn.execute(sa.select(schema.kv.c.value).where(schema.kv.c.key == key)).scalar()

    def set_value(self, key: str, value: str) -> None:
        with self._write() as conn:
            upsert(conn, schema.kv, {"key": key}, {"value": value})
