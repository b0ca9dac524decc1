"""`python -m bench udf [--rows N]`: UDF call strategies, each against plain Python measured in the same run.

- async: N rows of an async UDF that awaits 0.3 s (an API call). pxt_assets (insert, computed step, commit)
  (a second insert; the process's first one also opens the instance and database) against plain Python
  awaiting the calls one after another, and against an asyncio.gather bounded like the
  UDF (16): the best plain Python can do.
- batched: N rows of a "model" that costs 20 ms per call plus 1 ms per image (a GPU forward pass): a
  batch_size=16 UDF against the same function called once per row by a plain loop.

The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time

import pxt_assets as pxt
from pxt_assets.functions.udf import DEFAULT_ASYNC_CONCURRENCY

DELAY_S = 0.3
CALL_COST_S, ITEM_COST_S = 0.020, 0.001


async def call(x: int) -> int:
    await asyncio.sleep(DELAY_S)
    return x + 1


@pxt.udf
async def api(x: int) -> int:
    return await call(x)


def model(xs: list[int]) -> list[int]:
    time.sleep(CALL_COST_S + ITEM_COST_S * len(xs))
    return [x * 2 for x in xs]


@pxt.udf(batch_size=16)
def batched(xs: pxt.Batch[int]) -> pxt.Batch[int]:
    return model(xs)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench udf")
    parser.add_argument("--rows", type=int, default=40)
    args = parser.parse_args(argv)
    n = args.rows
    os.environ["PIXELTABLE_HOME"] = tempfile.mkdtemp(prefix="bench-udf-")
    os.environ["DAGSTER_HOME"] = tempfile.mkdtemp(prefix="bench-udf-dagster-")
    pxt.create_dir("bench")
    t = pxt.create_table("bench/udf", {"x": pxt.Int})
    t.add_computed_column(y=api(t.x))
    started = time.perf_counter()
    t.insert([{"x": i} for i in range(n)])
    pxt_async_cold = time.perf_counter() - started  # the process's first insert: instance, database, ...
    started = time.perf_counter()
    t.insert([{"x": i} for i in range(n)])
    pxt_async = time.perf_counter() - started
    assert t.where(t.y == None).count() == 0  # noqa: E711

    async def sequential() -> None:
        for i in range(n):
            await call(i)

    async def bounded() -> None:
        limit = asyncio.Semaphore(DEFAULT_ASYNC_CONCURRENCY)

        async def one(i: int) -> int:
            async with limit:
                return await call(i)

        await asyncio.gather(*(one(i) for i in range(n)))

    started = time.perf_counter()
    asyncio.run(sequential())
    plain_sequential = time.perf_counter() - started
    started = time.perf_counter()
    asyncio.run(bounded())
    plain_gather = time.perf_counter() - started

    b = pxt.create_table("bench/batched", {"x": pxt.Int})
    b.add_computed_column(y=batched(b.x))
    started = time.perf_counter()
    b.insert([{"x": i} for i in range(n * 4)])
    pxt_batched = time.perf_counter() - started
    started = time.perf_counter()
    for i in range(n * 4):
        model([i])
    plain_per_row = time.perf_counter() - started

    result = {
        "async_rows": n, "pxt_async_s": round(pxt_async, 2), "pxt_async_first_insert_s": round(pxt_async_cold, 2), "plain_sequential_s": round(plain_sequential, 2),
        "plain_bounded_gather_s": round(plain_gather, 2),
        "async_speedup_vs_sequential": round(plain_sequential / pxt_async, 1),
        "batched_rows": n * 4, "pxt_batched_s": round(pxt_batched, 2), "plain_per_row_s": round(plain_per_row, 2),
        "batched_speedup_vs_per_row": round(plain_per_row / pxt_batched, 1),
    }
    print(json.dumps(result))
