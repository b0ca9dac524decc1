"""What every step of a batch shares: progress lines and bars, the row pool, the worker's name, the commit."""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import gc
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg

from pxt_assets import console, memory
from pxt_assets.assets.names import MEDIA_IO, asset_key
from pxt_assets.exceptions import ErrorCode, RequestError
from pxt_assets.io_managers import MediaIOManager
from pxt_assets.spec import TableSpec

# Rows wait on storage most of the time (downloads, uploads): more threads than cores keep both busy.
WORKERS = max(8, min(16, (os.cpu_count() or 2) * 4))
PROGRESS_EVERY_S = 5.0

class Progress:
    """Logs 'k/n rows' at most every few seconds, so long batches show they are moving."""

    def __init__(self, log, what: str, total: int) -> None:
        self.log, self.what, self.total = log, what, total
        self.done, self.last = 0, time.monotonic()
        self.bar = console.bar(total, what)  # a tqdm bar, for a run in the notebook's own process

    def step(self) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
            if self.done >= self.total:
                self.bar.close()
        now = time.monotonic()
        if now - self.last >= PROGRESS_EVERY_S and self.done < self.total:
            self.last = now
            self.log.info(f"{self.what}: {self.done}/{self.total} rows")


@contextlib.contextmanager
def long_lived_objects_frozen() -> Iterator[None]:
    """Keep the garbage collector off the objects that exist before a batch (Dagster, pandas, definitions:
    hundreds of thousands) while the batch runs. Each row allocates enough to trigger collections, and every
    full collection walked all of them: about 7% of a batch's CPU (perf). Unfrozen afterwards, so nothing
    frozen stays uncollectable."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextlib.contextmanager
def row_pool() -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    """A bounded thread pool for a batch's rows (Pillow and I/O release the GIL)."""
    memory.tune_malloc_for_batches()
    with long_lived_objects_frozen(), \
            concurrent.futures.ThreadPoolExecutor(WORKERS, thread_name_prefix="pxt-row") as pool:
        yield pool


def map_rows(fn: Callable[[int], Any], n: int, progress: Progress) -> list[Any]:
    """fn(i) for every row on the row pool, in row order."""
    results: list[Any] = [None] * n
    with row_pool() as pool:
        futures = {pool.submit(fn, i): i for i in range(n)}
        for fut in concurrent.futures.as_completed(futures):
            results[futures[fut]] = fut.result()
            progress.step()
    return results



def computed_later_in_run(context: dg.AssetExecutionContext, spec: TableSpec) -> bool:
    """Whether this run also computes columns of the table (then that step commits the batch)."""
    planned = context.run.asset_selection or context.job_def.asset_layer.selected_asset_keys
    return any(asset_key(spec, c.name) in planned for c in spec.computed_columns())


def on_worker(context: dg.AssetExecutionContext) -> None:
    """Say which worker runs the step, when it has a name (PXT_WORKER_NAME: scale-out demos and tests)."""
    name = os.environ.get("PXT_WORKER_NAME")
    if name:
        context.log.info(f"pxt worker {name}: step {context.op_def.name}")


#: the run tag that tells a batch's steps what to do with a row's error: 'abort' (the batch is not committed)
#: or absent / 'ignore' (the row is kept with its error: the sensors', the jobs' and automation's runs)
ON_ERROR_TAG = "pxt/on_error"
#: how the reason of a batch (or the failure of a step) that on_error='abort' stopped begins
ABORT_MARK = "on_error='abort': "


def aborted_error(text: str | None) -> RequestError | None:
    """The pxt.Error an on_error='abort' stop carries in `text` (a batch's reason, a step's failure), or None."""
    if not text or ABORT_MARK not in text:
        return None
    return RequestError(ErrorCode.UNSUPPORTED_OPERATION, text[text.index(ABORT_MARK) + len(ABORT_MARK):].strip())


def refuse_errors(context: dg.AssetExecutionContext, media_io: MediaIOManager, spec: TableSpec, batch: str) -> None:
    """on_error='abort' (the run's ON_ERROR_TAG): a row error among what the run staged stops it before the
    commit, so no row of the batch becomes visible; the batch's reason (and the step's failure) names the
    column, the row and its input."""
    if context.run.tags.get(ON_ERROR_TAG) != "abort":
        return
    errors = media_io.rowstore().staged_errors(spec.slug, batch)
    col = next((c for c in spec.columns.values() if c.name in errors), None)  # a source's before what it fails
    if col is None:
        return
    rid, message = errors[col.name]
    pos = int(rid.rsplit("-", 1)[-1]) if rid.rsplit("-", 1)[-1].isdigit() else rid
    reason = (f"{ABORT_MARK}{spec.display_path}: column {col.name!r} failed for row {pos} "
              f"({_inputs(media_io, spec, batch, col, rid, pos)}): {message}")
    media_io.fail(spec, batch, context.run_id, reason)
    raise dg.Failure(description=reason)


def _inputs(media_io: MediaIOManager, spec: TableSpec, batch: str, col: Any, rid: str, pos: Any) -> str:
    """What a row's failed column was given: the inserted value, or the values of the columns it reads."""
    try:
        if col.expr is None:
            manifest = media_io.manifest(spec, batch)
            return f"input {col.name}={manifest[pos].get(col.name)!r:.300}"
        names = sorted(col.expr.columns())
        got = media_io.read_columns(spec, batch, names)
        return "inputs " + ", ".join(f"{n}={got.get(n, {}).get(rid, {}).get('value')!r:.300}" for n in names)
    except Exception as e:  # noqa: BLE001 - the error is reported anyway; its inputs as far as they are read
        return f"inputs not readable: {type(e).__name__}"


def commit(context: dg.AssetExecutionContext, media_io: MediaIOManager, spec: TableSpec, batch: str) -> None:
    refuse_errors(context, media_io, spec, batch)
    result = media_io.commit(spec, batch, context.log, context.run_id)
    if result.waiting:
        context.log.warning(f"{spec.display_path}: batch {batch} not committed: column(s) "
                            f"{', '.join(result.waiting)} not computed for it yet (staged; it commits once they are)")
        return
    context.log.info(f"{spec.display_path}: batch {batch} committed: {result.rows} rows, {result.errors} with errors")


def batch_step(spec: TableSpec) -> Callable[[Callable[..., Iterator[Any]]], Callable[..., Iterator[Any]]]:
    """A step of a batch (its body a generator taking the context) that does not complete records on the
    batch why (the batch state machine's computing -> failed), so pending_batches() and resume() can say it.
    An error Dagster meets while storing an output closes the generator (GeneratorExit) after the IO manager
    recorded the error itself; the first reason recorded stays."""
    def wrap(body: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
        @functools.wraps(body)
        def step(context: dg.AssetExecutionContext) -> Iterator[Any]:
            try:
                return (yield from body(context))
            except BaseException as e:
                what = "stopped before it finished" if isinstance(e, GeneratorExit) else f"failed: {e}"
                media_io: MediaIOManager = getattr(context.resources, MEDIA_IO)
                media_io.fail(spec, context.partition_key, context.run_id,
                              f"step {context.op_def.name} of run {context.run_id} {what}")
                raise

        return step

    return wrap
