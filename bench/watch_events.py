"""`python -m bench watch --events [--objects N] [--new K] [--rate R]`: new objects on a prefix that already
holds N objects, found by listing vs by the bucket's notifications (an SQS queue): the latency from PUT to
committed row, and the requests the watch makes per 1,000 new objects.

Everything on moto's server, in this process. The N objects are put straight into moto's store (as
`bench watch` does; puts over HTTP would take moto many minutes). Then two tables watch the same prefix:

- listing (`t.watch(prefix)`): a first tick takes the N objects (their batches are recorded, not run);
- events (`t.watch(prefix, queue=URL)`), the bucket's notifications configured with
  `stores.sqs.setup_notifications` (what `python -m pxt_assets watch-setup` does) after the listing phase, so
  that its queue holds only its own phase's objects.

Each phase: a thread puts K new objects at R a second (timestamps taken when each PUT returned), while the
table's sensor ticks back to back (as the daemon would with a minimum interval shorter than a tick) and each
batch it asks for is run at once in this process (the batch job, `execute_in_process`); an object's latency
ends when its batch's run has committed. The listing side is its best case: a daemon with
`minimum_interval_seconds=30` adds up to 30 s. The events side runs twice: back to back, then paced as a
sensor with `minimum_interval_seconds=--interval` (default 10) ticks, each tick taking what accumulated. The
S3 and SQS calls of the watch's clients are counted by operation (botocore events): ListObjectsV2 per tick,
ReceiveMessage and DeleteMessageBatch.

The last line is one JSON object: {"objects", "new", "rate_per_s", "listing": {...}, "events": {...},
"events_paced": {...}}, each side {"interval_s", "p50_s", "p95_s", "max_s", "ticks", "sensor_s" (in the sensor
function: listing or receiving, recording, deleting), "run_s" (in the batch runs), "put_s" (from the first PUT
to the last: the producer shares this process), "calls": {operation: count}, "requests_per_1000_new"}.
"""

from __future__ import annotations

import collections
import json
import statistics
import threading
import time

PREFIX_BUCKET = "bench-events"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


class Side:
    """One table's sensor ticked back to back, its batches run here, each object's commit time recorded."""

    def __init__(self, table, instance) -> None:
        from pxt_assets.assets import batch_job_name

        self.table, self.instance = table, instance
        self.defs = table.definitions()
        self.sensor = self.defs.resolve_sensor_def(f"{table.spec.slug}_sensor")
        self.job = self.defs.resolve_job_def(batch_job_name(table.spec))
        self.cursor: str | None = None
        self.ticks = 0
        self.sensor_s = self.run_s = 0.0  # seconds in the sensor function (receiving, recording, deleting), in runs

    def tick(self, run: bool = True) -> dict[str, float]:
        """One tick; with `run`, each batch run at once. The commit time of each object taken."""
        import dagster as dg

        started = time.perf_counter()
        with dg.build_sensor_context(cursor=self.cursor, definitions=self.defs, instance=self.instance) as ctx:
            result = self.sensor(ctx)
        self.sensor_s += time.perf_counter() - started
        self.cursor = result.cursor
        self.ticks += 1
        done: dict[str, float] = {}
        if not run:
            return done
        from pxt_assets import rowstore

        store = rowstore.for_settings(self.table.settings)
        for req in result.dynamic_partitions_requests:
            self.instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
        for rr in result.run_requests:
            started = time.perf_counter()
            assert self.job.execute_in_process(instance=self.instance, partition_key=rr.partition_key).success
            self.run_s += time.perf_counter() - started
            at = time.time()
            for r in store.manifest(self.table.spec.slug, rr.partition_key):
                done[r["img"]] = at
        return done


