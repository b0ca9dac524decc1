"""The pxt_assets side: the seed pipeline as a media table on S3 (moto), one process. Prints one JSON line.

Sequence (one process, so both 10-row batches see the same warm state): a 1-row warm-up table; a 10-row
batch on an empty table; the N-row batch (throughput, requests, memory); a 10-row batch on the N-row table
(sources read before: in the cache) and a 20-row batch of new sources on it (`batch20_on_n_s`: 20 GETs);
then presigned URLs per second on one thread."""

from __future__ import annotations

import argparse
import json
import os
import time

import pxt_assets as pxt
from bench.common import OUT_BUCKET, SRC_BUCKET, RequestCounter, cpu_seconds, peak_rss_mb
from pxt_assets.functions import net
from pxt_assets.instance import get_instance
from pxt_assets.stores.s3 import S3Store, parse


def build(name: str) -> pxt.MediaTable:
    t = pxt.MediaTable(f"bench/{name}", {"source_image": pxt.Image})
    t.add_computed_column(rotated=t.source_image.rotate(90), destination=f"s3://{OUT_BUCKET}/{name}/rotated/")
    t.add_computed_column(flipped=t.source_image.transpose(0), destination=f"s3://{OUT_BUCKET}/{name}/flipped/")
    t.add_computed_column(thumbnail=t.source_image.thumbnail((128, 128)),
                          destination=f"s3://{OUT_BUCKET}/{name}/thumbnail/")
    t.add_computed_column(width=t.source_image.width)
    t.add_computed_column(height=t.source_image.height)
    t.add_computed_column(serving_url=net.presigned_url(t.thumbnail.fileurl, 3600))
    return t


def rows(prefix: str, n: int, start: int = 0) -> list[dict[str, str]]:
    return [{"source_image": f"s3://{SRC_BUCKET}/{prefix}/{i:06d}.jpg"} for i in range(start, start + n)]


def timed_insert(t: pxt.MediaTable, batch: list[dict[str, str]], instance) -> float:
    started = time.perf_counter()
    result = t.insert(batch, instance=instance)
    seconds = time.perf_counter() - started
    assert result.num_errors == 0, f"{result.num_errors} errors"
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, required=True)
    args = parser.parse_args()
    instance = get_instance()
    store = S3Store()
    import pxt_assets.stores as stores_mod

    store = stores_mod.store_for(f"s3://{SRC_BUCKET}/")
    counter = RequestCounter()
    counter.attach(store.clients_for(parse(f"s3://{SRC_BUCKET}/x")).data)

    timed_insert(build("warmup"), rows("extra", 1), instance)
    batch10_on_empty = timed_insert(build("empty"), rows("extra", 10), instance)

    table = build("main")
    gets0, puts0 = counter.get("GET", SRC_BUCKET), counter.get("PUT", OUT_BUCKET)
    cpu0, times0 = cpu_seconds(), os.times()
    seconds = timed_insert(table, rows("src", args.n), instance)
    cpu, times1 = cpu_seconds() - cpu0, os.times()
    gets = counter.get("GET", SRC_BUCKET) - gets0
    puts = counter.get("PUT", OUT_BUCKET) - puts0
    rss = peak_rss_mb()
    assert table.count() == args.n

    batch10_on_n = timed_insert(table, rows("extra", 10), instance)
    batch20_on_n = timed_insert(table, rows("extra", 20, start=10), instance)

    uri = f"s3://{OUT_BUCKET}/main/thumbnail/x.jpg"
    store.presign(uri, 3600)
    started, k = time.perf_counter(), 20_000
    for i in range(k):
        store.presign(f"s3://{OUT_BUCKET}/main/thumbnail/{i}.jpg", 3600)
    presign_per_s = k / (time.perf_counter() - started)

    print(json.dumps({
        "rows_per_s": args.n / seconds, "seconds": seconds, "cpu_s": cpu,
        "user_s": times1.user - times0.user, "sys_s": times1.system - times0.system,
        "gets_per_source": gets / args.n, "puts_per_output": puts / (3 * args.n), "peak_rss_mb": rss,
        "batch10_on_n_s": batch10_on_n, "batch20_on_n_s": batch20_on_n,
        "batch10_on_empty_s": batch10_on_empty,
        "presign_per_s": presign_per_s,
    }))


if __name__ == "__main__":
    main()
