"""The write-intent journal: every file we write is recorded, with its batch and column, before it is written
(`record_writes`), and its completion after (`write_done`), so gc's candidates are keys this database wrote
(`journal_entries`), never a key another home wrote under the same prefix, and gc lists no bucket to find them.

Invariant: a file this database wrote is in `pxt_written` from before its first byte is written until gc (or
a delete of its batch, column or table) has deleted it. So a key not in the journal is not ours to delete.

Intents are group-committed (`_GroupCommit`): the row threads of a step queue their keys, one of them commits
everything queued in one transaction while the others wait for it, so a file costs a condition wait, not a
transaction of its own. Completions are queued without waiting and go with the next commit (or `flush_writes`,
which the batch's staging calls first); a completion lost to a kill only takes away gc's check of the
object's modification time, never a file.

A rewrite during gc is excluded by claims: a run marks its batch live, then waits while a live gc holds a
claim on the batch (batches.py `_wait_for_gc`); gc claims a batch, then looks for its live marks, and deletes
its files only when there are none (`claim_batch`). Both write, commit, then read the other's row, so at least
one of them sees the other.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

from pxt_assets.procid import holder_gone, process_identity
from pxt_assets.rowstore import schema
from pxt_assets.rowstore.batches import ACTIVE_RUN_TTL_S
from pxt_assets.rowstore.engine import Database, upsert, upsert_many
from pxt_assets.rowstore.rows import dumps

#: (uri, slug, batch, column, destination) of a file about to be written
Intent = tuple[str, str, str, str, str]


@dataclass(frozen=True)
class Written:
    """One journal entry: a file this database wrote (or was about to write when it was recorded)."""

    uri: str
    slug: str
    batch: str
    column: str
    destination: str
    #: when the intent was recorded (last time: a key written again gets the new time)
    written_at: float
    #: when the write completed (None: not recorded, e.g. the writer was killed)
    done_at: float | None = None


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


@dataclass
class _Slot:
    intents: list[Intent]
    done: bool = False
    error: BaseException | None = None


@dataclass
class _GroupCommit:
    """Queued intents and completions of one process, committed together by whichever waiter leads."""

    lock: threading.Condition = field(default_factory=threading.Condition)
    slots: list[_Slot] = field(default_factory=list)
    completions: list[tuple[str, float]] = field(default_factory=list)
    leading: bool = False


class Journal(Database):
    def _journal_queue(self) -> _GroupCommit:
        q = self.__dict__.get("_journal_q")
        if q is None:
            q = self.__dict__.setdefault("_journal_q", _GroupCommit())
        return q

    def record_writes(self, entries: Iterable[Intent]) -> None:
        """Record files about to be written; returns once they are committed (with whatever other threads of
        this process queued meanwhile: one transaction for all of them). A key written again gets the new
        time, so gc leaves it alone for its minimum age again."""
        q = self._journal_queue()
        slot = _Slot(list(entries))
        with q.lock:
            q.slots.append(slot)
            while not slot.done:
                if q.leading:
                    q.lock.wait()
                    continue
                q.leading = True
                slots, q.slots = q.slots, []
                completions, q.completions = q.completions, []
                q.lock.release()
                error: BaseException | None = None
                try:
                    self._commit_journal([i for s in slots for i in s.intents], completions)
                except BaseException as e:  # every waiter of this group sees the failure
                    error = e
                finally:
                    q.lock.acquire()
                    q.leading = False
                    for s in slots:
                        s.done, s.error = True, error
                    q.lock.notify_all()
        if slot.error is not None:
            raise slot.error

    def write_done(self, uri: str) -> None:
        """The write of `uri` completed (now): recorded with the next commit of intents, not waited for."""
        q = self._journal_queue()
        with q.lock:
            q.completions.append((uri, time.time()))

    def flush_writes(self) -> None:
        """Commit the completions queued so far."""
        q = self._journal_queue()
        with q.lock:
            pending = bool(q.completions)
        if pending:
            self.record_writes([])

    def _commit_journal(self, intents: list[Intent], completions: list[tuple[str, float]]) -> None:
        if not intents and not completions:
            return
        w = schema.written
        now = time.time()
        with self._write(durable=False) as conn:  # a lost intent only leaks its file (see _write)
            upsert_many(conn, w, ["uri"], [
                {"uri": uri, "slug": slug, "batch": batch, "column": column, "destination": destination,
                 "written_at": now, "done_at": None}
                for uri, slug, batch, column, destination in dict.fromkeys(intents)])
            if completions:  # not if it was recorded again since (another write of it is on)
                conn.execute(_MARK_DONE, [{"b_uri": uri, "b_when": when} for uri, when in completions])

    def journal_entries(self, prefix: str, cutoff: float | None = None) -> list[Written]:
        """Journal entries whose key starts with `prefix`, recorded at or before `cutoff` (None: any)."""
        w = schema.written
        cond = w.c.uri.like(_like_prefix(prefix), escape="\\")
        if cutoff is not None:
            cond &= w.c.written_at <= cutoff
        q = (sa.select(w.c.uri, w.c.slug, w.c.batch, w.c.column, w.c.destination, w.c.written_at, w.c.done_at)
             .where(cond).order_by(w.c.uri))
        with self._read() as conn:
            return [Written(*r) for r in conn.execute(q)]

    def journal_entry(self, uri: str) -> Written | None:
        w = schema.written
        with self._read() as conn:
            r = conn.execute(sa.select(w.c.uri, w.c.slug, w.c.batch, w.c.column, w.c.destination, w.c.written_at,
                                       w.c.done_at).where(w.c.uri == uri)).first()
        return Written(*r) if r is not None else None

    def forget_writes(self, uris: Sequence[str], written_before: float | None = None) -> None:
        """Remove journal entries (files deleted); with `written_before`, only entries not recorded since."""
        if not uris:
            return
        w = schema.written
        with self._write() as conn:
            for uri in dict.fromkeys(uris):
                cond = w.c.uri == uri
                if written_before is not None:
                    cond &= w.c.written_at <= written_before
                conn.execute(w.delete().where(cond))

    # -- gc's claims ---------------------------------------------------------------------------------------
    def claim_batch(self, slug: str, batch: str) -> bool:
        """Claim a batch for deleting its files: True if no run may be writing it (then runs of it wait until
        `release_claim`); False (and no claim kept) if one may."""
        holder = dumps(process_identity())
        with self._write() as conn:
            upsert(conn, schema.gc_claims, {"slug": slug, "batch": batch}, {"holder": holder,
                                                                             "claimed_at": time.time()})
        a, b = schema.active_runs, schema.batches
        with self._read() as conn:
            marks = conn.execute(sa.select(a.c.holder).where(
                (a.c.slug == slug) & (a.c.batch == batch) & (a.c.started_at > time.time() - ACTIVE_RUN_TTL_S))).all()
            status = conn.execute(sa.select(b.c.status).where((b.c.slug == slug) & (b.c.batch == batch))).scalar()
        if any(not holder_gone(m[0]) for m in marks) or (status is not None and status != schema.COMMITTED):
            self.release_claim(slug, batch)
            return False
        return True

    def release_claim(self, slug: str, batch: str) -> None:
        c = schema.gc_claims
        with self._write() as conn:
            conn.execute(c.delete().where((c.c.slug == slug) & (c.c.batch == batch)))


#: a completed write's time, unless its key was recorded again since (built once: see upsert_many)
_MARK_DONE = (schema.written.update()
              .where((schema.written.c.uri == sa.bindparam("b_uri"))
                     & (schema.written.c.written_at <= sa.bindparam("b_when")))
              .values(done_at=sa.bindparam("b_when")))
