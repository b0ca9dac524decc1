"""What a table's watch (pxt_assets.watch) took from its watched prefix, and the batches its ticks planned."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from pxt_assets.rowstore import schema
from pxt_assets.rowstore.batches import insert_batch
from pxt_assets.rowstore.engine import Database
from pxt_assets.rowstore.schema import COMMITTED


def _taken(slug: str, watch: str, seq: int, taken: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    return [{"slug": slug, "watch": watch, "name": n, "batch": b, "seq": seq} for n, b in taken]


class Watches(Database):
    def record_watch_batches(self, slug: str, watch: str, seq: int,
                             batches: Sequence[tuple[str, list[dict[str, Any]], Any, Sequence[str]]]) -> None:
        """Record the batches one tick of a watch planned, as (key, rows, source, names of the objects taken),
        with the names, in one transaction. A name the watch already took (another process's tick took it
        first) fails the whole call, and nothing is recorded."""
        now = time.time()  # one tick: its batches are ordered by key
        with self._write() as conn:
            for key, rows, source, names in batches:
                insert_batch(conn, slug, key, rows, source, created_at=now)
                conn.execute(schema.watch_taken.insert(), _taken(slug, watch, seq, ((n, key) for n in names)))

    def record_watch_taken(self, slug: str, watch: str, seq: int, taken: Iterable[tuple[str, str]]) -> int:
        """Record (name, batch) pairs as taken by a watch, skipping names it has already taken. The number
        recorded."""
        w = schema.watch_taken
        with self._write() as conn:
            have = {r[0] for r in conn.execute(sa.select(w.c.name).where((w.c.slug == slug) & (w.c.watch == watch)))}
            new = {n: b for n, b in taken if n not in have}
            if new:
                conn.execute(w.insert(), _taken(slug, watch, seq, new.items()))
        return len(new)

    def watch_taken(self, slug: str, watch: str, names: Sequence[str]) -> set[str]:
        """The names among `names` that the watch has taken: one query per 1,000 names."""
        w = schema.watch_taken
        out: set[str] = set()
        with self._read() as conn:
            for i in range(0, len(names), 1000):
                out.update(r[0] for r in conn.execute(sa.select(w.c.name).where(
                    (w.c.slug == slug) & (w.c.watch == watch) & w.c.name.in_(names[i:i + 1000]))))
        return out

    def watch_has_taken(self, slug: str, watch: str) -> bool:
        w = schema.watch_taken
        with self._read() as conn:
            return conn.execute(sa.select(w.c.name).where((w.c.slug == slug) & (w.c.watch == watch))
                                .limit(1)).first() is not None

    def watch_unconfirmed(self, slug: str, watch: str, after_seq: int) -> list[tuple[str, int, list[dict[str, Any]]]]:
        """(key, seq, rows) of the pending batches that ticks numbered above `after_seq` planned for the watch,
        oldest first: Dagster never kept those ticks' cursors, so their runs may never have been requested."""
        w, b = schema.watch_taken, schema.batches
        with self._read() as conn:
            seqs: dict[str, int] = {}
            for key, seq in conn.execute(sa.select(w.c.batch, w.c.seq).distinct().where(
                    (w.c.slug == slug) & (w.c.watch == watch) & (w.c.seq > after_seq))):
                seqs[key] = max(seq, seqs.get(key, seq))
            if not seqs:
                return []
            found = conn.execute(sa.select(b.c.batch, b.c.manifest).where(
                (b.c.slug == slug) & b.c.batch.in_(list(seqs)) & (b.c.status != COMMITTED))).all()
        return sorted((key, seqs[key], json.loads(manifest)) for key, manifest in found)

    def batches_from(self, slug: str, source: Any) -> list[tuple[str, list[dict[str, Any]]]]:
        """(key, rows) of every batch of a table whose recorded source is `source` (a watched prefix)."""
        b = schema.batches
        with self._read() as conn:
            found = conn.execute(sa.select(b.c.batch, b.c.source, b.c.manifest).where(
                (b.c.slug == slug) & b.c.source.is_not(None))).all()
        return [(key, json.loads(manifest)) for key, src, manifest in found if json.loads(src) == source]
