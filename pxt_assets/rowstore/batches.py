"""Batches: their records and their state machine, the marks of runs writing them, the columns staged for
them, and the commit that moves a batch's staged columns into its table's rows in one transaction.

This module owns a batch's life; nothing else writes its state:

    created --start_run--> computing --commit_batch--> committed
                               |  ^
                   fail_batch  v  |  start_run (resume, a re-run, automation)
                             failed

Each transition is one transaction that reads the batch's row under a lock and changes it with a
compare-and-set (`UPDATE ... WHERE status = :seen`, its row count checked). State is kept per (batch, column)
as well: a column's records are staged for a batch (pxt_staged) until that pair commits, and a batch's rows
become visible only when every column of its table is staged (a value or a row error in each row), so a run
that computes a subset of the columns stages them and the commit waits (the batch is `failed`, saying which
columns are missing, until a run computes them). A column added later commits on its own for batches
already committed (a backfill updates their rows in place). A `computing` batch whose run's process is gone
is reported as failed (its reason says so) without anyone writing it: a dead process's mark protects nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from pxt_assets.faults import fault_point
from pxt_assets.procid import holder_gone, process_identity
from pxt_assets.rowstore import rows, schema, tables, values
from pxt_assets.rowstore.engine import Database, insert_new, upsert
from pxt_assets.rowstore.rows import dumps, files_dropped, files_named
from pxt_assets.rowstore.schema import (
    COMMITTED,
    COMPUTING,
    CREATED,
    FAILED,
    LEGACY_PENDING,
    NOT_COMMITTED,
    PENDING,
    RowTable,
)

#: a run marked as writing a batch that has not committed after this long is taken as killed: gc may then
#: collect what it wrote (its batch's rows, if committed by another run, name what is kept)
ACTIVE_RUN_TTL_S = 24 * 3600.0
#: a gc claim older than this is taken as left by a gc that died on another machine (whose process cannot be
#: checked): runs no longer wait for it. A gc holds a claim while it deletes one batch's files: seconds.
GC_CLAIM_TTL_S = 600.0


class BatchStateError(RuntimeError):
    """A transition whose compare-and-set found the batch in another state than the one it read."""


@dataclass(frozen=True)
class CommitResult:
    rows: int
    errors: int
    replaced: list[str]  # files we wrote that the committed values no longer name (to delete)
    waiting: tuple[str, ...] = ()  # columns not staged yet: the batch did not commit (it is `failed`, saying so)

    @property
    def committed(self) -> bool:
        return not self.waiting


@dataclass(frozen=True)
class BatchInfo:
    batch: str
    status: str  # COMMITTED, or CREATED / COMPUTING / FAILED (see `reason`)
    num_rows: int | None
    num_errors: int | None
    source: Any
    reason: str | None = None  # why a batch that is not committed is not (None once committed)
    run_id: str | None = None  # the run that last took it


def insert_batch(conn: sa.Connection, slug: str, batch: str, manifest: list[dict[str, Any]], source: Any, *,
                 created_at: float | None = None, only_new: bool = False) -> bool:
    """Record a new pending batch: what was inserted in it (its manifest) and where it came from. With
    `only_new`, a batch already recorded is left as it is (and False returned); else it is an error."""
    manifest = [values.manifest_row(row, i) for i, row in enumerate(manifest)]
    fields = {"slug": slug, "batch": batch, "status": CREATED, "manifest": dumps(manifest),
              "source": None if source is None else dumps(source),
              "created_at": time.time() if created_at is None else created_at}
    if only_new:
        return insert_new(conn, schema.batches, fields)
    conn.execute(schema.batches.insert().values(**fields))
    return True


#: the key of a batch's source naming a column whose values wait to be filled (Batches.mark_pending)
PENDING_COLUMN = "pending_values"


class Batches(Database):
    # -- batches -------------------------------------------------------------------------------------------
    def create_batch(self, slug: str, batch: str, rows: list[dict[str, Any]], source: Any = None) -> bool:
        """Record a new batch and what was inserted in it. False if it already exists (a retried sensor tick
        re-creating the same batch): its manifest is kept."""
        with self._write() as conn:
            return insert_batch(conn, slug, batch, rows, source, only_new=True)

    def set_manifest(self, slug: str, batch: str, manifest: list[dict[str, Any]]) -> None:
        """Record new inserted values for a batch (an update: its next run stores them)."""
        b = schema.batches
        rows_ = [values.manifest_row(row, i) for i, row in enumerate(manifest)]
        with self._write() as conn:
            conn.execute(b.update().where((b.c.slug == slug) & (b.c.batch == batch)).values(manifest=dumps(rows_)))

    def manifest(self, slug: str, batch: str) -> list[dict[str, Any]] | None:
        b = schema.batches
        with self._read() as conn:
            row = conn.execute(sa.select(b.c.manifest).where((b.c.slug == slug) & (b.c.batch == batch))).first()
        return None if row is None else json.loads(row[0])

    def batch_info(self, slug: str, batch: str) -> BatchInfo | None:
        """The batch's state; one that is not committed says why (a `computing` batch whose run's process
        is gone is reported as `failed`)."""
        b, a = schema.batches, schema.active_runs
        with self._read() as conn:
            r = conn.execute(sa.select(b).where((b.c.slug == slug) & (b.c.batch == batch))).first()
            if r is None:
                return None
            marks = conn.execute(sa.select(a.c.run_id, a.c.holder, a.c.started_at).where(
                (a.c.slug == slug) & (a.c.batch == batch))).all()
        status, reason = _effective_state(r.status, r.reason, r.run_id, marks)
        return BatchInfo(r.batch, status, r.num_rows, r.num_errors, json.loads(r.source) if r.source else None,
                         reason, r.run_id)

    def batch_times(self, slug: str) -> list[tuple[str, int | None, float, float | None]]:
        """(batch, rows, created_at, committed_at) of each batch of a table, oldest first (committed_at None
        until it commits): how long batches take from being recorded to their commit (bench scaleout)."""
        b = schema.batches
        q = sa.select(b.c.batch, b.c.num_rows, b.c.created_at, b.c.committed_at).where(b.c.slug == slug)
        with self._read() as conn:
            return [tuple(r) for r in conn.execute(q.order_by(b.c.created_at, b.c.batch))]

    def batches(self, slug: str, status: str | None = None) -> list[str]:
        """Batch keys of a table (all, or those with `status`), oldest first."""
        b = schema.batches
        q = sa.select(b.c.batch).where(b.c.slug == slug)
        if status == PENDING:  # every batch not committed, whatever its state
            q = q.where(b.c.status.in_(NOT_COMMITTED))
        elif status is not None:
            q = q.where(b.c.status == status)
        with self._read() as conn:
            return [r[0] for r in conn.execute(q.order_by(b.c.created_at, b.c.batch))]

    def _batch_row(self, conn: sa.Connection, slug: str, batch: str) -> Any:
        """The batch's row, locked until the transaction ends (staging and committing one batch serialise);
        an error naming the batch if it was deleted (by `delete` or `drop_table`) while a run was writing."""
        b = schema.batches
        row = conn.execute(sa.select(b.c.status, b.c.run_id).where((b.c.slug == slug) & (b.c.batch == batch))
                           .with_for_update()).first()
        if row is None:
            raise LookupError(f"table {slug.replace('__', '/')!r} has no batch {batch!r} in {self!r} (deleted "
                              "while this run was writing it?)")
        return row

    def delete_batch(self, rt: RowTable | None, slug: str, batch: str) -> None:
        with self._write() as conn:
            if rt is not None:
                t = rt.table()
                conn.execute(t.delete().where(t.c._batch == batch))
            for t in (schema.active_runs, schema.staged, schema.batches):
                conn.execute(t.delete().where((t.c.slug == slug) & (t.c.batch == batch)))

    # -- runs writing a batch --------------------------------------------------------------------------------
    def start_run(self, slug: str, batch: str, run_id: str, *, new_batch: bool = False) -> None:
        """A run is about to write this batch's files (from this process): until it commits, or this process
        is gone, gc leaves them alone. Each step of a run marks it again: steps may be processes of their own.
        `new_batch`: the batch is not recorded yet (an insert uploading its files first; see end_run)."""
        holder = dumps(process_identity())
        with self._write() as conn:
            if not new_batch:
                seen = self._batch_row(conn, slug, batch).status
                if seen != COMMITTED:  # a committed batch stays so: a re-run or a new column's backfill
                    _transition(conn, slug, batch, seen, COMPUTING, run_id=run_id, reason=None)
            upsert(conn, schema.active_runs, {"slug": slug, "batch": batch, "run_id": run_id},
                   {"started_at": time.time(), "holder": holder})
        self._wait_for_gc(slug, batch)

    def _wait_for_gc(self, slug: str, batch: str) -> None:
        """After marking the batch live: wait while a gc holds a claim on it (it is deleting the batch's files:
        journal.py's protocol), unless the claim's process is provably gone or the claim is older than
        GC_CLAIM_TTL_S, so the wait is bounded."""
        c = schema.gc_claims
        while True:
            with self._read() as conn:
                held = conn.execute(sa.select(c.c.holder, c.c.claimed_at).where(
                    (c.c.slug == slug) & (c.c.batch == batch))).all()
            if not any(not holder_gone(h) and at > time.time() - GC_CLAIM_TTL_S for h, at in held):
                return
            time.sleep(0.1)

    def fail_batch(self, slug: str, batch: str, run_id: str, reason: str) -> bool:
        """`run_id` ended without completing the batch: computing -> failed, with the reason, if that run still
        holds it (a batch another run took since, or committed, is left alone). Whether it changed."""
        b, a = schema.batches, schema.active_runs
        with self._write() as conn:
            changed = conn.execute(b.update().where(
                (b.c.slug == slug) & (b.c.batch == batch) & (b.c.status == COMPUTING) & (b.c.run_id == run_id))
                .values(status=FAILED, reason=reason[:4000])).rowcount == 1
            conn.execute(a.delete().where((a.c.slug == slug) & (a.c.batch == batch) & (a.c.run_id == run_id)))
        return changed

    def end_run(self, slug: str, batch: str, run_id: str) -> None:
        """Remove a run's mark without committing (the batch is recorded as pending now, which protects it)."""
        a = schema.active_runs
        with self._write() as conn:
            conn.execute(a.delete().where((a.c.slug == slug) & (a.c.batch == batch) & (a.c.run_id == run_id)))

    def live_batches(self) -> set[str]:
        """Keys of batches whose files may not all be named by committed rows yet: not committed, or being
        (re)written by a run now. A run killed while writing counts while its mark may still be alive: until
        ACTIVE_RUN_TTL_S for a process of another machine, not at all once its process is provably gone."""
        b, a = schema.batches, schema.active_runs
        with self._read() as conn:
            pending = {r[0] for r in conn.execute(sa.select(b.c.batch).where(b.c.status.in_(NOT_COMMITTED)))}
            running = {r[0] for r in conn.execute(sa.select(a.c.batch, a.c.holder).where(
                a.c.started_at > time.time() - ACTIVE_RUN_TTL_S)) if not holder_gone(r[1])}
        return pending | running

    # -- staging and committing ----------------------------------------------------------------------------
    def stage_column(self, rt: RowTable, batch: str, column: str, records: list[dict[str, Any]],
                     run_id: str | None = None) -> list[str]:
        """Keep a column's records for a batch until the batch commits. Returns the files an earlier,
        uncommitted attempt staged (ours) that neither these records nor the committed rows name."""
        s = schema.staged
        keys = {"slug": rt.slug, "batch": batch, "column": column}
        if column in rt.column_types:  # a value the database cannot hold is that row's error, not the batch's
            records = values.fitted(column, rt.column_types[column], records)
        with self._write() as conn:
            self._batch_row(conn, rt.slug, batch)
            old = conn.execute(sa.select(s.c.records).where(
                (s.c.slug == rt.slug) & (s.c.batch == batch) & (s.c.column == column))).first()
            upsert(conn, s, keys, {"records": dumps(records), "run_id": run_id})
            if old is None:
                return []
            replaced = files_dropped(json.loads(old[0]), records)
            if replaced and column in rt.column_types:
                t = rt.table()
                value = t.c[rt.field(column, schema.VALUE)]
                if rt.column_types[column] == schema.FILE_LIST:
                    dest = t.c[rt.field(column, schema.DESTINATION)]
                    committed = {u for v, d in conn.execute(sa.select(value, dest).where(t.c._batch == batch))
                                 for u in files_named(v, d)}
                else:
                    committed = {r[0] for r in conn.execute(sa.select(value).where(
                        (t.c._batch == batch) & value.in_(replaced)))}
                replaced = [u for u in replaced if u not in committed]
        return replaced

    def read_columns(self, rt: RowTable, batch: str, columns: Iterable[str]) -> dict[str, dict[str, dict[str, Any]]]:
        """Each column's records for a batch, by row id: staged ones if staged, else the committed rows. A
        column with neither is left out."""
        columns = list(columns)
        s = schema.staged
        out: dict[str, dict[str, dict[str, Any]]] = {}
        with self._read() as conn:
            for column, text in conn.execute(sa.select(s.c.column, s.c.records).where(
                    (s.c.slug == rt.slug) & (s.c.batch == batch) & s.c.column.in_(columns))):
                out[column] = {r["row_id"]: r for r in json.loads(text)}
            rest = [c for c in columns if c not in out and c in rt.column_types]
            if rest:
                t = rt.table()
                fields = [t.c[n] for c in rest for n in rows.field_names(rt, c)]
                found = conn.execute(sa.select(t.c._row_id, *fields).where(t.c._batch == batch)
                                     .order_by(t.c._pos)).all()
                if found:
                    for c in rest:
                        out[c] = {r[0]: rows.record(rt, r[0], r._mapping, c) for r in found}
        return out

    def error_counts(self, rt: RowTable | None, batch: str, columns: Iterable[str]) -> dict[str, int]:
        """Column -> how many of a committed batch's rows have an error in it (of `columns` the rows hold)."""
        if rt is None:
            return {}
        t = rt.table()
        names = [c for c in columns if c in rt.column_types]
        if not names:
            return {}
        counts = [sa.func.count(t.c[rt.field(c, schema.ERROR)]) for c in names]
        with self._read() as conn:
            row = conn.execute(sa.select(*counts).where(t.c._batch == batch)).one()
        return {c: int(n or 0) for c, n in zip(names, row)}

    def staged_errors(self, slug: str, batch: str) -> dict[str, tuple[str, str]]:
        """Column -> (row id, message) of its first row error among the records staged for `batch` (what a
        run is about to commit): on_error='abort' refuses to commit a batch that has one."""
        s = schema.staged
        out: dict[str, tuple[str, str]] = {}
        with self._read() as conn:
            for column, text in conn.execute(sa.select(s.c.column, s.c.records).where(
                    (s.c.slug == slug) & (s.c.batch == batch))):
                first = next((r for r in json.loads(text) if r.get("error") is not None), None)
                if first is not None:
                    out[column] = (str(first.get("row_id")), str(first["error"]))
        return out

    def commit_batch(self, rt: RowTable, batch: str, run_id: str | None = None, *,
                     rows_from: str | None = None) -> CommitResult:
        """Move every staged column of `batch` into the table's rows, in one transaction, and mark the batch
        committed (and `run_id` no longer writing it). A batch seen for the first time gets its rows
        inserted; a committed one (a re-run, a new column's backfill) has the staged columns updated in
        place. When the column `rows_from` (the first source column) is staged, its records are the batch's
        rows: rows it no longer has are deleted (their files returned as replaced), new ones inserted (a
        view's batch recomputed from a changed video can have more or fewer frames)."""
        s, t, a = schema.staged, rt.table(), schema.active_runs
        with self._write() as conn:
            status = self._batch_row(conn, rt.slug, batch).status
            staged = {c: json.loads(text) for c, text in conn.execute(
                sa.select(s.c.column, s.c.records).where((s.c.slug == rt.slug) & (s.c.batch == batch)))}
            staged = {c: recs for c, recs in staged.items() if c in rt.column_types}
            replaced: list[str] = []
            # the columns the batch must have are the table's as they are now, read in this transaction (a
            # column another process added since this run's definitions were built is one of them)
            now = tables.Tables._row_table_row(conn, rt.slug)
            required = list(tables._row_table_of(now).column_types) if now is not None else list(rt.column_types)
            missing = tuple(c for c in required if c not in staged) if status != COMMITTED else ()
            if missing:  # a run that computed a subset of the columns: they stay staged, the commit waits
                reason = (f"not committed: column(s) {', '.join(missing)} not computed for it yet (this run staged "
                          f"{', '.join(sorted(staged)) or 'nothing'}); t.resume({batch!r}) computes them")
                _transition(conn, rt.slug, batch, status, FAILED, run_id=run_id, reason=reason)
                conn.execute(a.delete().where((a.c.slug == rt.slug) & (a.c.batch == batch)
                                              & (a.c.run_id == (run_id or ""))))
                return CommitResult(0, 0, [], waiting=missing)
            if status != COMMITTED:
                conn.execute(t.delete().where(t.c._batch == batch))
                rows.insert(conn, t, rows.assemble(rt, batch, staged.items()))
            else:
                if rows_from is not None and rows_from in staged:
                    replaced += self._reshape_rows(conn, rt, batch, staged, rows_from)
                for column, recs in staged.items():
                    replaced += self._update_column(conn, rt, batch, column, recs)
            num_rows = conn.execute(sa.select(sa.func.count()).select_from(t).where(t.c._batch == batch)).scalar()
            err_cols = [t.c[rt.field(c, schema.ERROR)] for c in rt.column_types]
            num_errors = conn.execute(sa.select(sa.func.count()).select_from(t).where(
                (t.c._batch == batch) & sa.or_(*[c.is_not(None) for c in err_cols]))).scalar() if err_cols else 0
            conn.execute(s.delete().where((s.c.slug == rt.slug) & (s.c.batch == batch)))
            _transition(conn, rt.slug, batch, status, COMMITTED, reason=None, num_rows=num_rows,
                        num_errors=num_errors, committed_at=time.time())
            # This run's marker, and markers of runs long dead or killed; another run writing now keeps its own.
            mine = (a.c.slug == rt.slug) & (a.c.batch == batch)
            dead = [r[0] for r in conn.execute(sa.select(a.c.run_id, a.c.holder).where(mine)) if holder_gone(r[1])]
            conn.execute(a.delete().where(mine & ((a.c.run_id == (run_id or "")) | a.c.run_id.in_(dead) | (
                a.c.started_at < time.time() - ACTIVE_RUN_TTL_S))))
            fault_point("mid_commit")  # tests: killed with every statement made and none committed
        return CommitResult(int(num_rows or 0), int(num_errors or 0), replaced)

    # -- a view's values that wait for a decoding pass (assets/view.py: frame_attrs of rows made unread) ---------
    def mark_pending(self, slug: str, batch: str, column: str | None) -> None:
        """Record on a batch (in its source) that its rows' `column` values are incomplete until filled (None:
        that they are complete)."""
        b = schema.batches
        with self._write() as conn:
            # read for update: the source is rewritten whole, and fill_pending may be clearing it meanwhile
            row = conn.execute(sa.select(b.c.source).where((b.c.slug == slug) & (b.c.batch == batch))
                               .with_for_update()).first()
            if row is None:
                return
            source = json.loads(row[0]) if row[0] else {}
            if column is None and PENDING_COLUMN not in source:
                return
            if column is None:
                source.pop(PENDING_COLUMN)
            else:
                source[PENDING_COLUMN] = column
            conn.execute(b.update().where((b.c.slug == slug) & (b.c.batch == batch)).values(source=dumps(source)))

    def pending_values(self, slug: str) -> dict[str, str]:
        """Committed batches of a table whose rows have a column to fill (mark_pending): batch -> column."""
        b = schema.batches
        q = sa.select(b.c.batch, b.c.source).where(
            (b.c.slug == slug) & (b.c.status == COMMITTED) & b.c.source.like(f'%"{PENDING_COLUMN}"%'))
        out = {}
        with self._read() as conn:
            for batch, source in conn.execute(q.order_by(b.c.created_at, b.c.batch)):
                column = json.loads(source).get(PENDING_COLUMN) if source else None
                if isinstance(column, str):
                    out[batch] = column
        return out

    def fill_pending(self, rt: RowTable, batch: str, column: str, records: list[dict[str, Any]], *,
                     complete: bool) -> bool:
        """Update `column` of these rows of a committed batch in place (the values it was waiting for), and when
        `complete`, clear the batch's mark, in one transaction. False if the batch is no longer committed (or
        was deleted)."""
        b = schema.batches
        with self._write() as conn:
            row = conn.execute(sa.select(b.c.status, b.c.source).where((b.c.slug == rt.slug) & (b.c.batch == batch))
                               .with_for_update()).first()
            if row is None or row.status != COMMITTED:
                return False
            if column in rt.column_types:
                records = values.fitted(column, rt.column_types[column], records)
            self._update_column(conn, rt, batch, column, records)
            source = json.loads(row.source) if row.source else {}
            if complete and source.pop(PENDING_COLUMN, None) is not None:
                conn.execute(b.update().where((b.c.slug == rt.slug) & (b.c.batch == batch))
                             .values(source=dumps(source)))
        return True

    @staticmethod
    def _update_column(conn: sa.Connection, rt: RowTable, batch: str, column: str,
                       recs: list[dict[str, Any]]) -> list[str]:
        """Update one column of a committed batch's rows in place; the files it no longer names."""
        t = rt.table()
        replaced: list[str] = []
        if rt.writes_files(column):
            names = [rt.field(column, k) for k in (schema.VALUE, schema.OWNED, schema.DESTINATION)]
            before = conn.execute(sa.select(t.c._row_id, *[t.c[n] for n in names]).where(t.c._batch == batch)).all()
            replaced = files_dropped([{"row_id": r[0], "value": r[1], "owned": r[2], "destination": r[3]}
                                  for r in before], recs)
        if recs:
            params = [{"b_rid": rec["row_id"], **{"b_" + k: v for k, v in rows.fields_of(rt, column, rec).items()}}
                      for rec in recs]
            names = rows.field_names(rt, column)
            stmt = t.update().where(t.c._row_id == sa.bindparam("b_rid")).values(
                {n: sa.bindparam("b_" + n) for n in names})
            conn.execute(stmt, params)
        return replaced

    @staticmethod
    def _reshape_rows(conn: sa.Connection, rt: RowTable, batch: str, staged: dict[str, list[dict[str, Any]]],
                      rows_from: str) -> list[str]:
        """Make the batch's rows those of the staged column `rows_from`: delete the rows it no longer has
        (returning the files they owned), insert its new ones."""
        t = rt.table()
        target = {rec["row_id"] for rec in staged[rows_from]}
        files = rt.file_columns()
        fields = [t.c._row_id] + [t.c[rt.field(c, k)] for c in files
                                  for k in (schema.VALUE, schema.OWNED, schema.DESTINATION)]
        existing = conn.execute(sa.select(*fields).where(t.c._batch == batch)).all()
        gone = [r for r in existing if r[0] not in target]
        replaced = [u for r in gone for i in range(len(files)) if r[2 + 3 * i]
                    for u in files_named(r[1 + 3 * i], r[3 + 3 * i])]
        if gone:
            conn.execute(t.delete().where(t.c._row_id.in_([r[0] for r in gone])))
        rows.insert(conn, t, rows.assemble(rt, batch, staged.items(), skip={r[0] for r in existing}))
        return replaced


def _transition(conn: sa.Connection, slug: str, batch: str, seen: str, to: str, **fields: Any) -> None:
    """The batch's state `seen` (read under the batch row's lock in this transaction) becomes `to`, with
    `fields`: a compare-and-set whose row count is checked, so no interleaving of runs, resumes, deletes,
    sensors and gc can move a batch from a state it is no longer in."""
    b = schema.batches
    done = conn.execute(b.update().where((b.c.slug == slug) & (b.c.batch == batch) & (b.c.status == seen))
                        .values(status=to, **fields)).rowcount
    if done != 1:
        raise BatchStateError(f"table {slug.replace('__', '/')!r}, batch {batch!r}: expected state {seen!r} "
                              f"to become {to!r}, found another (changed by another process meanwhile)")


def _effective_state(status: str, reason: str | None, run_id: str | None,
                     marks: list[Any]) -> tuple[str, str | None]:
    """A batch's state as readers see it, and why it is not committed."""
    if status == COMMITTED:
        return COMMITTED, None
    if status == COMPUTING:
        live = [m for m in marks if m.run_id == run_id and m.started_at > time.time() - ACTIVE_RUN_TTL_S
                and not holder_gone(m.holder)]
        if live:
            return COMPUTING, f"being computed by run {run_id}"
        return FAILED, reason or f"run {run_id} ended without completing it (its process is gone); resume() runs it again"
    if status == FAILED:
        return FAILED, reason or "a run ended without completing it"
    if status == LEGACY_PENDING:
        return FAILED, reason or "not committed (recorded by an earlier release); resume() runs it again"
    return CREATED, reason or "waiting for its first run"
