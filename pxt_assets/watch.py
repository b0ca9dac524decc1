"""Watching a prefix (a bucket or a local folder) for new objects: sensors and schedules per table.

Each tick lists the prefix (paged), takes the objects it has not taken before, oldest first, and turns them
into new batch partitions of at most `max_batch_rows` rows (a backlog becomes several batches, at most
`max_batches_per_tick` a tick), each with a run of the table's batch job.

What was taken is kept in two places:

- The database: a hash of every object's URI taken (`pxt_watch_taken`), with its batch and the number of
  the tick that planned it, recorded in the transaction that records the batches. An object is never
  taken twice, whatever the cursor says.
- The cursor, which spares a tick asking the database about every object it lists. Object stores give
  modification times in whole seconds, and S3 stamps a multipart upload with its start, so objects appear
  late. The cursor has a horizon `at` (the newest modification time taken, minus `lookback_seconds`). For
  objects above it, it keeps their names (hashed). For objects below it, only their number and the sum of
  their names' 128-bit hashes. A tick sums the names it lists below the horizon:
  - if they match the cursor, every one of them was taken, and the new objects are those above the horizon
    that the cursor does not name (one query confirms them);
  - if they differ (an object that landed below the horizon, a deleted one), the tick asks the database
    about every name it listed (1,000 a query; it kept them from the listing, or lists again past
    KEEP_BELOW) and rebuilds the cursor. A late object is found either way, however late.

The cursor moves on only when Dagster keeps it. Dagster keeps a sensor's cursor after it has recorded the
tick's run requests. Each cursor carries the number of the tick that made it (`seq`). If Dagster never
kept a later tick's cursor (the tick failed after listing, or the daemon died), the batches that tick
recorded are pending batches with a higher number. The next tick requests their runs again, with the same
run keys, skipping those whose runs exist. A schedule keeps its cursor beside the table, in two values: the
last tick's proposal, and the cursor. The proposal becomes the cursor once every run it planned exists in
the Dagster instance.

Batch keys are derived from their objects, so the same objects always make the same batch.

A watch with a queue (`queue=`: an SQS queue receiving the bucket's s3:ObjectCreated:* notifications) does
not list: `event_tick` receives messages, takes the objects they name that were not taken, plans and records
them as above, and only then deletes the messages (see the comment above `event_tick` for why that is
exactly once). `reconcile_every` adds a listing tick now and then, with the same taken record.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import itertools
import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import dagster as dg

from pxt_assets import rowstore, stores
from pxt_assets.config import current_settings
from pxt_assets.faults import fault_point
from pxt_assets.redaction import redact, scrubbing
from pxt_assets.spec import TableSpec
from pxt_assets.stores.base import ObjectInfo

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff")
_SUM = 1 << 128  # sums of names are kept modulo this
_ASK = 1000  # names per database query when a tick asks about every object it lists
#: at most this many names in a cursor (about 50 bytes each): a burst of uploads moves the horizon up instead
SEEN_CAP = 2000
#: a tick keeps (time, URI) of up to this many objects below the horizon (about 25 MB per 100,000), so that a
#: listing that does not match the cursor need not be listed again
KEEP_BELOW = 250_000
RUN_KEY_TAG = "dagster/run_key"


@dataclass
class WatchSpec:
    """What `MediaTable.watch(...)` declared."""

    prefix: str
    column: str
    minimum_interval_seconds: int = 30
    max_batch_rows: int = 1000
    max_batches_per_tick: int = 10
    lookback_seconds: float = 300.0
    cron_schedule: str | None = None
    suffixes: tuple[str, ...] | None = None
    queue: str | None = None  # an SQS queue URL receiving the bucket's s3:ObjectCreated:* events
    reconcile_every: float | None = None  # with a queue: list the prefix this often (seconds), or never

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def _num(x: float) -> float | None:
    return None if x == float("-inf") else x


def _unnum(x: Any) -> float:
    return float("-inf") if x is None else float(x)


@dataclass
class WatchCursor:
    newest: float = float("-inf")  # newest modification time taken
    seen: dict[str, float] = field(default_factory=dict)  # name -> mtime of each object taken at or above `at`
    at: float = float("-inf")  # the horizon: objects taken below it are only counted and summed
    count: int = 0  # how many objects taken below `at`
    total: int = 0  # the sum of their names (as 128-bit numbers), modulo 2**128
    seq: int = 0  # the number of the tick that made this cursor
    reconciled: float | None = None  # with a queue: when the prefix was last listed (epoch seconds)

    def to_json(self) -> str:
        doc = {"v": 2, "seq": self.seq, "newest": _num(self.newest), "at": _num(self.at),
               "count": self.count, "sum": f"{self.total:x}", "seen": self.seen}
        if self.reconciled is not None:
            doc["reconciled"] = self.reconciled
        return json.dumps(doc)

    @classmethod
    def from_json(cls, text: str | None) -> WatchCursor:
        """A cursor from `to_json`. One from the previous release (names hashed otherwise, no horizon) keeps only
        its newest time: the next tick finds what it took from the batches it made."""
        if not text:
            return cls()
        doc = json.loads(text)
        if doc.get("v") != 2:
            return cls(newest=_unnum(doc.get("newest")))
        reconciled = doc.get("reconciled")
        return cls(_unnum(doc["newest"]), dict(doc["seen"]), _unnum(doc["at"]), int(doc["count"]),
                   int(doc["sum"], 16), int(doc["seq"]), None if reconciled is None else float(reconciled))


@dataclass(frozen=True)
class PlannedBatch:
    key: str
    uris: tuple[str, ...]


def _h(uri: str) -> str:
    return hashlib.sha1(uri.encode()).hexdigest()[:16]


def name_of(uri: str) -> str:
    """The name an object is known by in cursors and in the database: a 128-bit hash of its URI."""
    return hashlib.blake2b(uri.encode(), digest_size=16).hexdigest()


Listing = Iterable[ObjectInfo] | Callable[[], Iterable[ObjectInfo]]
Known = Callable[[Sequence[str]], set[str]]
_Candidate = tuple[float, str, str]  # (mtime, uri, name): ordered oldest first, then by URI


def plan(listing: Listing, cursor: WatchCursor, watch: WatchSpec, known: Known | None = None, *,
         reconcile: bool = False) -> tuple[list[PlannedBatch], WatchCursor]:
    """The batches to make from a listing, and the cursor after them. No I/O but what it is given:
    `listing` is a list, or a function that lists the prefix afresh (called again when the cursor's summary
    below its horizon does not match and the prefix holds more than KEEP_BELOW objects below it);
    `known(names)` says which of the names were taken before (the database; default: none). `reconcile`
    asks about every listed name, as after a mismatch (a reset cursor)."""
    relist = listing if callable(listing) else (lambda: iter(listing))
    ask = known or (lambda names: set())
    wants = _wants(watch)

    def wanted() -> Iterable[ObjectInfo]:
        return (o for o in relist() if wants(o.uri))

    limit = watch.max_batch_rows * watch.max_batches_per_tick
    count, total, top = 0, 0, float("-inf")
    below: list[tuple[float, str]] | None = []  # (mtime, uri) below the horizon, while at most KEEP_BELOW
    listed_seen: dict[str, float] = {}  # the names of `seen` listed, with their times now

    def above_horizon() -> Iterable[_Candidate]:
        nonlocal count, total, top, below
        for o in wanted():
            top = max(top, o.mtime)
            name = name_of(o.uri)
            if o.mtime < cursor.at:
                count += 1
                total += int(name, 16)
                if below is not None:
                    below.append((o.mtime, o.uri))
                    if len(below) > KEEP_BELOW:
                        below = None
            elif name in cursor.seen:
                listed_seen[name] = o.mtime
            else:
                yield o.mtime, o.uri, name

    # Only the oldest `limit` candidates are kept while the listing streams by.
    chosen = heapq.nsmallest(limit, above_horizon())
    if not reconcile and (count, total % _SUM) == (cursor.count, cursor.total):
        found = ask([c[2] for c in chosen]) if chosen else set()
        taken = [c for c in chosen if c[2] not in found]
        return _batches(taken, watch), _advance(cursor, watch, taken, [c for c in chosen if c[2] in found],
                                                _floor(chosen, limit))
    at = max(cursor.at, top - watch.lookback_seconds)
    if below is None:  # too many to have kept: list again
        listed: Iterable[_Candidate] = ((o.mtime, o.uri, name_of(o.uri)) for o in wanted())
        taken, after = _reconcile(listed, cursor.seen, cursor, ask, at, limit)
    else:  # what the listing showed is in hand; candidates beyond the oldest `limit` wait above the horizon
        listed = itertools.chain(((m, u, name_of(u)) for m, u in below), chosen,
                                 ((m, "", name) for name, m in listed_seen.items()))
        taken, after = _reconcile(listed, listed_seen, cursor, ask, min(at, _floor(chosen, limit)), limit)
    return _batches(taken, watch), after


def _wants(watch: WatchSpec) -> Callable[[str], bool]:
    """Whether a watch takes the object at a URI, by its name's suffix."""
    suffixes = tuple(s.lower() for s in watch.suffixes) if watch.suffixes else None
    return lambda uri: suffixes is None or uri.lower().split("?")[0].endswith(suffixes)


