"""`python -m bench watch [--objects N] [--new K] [--s3-objects M]`: what one sensor tick costs on a prefix
that already holds N taken objects. (`--events`: listing vs bucket notifications, bench/watch_events.py.)

Local folder: N files, their modification times spread over the last 30 days (an old, busy prefix). One
tick takes them all (N/1000 batches of 1,000). Then, through the table's sensor (built as Dagster builds
it), each of these ticks is timed, and its row-store statements counted (SQLAlchemy events):

- quiet: nothing new;
- new: K new files;
- late: K new files, one of them stamped an hour back (copied with its time kept: below the cursor's
  horizon, so the tick lists twice and asks the database about every name).

Each tick runs twice, once timed and once under tracemalloc for its peak Python memory.

S3 (moto, in this process; `--s3-objects 0` skips it): M objects are put straight into moto's store (the
same objects PutObject makes; puts over HTTP would take moto 15 minutes). Then a first tick takes them
all, and two ticks are measured: K new objects (put over HTTP); K new objects of which one is stamped an
hour back (as S3 stamps a multipart upload with its start). The S3 API calls the store's client makes
are counted by operation (botocore events). Its time is moto's, not S3's: moto takes about 1.5 s per
page of 1,000 keys, S3 about 0.1 s.

The last line is one JSON object: {"objects", "new", "local": {tick: {"seconds", "cpu_s", "peak_mb",
"sql", "cursor_bytes"}}, "s3": {"objects", "first", "new", "late": {"calls": {operation: count}, "sql",
"seconds", "cpu_s", ...}}}. On S3 the tick's CPU is mostly botocore parsing the listing's pages.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import json
import os
import pathlib
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any


def _table(name: str, prefix: str):
    import pxt_assets as pxt

    t = pxt.MediaTable(name, {"img": pxt.Image}, automation=False)
    t.watch(prefix, max_batch_rows=1000, max_batches_per_tick=1000)  # one tick may take a million
    return t


class Sensor:
    """A table's sensor as Dagster runs it (no instance: nothing of an earlier tick is missing here), with the
    statements the row store is sent counted."""

    def __init__(self, table) -> None:
        import sqlalchemy as sa

        from pxt_assets import rowstore

        self.table = table
        self.defs = table.definitions()
        self.sensor = self.defs.resolve_sensor_def(f"{table.spec.slug}_sensor")
        self.cursor: str | None = None
        self.sql: collections.Counter[str] = collections.Counter()

        def count(_conn, _cursor, statement, *_):
            if not statement.startswith("BEGIN"):
                self.sql[statement.split()[0]] += 1

        sa.event.listen(rowstore.for_settings(table.settings).engine, "before_cursor_execute", count)

    def tick(self, *, traced: bool = False, keep: bool = True) -> dict:
        import dagster as dg

        self.sql.clear()
        if traced:
            tracemalloc.start()
        wall, cpu = time.perf_counter(), time.thread_time()  # this thread's CPU: not moto's server threads
        with dg.build_sensor_context(cursor=self.cursor, definitions=self.defs) as ctx:
            result = self.sensor(ctx)
        out = {"seconds": round(time.perf_counter() - wall, 3), "cpu_s": round(time.thread_time() - cpu, 3)}
        if traced:
            out["peak_mb"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
            tracemalloc.stop()
        out.update(rows=sum(int(r.tags["pxt/rows"]) for r in result.run_requests), sql=sum(self.sql.values()),
                   cursor_bytes=len(result.cursor or ""))
        if keep:
            self.cursor = result.cursor
        return out


def _spread_files(folder: pathlib.Path, n: int) -> None:
    folder.mkdir(parents=True)
    now = time.time()
    for i in range(n):
        path = folder / f"{i:07d}.jpg"
        path.write_bytes(b"x")
        stamp = now - 30 * 86400 + i * (30 * 86400 - 3600) / max(n, 1)  # the newest an hour old
        os.utime(path, (stamp, stamp))


def _put_new(folder: pathlib.Path, names: list[str], stamp: float | None = None) -> None:
    for name in names:
        (folder / name).write_bytes(b"x")
        if stamp is not None:
            os.utime(folder / name, (stamp, stamp))


def local(home: pathlib.Path, n: int, k: int) -> dict:
    folder = home / "incoming"
    started = time.perf_counter()
    _spread_files(folder, n)
    print(f"{n} files in {folder} ({time.perf_counter() - started:.1f} s)", flush=True)
    sensor = Sensor(_table("bench/local", str(folder)))
    out = {"first": sensor.tick()}
    assert out["first"]["rows"] == n, out
    print(f"first tick: {json.dumps(out['first'])}", flush=True)

    def measured(name: str, put) -> None:
        put("a")
        timed = sensor.tick()  # the tick Dagster would keep
        put("b")
        traced = sensor.tick(traced=True)
        assert timed["rows"] == traced["rows"], (timed, traced)
        out[name] = {**timed, "peak_mb": traced["peak_mb"]}
        print(f"{name}: {json.dumps(out[name])}", flush=True)

    measured("quiet", lambda _: None)
    measured("new", lambda tag: _put_new(folder, [f"new-{tag}{i}.jpg" for i in range(k)]))

    def late(tag: str) -> None:
        _put_new(folder, [f"late-{tag}{i}.jpg" for i in range(k - 1)])
        _put_new(folder, [f"late-{tag}-old.jpg"], stamp=time.time() - 3600)

    measured("late", late)
    assert out["new"]["rows"] == k and out["late"]["rows"] == k and out["quiet"]["rows"] == 0, out
    return out


@contextlib.contextmanager
def moto_bucket(bucket: str, n: int) -> Iterator[tuple[str, Any, Any]]:
    """moto's server in this process (AWS_ENDPOINT_URL pointing at it), a bucket holding N objects
    `incoming/0000000.jpg`... put straight into moto's store: (endpoint, an S3 client, moto's S3 backend)."""
    import boto3
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        endpoint = "http://127.0.0.1:%d" % server.get_host_and_port()[1]
        os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                          AWS_DEFAULT_REGION="us-east-1")
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        client.create_bucket(Bucket=bucket)
        backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        for i in range(n):
            backend.put_object(bucket, f"incoming/{i:07d}.jpg", b"x")
        yield endpoint, client, backend
    finally:
        server.stop()


def s3(home: pathlib.Path, n: int, k: int) -> dict:
    from pxt_assets import stores
    from pxt_assets.stores.s3 import parse

    with moto_bucket("bench-watch", n) as (_, client, backend):
        prefix = "s3://bench-watch/incoming/"
        calls: collections.Counter[str] = collections.Counter()
        stores.store_for(prefix).clients_for(parse(prefix)).data.meta.events.register(
            "before-call.s3", lambda model, **_: calls.update([model.name]))
        sensor = Sensor(_table("bench/s3", prefix))
        print(f"{n} objects in {prefix} on moto", flush=True)
        out = {"objects": n, "first": {**sensor.tick(), "calls": dict(calls)}}
        print(f"first tick: {json.dumps(out['first'])}", flush=True)
        for i in range(k):
            client.put_object(Bucket="bench-watch", Key=f"incoming/new-{i}.jpg", Body=b"x")
        calls.clear()
        out["new"] = {**sensor.tick(), "calls": dict(calls)}
        print(f"new: {json.dumps(out['new'])}", flush=True)
        for i in range(k - 1):
            client.put_object(Bucket="bench-watch", Key=f"incoming/late-{i}.jpg", Body=b"x")
        # a multipart upload S3 stamps with its start, an hour ago (moto stamps it when done: set it here)
        backend.put_object("bench-watch", "incoming/late-old.jpg", b"x")
        backend.get_object("bench-watch", "incoming/late-old.jpg").last_modified -= datetime.timedelta(hours=1)
        calls.clear()
        out["late"] = {**sensor.tick(), "calls": dict(calls)}
        print(f"late: {json.dumps(out['late'])}", flush=True)
        assert out["new"]["rows"] == k and out["late"]["rows"] == k, out
        return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench watch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--new", type=int, default=None, help="default: 10 (--events: 1000)")
    parser.add_argument("--s3-objects", type=int, default=None, help="default: --objects; 0 skips S3")
    parser.add_argument("--events", action="store_true",
                        help="instead: listing vs bucket notifications (SQS), PUT -> committed row latency and "
                             "requests per 1,000 new objects (bench/watch_events.py)")
    parser.add_argument("--rate", type=float, default=50.0, help="--events: new objects put per second")
    parser.add_argument("--interval", type=float, default=10.0,
                        help="--events: the paced events side's seconds between ticks")
    args = parser.parse_args(argv)
    if args.new is None:
        args.new = 1000 if args.events else 10
    if args.objects < 1 or args.new < 2:
        parser.error("--objects must be >= 1 and --new >= 2")
    home = pathlib.Path(tempfile.mkdtemp(prefix="pxt-bench-watch-"))
    os.environ["PIXELTABLE_HOME"] = str(home)
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    os.environ.pop("PIXELTABLE_DB_URL", None)
    if args.events:
        from bench import watch_events

        print(json.dumps(watch_events.main(args.objects, args.new, args.rate, args.interval)))
        return
    import logging

    logging.getLogger("dagster").setLevel(logging.WARNING)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server: a line per request
    result = {"objects": args.objects, "new": args.new, "local": local(home, args.objects, args.new)}
    s3_objects = args.objects if args.s3_objects is None else args.s3_objects
    if s3_objects > 0:
        result["s3"] = s3(home, s3_objects, args.new)
    print(json.dumps(result))
