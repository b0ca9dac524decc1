"""The views of a table, as the database knows them: every batch of a view is recorded with the base table it
was made from (its source is `{"view_of": <base path>}`; assets/view.py records it before the view's first
row is staged). So a view declared anywhere (in the catalog, in code, in a defs.yaml) is known, from its
rows, to every process that shares the database: deleting a batch or dropping a table finds the view rows
made from it even in a process that never declared the view (a Celery worker, another notebook)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import sqlalchemy as sa

from pxt_assets.rowstore import schema
from pxt_assets.rowstore.engine import Database

#: the key of a view batch's source naming its base table's path
VIEW_OF = "view_of"


@dataclass(frozen=True)
class ViewOf:
    """A view that has batches here: its slug, its path, and its base table's path."""

    slug: str
    path: str
    base_path: str


class Views(Database):
    def views(self, base_path: str | None = None, *, batch: str | None = None) -> list[ViewOf]:
        """The views that have batches in this database (those of `base_path` only, and only those with a batch
        `batch`, when given), by path."""
        b, rt = schema.batches, schema.row_tables
        q = (sa.select(b.c.slug, b.c.source, rt.c.path).distinct()
             .select_from(b.outerjoin(rt, rt.c.slug == b.c.slug))
             .where(b.c.source.like(f'%"{VIEW_OF}"%')))
        if batch is not None:
            q = q.where(b.c.batch == batch)
        found: dict[str, ViewOf] = {}
        with self._read() as conn:
            for slug, source, path in conn.execute(q):
                try:
                    base = json.loads(source).get(VIEW_OF)
                except (ValueError, AttributeError):
                    continue
                if isinstance(base, str) and (base_path is None or base == base_path):
                    found[slug] = ViewOf(slug, path or slug.replace("__", "/"), base)
        return sorted(found.values(), key=lambda v: v.path)