def _floor(chosen: list[_Candidate], limit: int) -> float:
    """How far the horizon may rise: not above an object left for the next tick (all are at least as new
    as the last one chosen, when the tick was full)."""
    return chosen[-1][0] if len(chosen) == limit else float("inf")


def _advance(cursor: WatchCursor, watch: WatchSpec, taken: list[_Candidate], known: list[_Candidate],
             floor: float) -> WatchCursor:
    """The cursor after a tick whose listing matched it: the names taken (or found taken before) join `seen`,
    and those that fall below the new horizon are folded into the count and sum."""
    if not taken and not known:
        return cursor
    entries = dict(cursor.seen)
    entries.update((name, mtime) for mtime, _, name in taken + known)
    newest = max([cursor.newest] + [c[0] for c in taken + known])
    return _folded(WatchCursor(newest, entries, max(cursor.at, newest - watch.lookback_seconds), cursor.count,
                               cursor.total, cursor.seq), floor)


def _folded(cursor: WatchCursor, floor: float) -> WatchCursor:
    """`cursor` with the names below its horizon folded into its count and sum, the horizon first raised
    (up to `floor`) if more than SEEN_CAP names would stay: just above the time of the newest name that
    must go (with whole-second times, a burst's names share a few seconds)."""
    at = cursor.at
    if len(cursor.seen) > SEEN_CAP:
        cut = heapq.nlargest(SEEN_CAP + 1, cursor.seen.values())[-1]
        at = max(at, min(math.nextafter(cut, math.inf), floor))
    count, total, seen = cursor.count, cursor.total, {}
    for name, mtime in cursor.seen.items():
        if mtime < at:
            count += 1
            total += int(name, 16)
        else:
            seen[name] = mtime
    return WatchCursor(cursor.newest, seen, at, count, total % _SUM, cursor.seq)


