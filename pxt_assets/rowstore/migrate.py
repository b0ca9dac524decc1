"""Moving a home written by the release that kept rows in files into the database, once.

That release kept, under `$PIXELTABLE_HOME`:

    catalog/<dir>/.dir, catalog/<dir>/<name>.table.json         directories and notebook tables
    tables/<dir>/<name>/_batches/<batch>.json                  each batch's manifest
    tables/<dir>/<name>/<column>/<batch>.parquet                each (column, batch)'s records

The first time a home with those folders is opened, every directory, table, batch and row goes into the
database in one transaction, then the folders are renamed `catalog.migrated` and `tables.migrated` (kept, not
deleted: nothing a user inserted is lost), and one line says what was moved.
"""

from __future__ import annotations

import json
import math
import pathlib
import time
from typing import Any

import filelock

from pxt_assets.rowstore import rows as row_records
from pxt_assets.rowstore import schema
from pxt_assets.rowstore.engine import upsert
from pxt_assets.rowstore.rows import dumps
from pxt_assets.rowstore.tables import record_row_table

OLD_CATALOG, OLD_TABLES = "catalog", "tables"
_TABLE_SUFFIX = ".table.json"
_MIGRATED = ".migrated"


def _old_folders(home: pathlib.Path) -> list[pathlib.Path]:
    return [home / name for name in (OLD_CATALOG, OLD_TABLES) if (home / name).is_dir()]


def migrate_home_if_needed(store, home: pathlib.Path) -> None:
    if not _old_folders(home):
        return
    with filelock.FileLock(str(home / ".migrate.lock"), timeout=600):
        folders = _old_folders(home)  # another process may have done it while we waited
        if folders:
            summary = migrate_home(store, home)
            for folder in folders:
                target = folder.with_name(folder.name + _MIGRATED)
                n = 1
                while target.exists():
                    target, n = folder.with_name(f"{folder.name}{_MIGRATED}.{n}"), n + 1
                folder.rename(target)
            print(f"pxt_assets: migrated {summary} from {home} into the database {store!r}; "
                  f"the old files are kept in {home / (OLD_CATALOG + _MIGRATED)} and {home / (OLD_TABLES + _MIGRATED)}")


def _clean(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        try:
            return _clean(value.item())
        except (ValueError, AttributeError):
            pass
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def _type_of(frame, catalog_types: dict[str, str], column: str) -> str:
    if column in catalog_types:
        return catalog_types[column]
    if "owned" in frame.columns or "destination" in frame.columns:
        return "Image"  # a media column of a table declared in code: a URI either way
    kind = str(frame["value"].dtype).lower()
    if kind.startswith(("int", "uint")):
        return "Int"
    if kind.startswith("float"):
        return "Float"
    if kind.startswith("bool"):
        return "Bool"
    values = [v for v in frame["value"] if _clean(v) is not None]
    if values and all(isinstance(v, str) for v in values):
        return "String"
    return "Json"


def migrate_home(store, home: pathlib.Path) -> str:
    """Copy the old catalog and tables under `home` into `store`. Returns a summary."""
    import pandas as pd

    catalog_root, tables_root = home / OLD_CATALOG, home / OLD_TABLES
    docs: dict[str, dict[str, Any]] = {}
    dirs: set[str] = set()
    if catalog_root.is_dir():
        for marker in catalog_root.rglob(".dir"):
            dirs.add("/".join(marker.parent.relative_to(catalog_root).parts))
        for f in catalog_root.rglob(f"*{_TABLE_SUFFIX}"):
            doc = json.loads(f.read_text())
            docs[doc["path"]] = doc
    n_tables = n_batches = n_rows = 0
    with store._write() as conn:
        have_dirs = {r[0] for r in conn.execute(schema.dirs.select())}
        for d in sorted(dirs - have_dirs - {""}):
            conn.execute(schema.dirs.insert().values(path=d))
        skipped: list[str] = []
        for path, doc in docs.items():
            if conn.execute(schema.tables.select().where(schema.tables.c.path == path)).first() is not None:
                skipped.append(f"catalog table {path}")  # a shared database has it already: its version wins
                continue
            conn.execute(schema.tables.insert().values(path=path, doc=dumps(doc), updated_at=time.time(),
                                                       table_id=schema.new_table_id()))
        for batches_dir in sorted(tables_root.rglob("_batches")) if tables_root.is_dir() else []:
            table_dir = batches_dir.parent
            parts = table_dir.relative_to(tables_root).parts
            path, slug = "/".join(parts), "__".join(parts)
            catalog_types = {c["name"]: c["type"] for c in docs.get(path, {}).get("columns", [])}
            frames: dict[str, dict[str, Any]] = {}
            for col_dir in sorted(p for p in table_dir.iterdir() if p.is_dir() and p.name != "_batches"
                                  and not p.name.startswith((".", "_"))):
                frames[col_dir.name] = {f.stem: pd.read_parquet(f, use_threads=False)
                                        for f in col_dir.glob("*.parquet") if not f.name.startswith(".tmp-")}
            columns: list[tuple[str, str]] = []
            order = [c["name"] for c in docs.get(path, {}).get("columns", [])] + sorted(frames)
            for name in dict.fromkeys(order):
                if name in frames and frames[name]:
                    columns.append((name, _type_of(next(iter(frames[name].values())), catalog_types, name)))
                elif name in catalog_types:
                    columns.append((name, catalog_types[name]))
            rt = schema.RowTable.new(slug, path, columns)
            existing = conn.execute(schema.row_tables.select().where(schema.row_tables.c.slug == slug)).first()
            if existing is not None:
                skipped.append(f"rows of {path}")  # already in the database (a shared one): its rows there win
                continue
            record_row_table(conn, rt)
            n_tables += 1
            t = rt.table()
            error_fields = {rt.field(n, schema.ERROR) for n, _ in columns}
            for manifest in sorted(batches_dir.glob("*.json")):
                batch = manifest.stem
                doc = json.loads(manifest.read_text())
                rows = row_records.assemble(rt, batch, [
                    (name, [{k: _clean(v) for k, v in rec.items()} for rec in by_batch[batch].to_dict("records")])
                    for name, by_batch in frames.items() if batch in by_batch])
                committed = bool(rows)
                conn.execute(schema.batches.insert().values(
                    slug=slug, batch=batch, status=schema.COMMITTED if committed else schema.PENDING,
                    manifest=dumps(doc.get("rows", [])), source=dumps(doc["source"]) if doc.get("source") else None,
                    num_rows=len(rows) if committed else None,
                    num_errors=sum(1 for r in rows if any(v for k, v in r.items() if k in error_fields))
                    if committed else None,
                    created_at=manifest.stat().st_mtime, committed_at=time.time() if committed else None))
                row_records.insert(conn, t, rows)
                n_batches += 1
                n_rows += len(rows)
            cursor_dir = table_dir / "_watch"
            if cursor_dir.is_dir():
                for f in cursor_dir.glob("*.json"):
                    upsert(conn, schema.kv, {"key": f"watch:{slug}:{f.stem}"}, {"value": f.read_text()})
    summary = (f"{len(docs) - sum(s.startswith('catalog') for s in skipped)} catalog tables and "
               f"{len(dirs - {''})} directories, {n_rows} rows in {n_batches} batches of {n_tables} tables")
    if skipped:
        summary += f" (already in the database, left as they are there: {', '.join(skipped)})"
    return summary
