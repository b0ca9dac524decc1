"""Row records: a column's record for one row (row_id, value, error, errortype, version, and for columns that
write files destination and owned) as the fields of a row table, and back; the files a value names."""

from __future__ import annotations

import json
from collections.abc import Container, Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from pxt_assets.rowstore import schema
from pxt_assets.rowstore.schema import RowTable

#: the outputs of frame_iterator, audio_splitter and document_splitter that are files
FILE_KEYS = ("frame", "audio_segment", "image")


def dumps(value: Any) -> str:
    return json.dumps(value, default=str)


def _split_row_id(row_id: str) -> int:
    tail = row_id.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def fields_of(rt: RowTable, column: str, rec: Mapping[str, Any]) -> dict[str, Any]:
    """A column's record as its row table's fields (SQL name -> value)."""
    return {name: bool(rec.get(kind.value)) if kind is schema.OWNED else rec.get(kind.value)
            for kind, name in rt.fields(column)}


def field_names(rt: RowTable, column: str) -> list[str]:
    """The row table's fields of one column (their SQL names), in the order `record` reads them."""
    return [name for _, name in rt.fields(column)]


def record(rt: RowTable, row_id: str, fields: Mapping[str, Any], column: str) -> dict[str, Any]:
    """A column's record from its row table's fields (the inverse of `fields_of`)."""
    rec = {"row_id": row_id}
    for kind, name in rt.fields(column):
        rec[kind.value] = bool(fields[name]) if kind is schema.OWNED else fields[name]
    return rec


def assemble(rt: RowTable, batch: str, columns: Iterable[tuple[str, Iterable[Mapping[str, Any]]]],
             skip: Container[str] = ()) -> list[dict[str, Any]]:
    """A batch's rows from its columns' records ((column, records) pairs), in row order, each with every
    field any of them has (one INSERT takes them all); rows whose id is in `skip` are left out."""
    rows: dict[str, dict[str, Any]] = {}
    for column, recs in columns:
        for rec in recs:
            row_id = rec["row_id"]
            if row_id in skip:
                continue
            row = rows.get(row_id)
            if row is None:
                row = rows[row_id] = {"_row_id": row_id, "_batch": batch, "_idx": _split_row_id(row_id)}
            row.update(fields_of(rt, column, rec))
    ordered = sorted(rows.values(), key=lambda r: r["_idx"])
    names = sorted({k for r in ordered for k in r})
    return [{k: r.get(k) for k in names} for r in ordered]


def insert(conn: sa.Connection, t: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Insert rows made by `assemble`."""
    if rows:
        conn.execute(t.insert(), rows)


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


def files_dropped(before: Iterable[Mapping[str, Any]], after: Iterable[Mapping[str, Any]]) -> list[str]:
    """Files the `before` records owned that the `after` records no longer name."""
    keep = {u for r in after for u in files_named(r.get("value"), r.get("destination"))}
    return [u for r in before if r.get("owned") for u in files_named(r.get("value"), r.get("destination"))
            if u not in keep]
