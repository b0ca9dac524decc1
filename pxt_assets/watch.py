"""Watching a prefix (a bucket or a local folder) for new objects: sensors and schedules per table.

Each tick lists the prefix (paged), takes the objects it has not seen, oldest first, and turns them into
new batch partitions of at most `max_batch_rows` rows (a backlog becomes several batches, at most
`max_batches_per_tick` a tick), each with a run of the table's batch job.

The cursor is the newest modification time taken plus the (hashed) names of every object taken in a
look-back window before it. Object stores give modification times in whole seconds (and S3 stamps a
multipart upload with its start), so "newer than the cursor" alone would skip objects written in the same
second as the last tick, or finished late; names within the window catch those, and never twice.
Batch keys are derived from their objects, so a tick retried after a failure re-creates the same batch.
"""

from __future__ import annotations

import hashlib
import heapq
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import dagster as dg

from pxt_assets import rowstore, stores
from pxt_assets.config import current_settings
from pxt_assets.redaction import redact, scrubbing
from pxt_assets.spec import TableSpec

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff")


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

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass
class WatchCursor:
    newest: float = float("-inf")  # newest modification time taken
    seen: dict[str, float] = field(default_factory=dict)  # hash(uri) -> mtime, for mtime >= newest - lookback

    def to_json(self) -> str:
        return json.dumps({"newest": self.newest if self.newest != float("-inf") else None, "seen": self.seen})

    @classmethod
    def from_json(cls, text: str | None) -> WatchCursor:
        if not text:
            return cls()
        doc = json.loads(text)
        newest = doc.get("newest")
        return cls(float("-inf") if newest is None else float(newest), dict(doc.get("seen", {})))


@dataclass(frozen=True)
class PlannedBatch:
    key: str
    uris: tuple[str, ...]


def _h(uri: str) -> str:
    return hashlib.sha1(uri.encode()).hexdigest()[:16]


def plan(objects: Iterable[stores.ObjectInfo], cursor: WatchCursor, watch: WatchSpec) -> tuple[list[PlannedBatch], WatchCursor]:
    """The batches to create from a listing, and the cursor after them (pure: no I/O)."""
    horizon = cursor.newest - watch.lookback_seconds
    suffixes = tuple(s.lower() for s in watch.suffixes) if watch.suffixes else None

    def fresh(o: stores.ObjectInfo) -> bool:
        if o.mtime < horizon or _h(o.uri) in cursor.seen:
            return False
        return suffixes is None or o.uri.lower().split("?")[0].endswith(suffixes)

    limit = watch.max_batch_rows * watch.max_batches_per_tick
    # Only the oldest `limit` unseen objects are kept while the listing streams by.
    taken = heapq.nsmallest(limit, (o for o in objects if fresh(o)), key=lambda o: (o.mtime, o.uri))
    if not taken:
        return [], cursor
    batches = []
    for i in range(0, len(taken), watch.max_batch_rows):
        chunk = taken[i : i + watch.max_batch_rows]
        uris = tuple(o.uri for o in chunk)
        stamp = datetime.fromtimestamp(chunk[0].mtime, timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        batches.append(PlannedBatch(f"{stamp}-{hashlib.sha1(chr(10).join(uris).encode()).hexdigest()[:8]}", uris))
    newest = max(cursor.newest, taken[-1].mtime)
    seen = {h: m for h, m in cursor.seen.items() if m >= newest - watch.lookback_seconds}
    seen.update({_h(o.uri): o.mtime for o in taken})
    return batches, WatchCursor(newest, seen)


def _rows() -> rowstore.RowStore:
    return rowstore.for_settings(current_settings())


def tick(spec: TableSpec, watch: WatchSpec, cursor: WatchCursor) -> tuple[list[PlannedBatch], WatchCursor]:
    """List the watched prefix, plan batches and record them in the database (before any partition
    exists), so whichever worker runs a batch finds what to insert."""
    store = stores.store_for(watch.prefix)
    batches, new_cursor = plan(store.list_objects(watch.prefix), cursor, watch)
    if batches:
        rows = _rows()
        rows.for_spec(spec)
        for b in batches:
            rows.create_batch(spec.slug, b.key, [{watch.column: u} for u in b.uris], source={"watch": watch.prefix})
    return batches, new_cursor


def sensor_name(spec: TableSpec) -> str:
    return f"{spec.slug}_sensor"


def schedule_name(spec: TableSpec) -> str:
    return f"{spec.slug}_schedule"


def _run_request(spec: TableSpec, watch: WatchSpec, b: PlannedBatch) -> dg.RunRequest:
    return dg.RunRequest(run_key=f"{spec.slug}:{b.key}", partition_key=b.key,
                         tags={"pxt/watch": redact(watch.prefix), "pxt/rows": str(len(b.uris))})


def build_sensor(spec: TableSpec, watch: WatchSpec, job_name: str,
                 pdef: dg.DynamicPartitionsDefinition) -> dg.SensorDefinition:
    @dg.sensor(
        name=sensor_name(spec),
        job_name=job_name,
        minimum_interval_seconds=watch.minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=redact(f"New objects under {watch.prefix} become batches of {spec.display_path}.{watch.column}"),
    )
    @scrubbing  # a failed tick's error, as Dagster stores it, carries no credential
    def watch_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        batches, cursor = tick(spec, watch, WatchCursor.from_json(context.cursor))
        if not batches:
            return dg.SensorResult(skip_reason=redact(f"no new objects under {watch.prefix}"), cursor=cursor.to_json())
        rows = sum(len(b.uris) for b in batches)
        context.log.info(f"{spec.display_path}: {rows} new objects under {watch.prefix} -> {len(batches)} batches")
        return dg.SensorResult(
            run_requests=[_run_request(spec, watch, b) for b in batches],
            dynamic_partitions_requests=[pdef.build_add_request([b.key for b in batches])],
            cursor=cursor.to_json(),
        )

    return watch_sensor


def build_schedule(spec: TableSpec, watch: WatchSpec, job_name: str,
                   pdef: dg.DynamicPartitionsDefinition) -> dg.ScheduleDefinition:
    """The fixed-cadence variant. Schedules have no cursor of their own: it lives in the database."""

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
        key = f"watch:{spec.slug}:{_h(watch.prefix)}"
        cursor = WatchCursor.from_json(_rows().get_value(key))
        batches, cursor = tick(spec, watch, cursor)
        if not batches:
            _rows().set_value(key, cursor.to_json())
            return dg.SkipReason(redact(f"no new objects under {watch.prefix}"))
        context.instance.add_dynamic_partitions(pdef.name, [b.key for b in batches])
        _rows().set_value(key, cursor.to_json())
        return [_run_request(spec, watch, b) for b in batches]

    return watch_schedule
