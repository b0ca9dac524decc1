"""Batch keys, row ids and the records a step stores per row.

A record is what a column holds for one row: `row_id`, `value` (the URI for media), `error`, `errortype`,
`version` (for inserted media, the identity of the stored file, so a changed file is noticed; for computed
values, a fingerprint of the expression and of every input it read, so unchanged rows can be skipped), and for
media `destination` (where the file was written, recorded with it) and `owned` (written by us, so ours to
delete).
"""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from typing import Any


def new_batch_key() -> str:
    """Short, path-safe and sortable by creation time: '20261122T211640123456-3fa9'."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f") + "-" + secrets.token_hex(2)


def row_id(batch: str, index: int) -> str:
    return f"{batch}-{index:06d}"


def new_record(rid: str, media: bool, destination: str | None = None, version: Any = None) -> dict[str, Any]:
    record: dict[str, Any] = {"row_id": rid, "value": None, "error": None, "errortype": None, "version": version}
    if media:
        record.update(destination=destination, owned=False)
    return record


def count_errors(records: list[dict[str, Any]]) -> int:
    return sum(1 for r in records if r.get("error") is not None)