def _phase(side: Side, put, names: list[str], rate: float, calls: collections.Counter,
           interval: float = 0.0) -> dict:
    put_at: dict[str, float] = {}

    def produce() -> None:
        start = time.monotonic()
        for i, name in enumerate(names):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            put_at[put(name)] = time.time()

    calls.clear()
    ticks_before, sensor_before, run_before = side.ticks, side.sensor_s, side.run_s
    producer = threading.Thread(target=produce, name="bench-producer")
    producer.start()
    committed: dict[str, float] = {}
    while len(committed) < len(names):
        started = time.monotonic()
        committed.update(side.tick())
        time.sleep(max(0.0, started + interval - time.monotonic()))  # a sensor's minimum interval
        print(f"  tick {side.ticks - ticks_before}: {len(committed)}/{len(names)} committed", flush=True)
    producer.join()
    latency = [committed[u] - put_at[u] for u in put_at]
    watch_calls = {k: v for k, v in calls.items() if k in ("ListObjectsV2", "ReceiveMessage", "DeleteMessageBatch")}
    return {"interval_s": interval, "p50_s": round(statistics.median(latency), 2),
            "p95_s": round(_percentile(latency, 0.95), 2),
            "max_s": round(max(latency), 2), "ticks": side.ticks - ticks_before,
            "sensor_s": round(side.sensor_s - sensor_before, 1), "run_s": round(side.run_s - run_before, 1),
            "put_s": round(max(put_at.values()) - min(put_at.values()), 1), "calls": dict(calls),
            "requests_per_1000_new": round(sum(watch_calls.values()) * 1000 / len(names), 1)}


def run(n: int, k: int, rate: float, interval: float) -> dict:
    import boto3
    import dagster as dg

    import pxt_assets as pxt
    from bench.watch import moto_bucket
    from pxt_assets import stores, watch
    from pxt_assets.stores import sqs
    from pxt_assets.stores.s3 import parse

    started = time.perf_counter()
    with moto_bucket(PREFIX_BUCKET, n) as (endpoint, s3, _):
        queue = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1").create_queue(
            QueueName="bench-events", Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
        prefix = f"s3://{PREFIX_BUCKET}/incoming/"
        print(f"{n} objects in {prefix} on moto ({time.perf_counter() - started:.0f} s)", flush=True)

        def put(name: str) -> str:
            s3.put_object(Bucket=PREFIX_BUCKET, Key="incoming/" + name, Body=b"x")
            return prefix + name

        instance = dg.DagsterInstance.ephemeral()
        listing_t = pxt.MediaTable("bench/listing", {"img": pxt.Image}, automation=False)
        listing_t.watch(prefix, max_batch_rows=1000, max_batches_per_tick=1000)
        events_t = pxt.MediaTable("bench/events", {"img": pxt.Image}, automation=False)
        events_t.watch(prefix, queue=queue, max_batch_rows=1000, max_batches_per_tick=10)
        calls: collections.Counter[str] = collections.Counter()
        stores.store_for(prefix).clients_for(parse(prefix)).data.meta.events.register(
            "before-call.s3", lambda model, **_: calls.update([model.name]))
        sqs.queue_for(queue, prefix).client.meta.events.register(
            "before-call.sqs", lambda model, **_: calls.update([model.name]))

        listing = Side(listing_t, instance)
        started = time.perf_counter()
        listing.tick(run=False)  # takes the N objects already there (batches recorded, not run)
        print(f"listing: first tick took the {n} objects ({time.perf_counter() - started:.0f} s)", flush=True)
        out = {"objects": n, "new": k, "rate_per_s": rate, "receive_wait_s": watch.RECEIVE_WAIT_S}
        out["listing"] = _phase(listing, put, [f"listed-{i:05d}.jpg" for i in range(k)], rate, calls)
        print(f"listing: {json.dumps(out['listing'])}", flush=True)

        sqs.setup_notifications(prefix, queue, "pxt-bench")
        events = Side(events_t, instance)
        events.tick()  # the configuration's s3:TestEvent
        out["events"] = _phase(events, put, [f"evented-{i:05d}.jpg" for i in range(k)], rate, calls)
        print(f"events: {json.dumps(out['events'])}", flush=True)
        out["events_paced"] = _phase(events, put, [f"paced-{i:05d}.jpg" for i in range(k)], rate, calls, interval)
        print(f"events_paced: {json.dumps(out['events_paced'])}", flush=True)
        return out


def main(n: int, k: int, rate: float, interval: float) -> dict:
    import logging

    logging.getLogger("dagster").setLevel(logging.WARNING)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    return run(n, k, rate, interval)