def _reconcile(listed: Iterable[_Candidate], seen: dict[str, float], cursor: WatchCursor, ask: Known, at: float,
               limit: int) -> tuple[list[_Candidate], WatchCursor]:
    """Ask which of the names listed were taken before (those in `seen` were; 1,000 names per question),
    take the oldest others, and build the cursor afresh from what is listed, with horizon `at`."""
    after = WatchCursor(cursor.newest, {}, at, 0, 0, cursor.seq)

    def keep(name: str, mtime: float) -> None:
        after.newest = max(after.newest, mtime)
        if mtime < at:
            after.count += 1
            after.total += int(name, 16)
        else:
            after.seen[name] = mtime

    def untaken() -> Iterable[_Candidate]:
        items = iter(listed)
        while chunk := list(itertools.islice(items, _ASK)):
            names = [c[2] for c in chunk if c[2] not in seen]
            found = ask(names) if names else set()
            for mtime, uri, name in chunk:
                if name in seen or name in found:
                    keep(name, mtime)
                else:
                    yield mtime, uri, name

    taken = heapq.nsmallest(limit, untaken())
    for mtime, _, name in taken:
        keep(name, mtime)
    return taken, _folded(after, _floor(taken, limit))


def _batches(taken: list[_Candidate], watch: WatchSpec) -> list[PlannedBatch]:
    batches = []
    for i in range(0, len(taken), watch.max_batch_rows):
        chunk = taken[i : i + watch.max_batch_rows]
        uris = tuple(c[1] for c in chunk)
        stamp = datetime.fromtimestamp(chunk[0][0], timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        batches.append(PlannedBatch(f"{stamp}-{hashlib.sha1(chr(10).join(uris).encode()).hexdigest()[:8]}", uris))
    return batches


def _rows() -> rowstore.RowStore:
    return rowstore.for_settings(current_settings())


def _run_key(spec: TableSpec, key: str) -> str:
    return f"{spec.slug}:{key}"


def _unrequested(rows: rowstore.RowStore, spec: TableSpec, watch: WatchSpec, after_seq: int,
                 instance: Callable[[], dg.DagsterInstance | None]) -> tuple[list[PlannedBatch], int]:
    """The pending batches of ticks numbered above `after_seq` whose runs the instance does not have (all
    of them without an instance), and the highest such tick number (`after_seq` if none)."""
    pending = rows.watch_unconfirmed(spec.slug, name_of(watch.prefix), after_seq)
    if not pending:
        return [], after_seq
    inst = instance()
    have: set[str] = set()
    if inst is not None:
        records = inst.get_run_records(dg.RunsFilter(tags={RUN_KEY_TAG: [_run_key(spec, k) for k, _, _ in pending]}))
        have = {r.dagster_run.tags.get(RUN_KEY_TAG) for r in records}
    batches = [PlannedBatch(key, tuple(r.get(watch.column) for r in manifest))
               for key, _, manifest in pending if _run_key(spec, key) not in have]
    return batches, max(seq for _, seq, _ in pending)


def _listed(rows: rowstore.RowStore, spec: TableSpec, watch: WatchSpec,
            cursor: WatchCursor) -> tuple[list[PlannedBatch], WatchCursor]:
    """List the watched prefix and plan batches of the objects not taken yet (nothing recorded)."""
    slug, watch_key = spec.slug, name_of(watch.prefix)
    reconcile = False
    if cursor.seq == 0:  # a first tick, a reset cursor, or one from the previous release
        if rows.watch_has_taken(slug, watch_key):
            reconcile = True
        else:  # what earlier releases took is in the manifests of the batches they made
            made = rows.batches_from(slug, {"watch": watch.prefix})
            reconcile = rows.record_watch_taken(slug, watch_key, 0, [
                (name_of(r[watch.column]), key) for key, manifest in made for r in manifest if r.get(watch.column)]) > 0
    store = stores.store_for(watch.prefix)
    return plan(lambda: store.list_objects(watch.prefix), cursor, watch,
                lambda names: rows.watch_taken(slug, watch_key, names), reconcile=reconcile)


def _recorded(rows: rowstore.RowStore, spec: TableSpec, watch: WatchSpec, cursor: WatchCursor,
              again: list[PlannedBatch], seq: int, batches: list[PlannedBatch],
              after: WatchCursor) -> tuple[list[PlannedBatch], WatchCursor]:
    """Record a tick's new batches with the names they take, numbered after the cursor (and after any lost
    tick whose batches are requested `again`); the batches to request and the cursor to keep."""
    if not batches and seq == cursor.seq:
        return [], after
    seq = max(seq, cursor.seq + 1)
    if batches:
        rows.record_watch_batches(spec.slug, name_of(watch.prefix), seq, [
            (b.key, [{watch.column: u} for u in b.uris], {"watch": watch.prefix}, [name_of(u) for u in b.uris])
            for b in batches])
    return again + batches, dataclasses.replace(after, seq=seq)


def tick(spec: TableSpec, watch: WatchSpec, cursor: WatchCursor,
         instance: Callable[[], dg.DagsterInstance | None] = lambda: None) -> tuple[list[PlannedBatch], WatchCursor]:
    """List the watched prefix and plan batches: those of earlier ticks whose runs were never requested
    (their cursors were not kept), then new ones, recorded in the database with the names they take (before
    any partition exists, so whichever worker runs a batch finds what to insert)."""
    rows = _rows()  # batches only: the row table is made sure of by the runs that fill it
    again, seq = _unrequested(rows, spec, watch, cursor.seq, instance)
    batches, after = _listed(rows, spec, watch, cursor)
    return _recorded(rows, spec, watch, cursor, again, seq, batches, after)


# -- event mode: the bucket's notifications through an SQS queue --------------------------------------------
#
# A tick long-polls the queue (RECEIVE_WAIT_S for the first answer, then again while answers are full, at most
# the tick's limit of messages and RECEIVE_BUDGET_S), takes the objects the messages name that the watch has
# not taken (the same pxt_watch_taken record as listing: one query per 1,000 names), plans them with `plan`,
# records the batches and their names in one transaction, and only then deletes the messages. So:
#
# - a message delivered twice, late, or again after a tick that recorded its objects and died before deleting
#   it finds its objects taken: it is deleted and adds nothing;
# - a tick that dies before recording deletes nothing: its messages come back after the queue's visibility
#   timeout;
# - messages are deleted inside the sensor function, before Dagster records the run requests it returns.
#   That is safe for the same reason a listing tick's batches are: they are recorded with the tick's number
#   (`seq`), and if Dagster does not keep that tick's cursor, the next tick requests their runs again
#   (`_unrequested`). The event mode's cursor carries `seq` for that, and `reconciled`.
#
# With `reconcile_every`, a tick that finds the last listing that long ago (or none) also lists the prefix as a
# listing watch does, with the listing fields of the same cursor: objects whose notification was lost are
# taken; those taken from events are found taken, never taken again.

RECEIVE_WAIT_S = 5.0  # long polling: how long the first request of a tick waits for a message
RECEIVE_BUDGET_S = 20.0  # how long a tick keeps receiving while messages come (Dagster stops a tick at 60 s)


def _received(queue: Any, watch: WatchSpec, limit: int) -> tuple[list[Any], dict[str, list[ObjectInfo]]]:
    """The messages of one tick, and the objects under the prefix (with a wanted suffix) each one names."""
    from pxt_assets.stores import sqs

    wants = _wants(watch)
    messages = queue.receive(max_messages=limit, wait_s=RECEIVE_WAIT_S, budget_s=RECEIVE_BUDGET_S)
    return messages, {m.id: [o for o in sqs.objects_under(m.body, watch.prefix) if wants(o.uri)] for m in messages}


def event_tick(spec: TableSpec, watch: WatchSpec, cursor: WatchCursor,
               instance: Callable[[], dg.DagsterInstance | None] = lambda: None, *,
               now: float | None = None) -> tuple[list[PlannedBatch], WatchCursor, Callable[[], int]]:
    """A tick of a watch with a queue (see above): the batches to request (earlier ticks' whose runs were
    never requested, then new ones, recorded), the cursor, and `done()`, which deletes the messages whose
    objects are all taken now and makes the others visible again; call it once the batches are recorded (it
    returns how many deletions SQS refused)."""
    from pxt_assets.stores import sqs

    rows = _rows()
    slug, watch_key = spec.slug, name_of(watch.prefix)
    now = time.time() if now is None else now
    again, seq = _unrequested(rows, spec, watch, cursor.seq, instance)
    listed: list[PlannedBatch] = []
    after = cursor
    if watch.reconcile_every is not None and (cursor.reconciled is None
                                              or now - cursor.reconciled >= watch.reconcile_every):
        listed, after = _listed(rows, spec, watch, cursor)
        after = dataclasses.replace(after, reconciled=now)
    queue = sqs.queue_for(watch.queue, watch.prefix)
    limit = watch.max_batch_rows * watch.max_batches_per_tick
    messages, named = _received(queue, watch, limit)
    first: dict[str, ObjectInfo] = {}  # by URI, its earliest event (a message delivered twice counts once)
    for objects in named.values():
        for o in objects:
            if o.uri not in first or o.mtime < first[o.uri].mtime:
                first[o.uri] = o
    in_listing = {name_of(u) for b in listed for u in b.uris}
    names = {uri: name_of(uri) for uri in first}
    known = rows.watch_taken(slug, watch_key, list(names.values())) | in_listing
    fresh = [o for uri, o in first.items() if names[uri] not in known]
    events, _ = plan(fresh, WatchCursor(), watch)
    taken = known | {name_of(u) for b in events for u in b.uris}
    finished, left = [], []  # a message naming an object left for a later tick (past `limit`) is kept
    for m in messages:
        (finished if all(name_of(o.uri) in taken for o in named[m.id]) else left).append(m)
    out, after = _recorded(rows, spec, watch, cursor, again, seq, listed + events, after)

    def done() -> int:
        if left:
            queue.release(left)  # for the next tick, not after the visibility timeout
        return queue.delete(finished) if finished else 0

    return out, after, done


def sensor_name(spec: TableSpec) -> str:
    return f"{spec.slug}_sensor"


def schedule_name(spec: TableSpec) -> str:
    return f"{spec.slug}_schedule"


def _run_request(spec: TableSpec, watch: WatchSpec, b: PlannedBatch) -> dg.RunRequest:
    return dg.RunRequest(run_key=_run_key(spec, b.key), partition_key=b.key,
                         tags={"pxt/watch": redact(watch.prefix), "pxt/rows": str(len(b.uris))})


def _instance_of(context: dg.SensorEvaluationContext | dg.ScheduleEvaluationContext) -> Callable[[], Any]:
    def get() -> dg.DagsterInstance | None:
        try:
            return context.instance
        except dg.DagsterInvariantViolationError:  # a context built in a test without an instance
            return None

    return get


def build_sensor(spec: TableSpec, watch: WatchSpec, job_name: str,
                 pdef: dg.DynamicPartitionsDefinition) -> dg.SensorDefinition:
    @dg.sensor(
        name=sensor_name(spec),
        job_name=job_name,
        minimum_interval_seconds=watch.minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=redact(f"New objects under {watch.prefix} become batches of {spec.display_path}.{watch.column}"
                           + (f", from the bucket's notifications in {watch.queue}" if watch.queue else "")),
    )
    @scrubbing  # a failed tick's error, as Dagster stores it, carries no credential
    def watch_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        # Dagster keeps the returned cursor only once it has recorded the run requests returned with it.
        previous = WatchCursor.from_json(context.cursor)
        if watch.queue is None:
            batches, cursor = tick(spec, watch, previous, _instance_of(context))
            done: Callable[[], int] = lambda: 0  # noqa: E731
        else:
            batches, cursor, done = event_tick(spec, watch, previous, _instance_of(context))
        if not batches:
            result = dg.SensorResult(skip_reason=redact(f"no new objects under {watch.prefix}"),
                                     cursor=cursor.to_json())
        else:
            rows = sum(len(b.uris) for b in batches)
            context.log.info(f"{spec.display_path}: {rows} objects under {watch.prefix} -> {len(batches)} batches")
            result = dg.SensorResult(
                run_requests=[_run_request(spec, watch, b) for b in batches],
                dynamic_partitions_requests=[pdef.build_add_request([b.key for b in batches])],
                cursor=cursor.to_json(),
            )
        # The batches are recorded: the messages may go (see event_tick; a lost tick's runs are asked again).
        fault_point("watch_before_delete")
        refused = done()
        if refused:
            context.log.warning(f"{refused} messages of {redact(str(watch.queue))} were not deleted: they come "
                                "back and find their objects taken")
        return result

    return watch_sensor


def build_schedule(spec: TableSpec, watch: WatchSpec, job_name: str,
                   pdef: dg.DynamicPartitionsDefinition) -> dg.ScheduleDefinition:
    """The fixed-cadence variant. Schedules have no cursor of their own: it lives in the database, and a
    tick's cursor is kept there as a proposal until the runs it asked for exist."""

    @dg.schedule(
        name=schedule_name(spec),
        job_name=job_name,
        cron_schedule=watch.cron_schedule,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=redact(f"On '{watch.cron_schedule}', new objects under {watch.prefix} become batches of "
                           f"{spec.display_path}.{watch.column}"),
    )
    @scrubbing
    def watch_schedule(context: dg.ScheduleEvaluationContext):
        rows, instance = _rows(), _instance_of(context)
        key = f"watch:{spec.slug}:{_h(watch.prefix)}"
        cursor = WatchCursor.from_json(rows.get_value(key))
        proposed = WatchCursor.from_json(rows.get_value(key + ":proposed"))
        if proposed.seq > cursor.seq and not _unrequested(rows, spec, watch, cursor.seq, instance)[0]:
            cursor = proposed  # every run the last tick asked for exists
            rows.set_value(key, cursor.to_json())
        batches, after = tick(spec, watch, cursor, instance)
        if not batches:
            rows.set_value(key, after.to_json())
            return dg.SkipReason(redact(f"no new objects under {watch.prefix}"))
        context.instance.add_dynamic_partitions(pdef.name, [b.key for b in batches])  # existing keys are skipped
        rows.set_value(key + ":proposed", after.to_json())
        return [_run_request(spec, watch, b) for b in batches]

    return watch_schedule
