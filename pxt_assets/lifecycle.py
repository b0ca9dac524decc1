"""Lifecycle: deleting batches, columns and tables, and collecting files no row refers to.

Every file the project wrote is recorded in its row (value = URI, owned = True, destination), so deletes use
the recorded locations, whatever the configuration (or the table's definition) says now. Files a user only
referenced (owned = False) are never deleted.

Deletes go files first, rows after: if deleting a file fails, the call stops and raises an error naming that
file, and the rows stay, so the same call made again finishes the job (a file already gone counts as
deleted).

Garbage collection (`find_orphans`, `collect_garbage`, `python -m pxt_assets gc`) lists the files under a
destination that are named by our naming scheme (see io_managers/writers.py) and that are safe to delete: no
row or staged record in the (shared) database refers to them, they belong to no batch that is pending or
being written, and they are older than `min_age` seconds. Anything not named by the scheme is never listed
nor deleted. URIs are compared in each store's canonical form. In local folders, the hidden temporary file of
a write killed midway counts as the file it was to become (see stores.local.temp_prefix). A run killed while
writing stops protecting its batch once its process is provably gone (see RowStore.live_batches).
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import re
import threading
import time
import urllib.parse
from collections.abc import Iterable

import dagster as dg

from pxt_assets import assets as asset_builder
from pxt_assets import rowstore, stores
from pxt_assets.config import current_settings
from pxt_assets.faults import fault_point
from pxt_assets.instance import get_instance
from pxt_assets.io_managers.writers import delete_written, prune_written
from pxt_assets.redaction import redact
from pxt_assets.spec import SpecError, TableSpec, parse_table_path, view_parts
from pxt_assets.stores.local import temp_target

#: files younger than this are never collected: a run may be about to record them
DEFAULT_MIN_AGE_S = 3600.0

_DELETE_WORKERS = 8
_BATCH_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
#: the file names ColumnWriter.object_name gives: <slug>_<col>_<batch>-<6 digits>_<hash16><ext>
#: (batch keys are new_batch_key()'s: 20261122T211640123456-3fa9)
OBJECT_NAME_RE = re.compile(rf"^{_IDENT}_{_IDENT}_(?P<batch>\d{{8}}T\d{{6,}}-[0-9a-f]{{4,}})-\d{{6}}(?:-\d{{6}})?_[0-9a-f]{{16}}\.\w+$")


# ---------------------------------------------------------------------------------------------------------
# deleting files


_RETRY_HINT = ("The row data was kept, so it still records this file and the others not yet deleted: fix the "
               "cause and make the same call again to finish")


def _delete_one(uri: str, where: str, hint: str = _RETRY_HINT, destination: str | None = None) -> None:
    """Delete one file we wrote, inside its destination (`destination`, else the one its name tells), never
    through a symlink leading out of it; a file already gone is fine. Any other failure names the URI."""
    try:
        delete_written(uri, destination)
    except stores.StoreError as e:
        if e.kind == "not_found":  # the object (or its whole bucket) is already gone
            return
        raise stores.StoreError(f"cannot delete {uri} ({where}): {e}. {hint}", kind=e.kind) from e
    except Exception as e:  # an SDK or OS error: same contract, named by the URI
        raise stores.StoreError(f"cannot delete {uri} ({where}): {type(e).__name__}: {e}. {hint}",
                                kind="store_error") from e


def _delete_files(uris: Iterable[str], where: str, hint: str = _RETRY_HINT,
                  dests: dict[str, str] | None = None) -> int:
    """Delete `uris` (a few at once), each inside its destination in `dests` (else the one its name tells);
    stop at the first failure and raise it. Returns how many were deleted."""
    todo = list(dict.fromkeys(uris))
    if not todo:
        return 0
    failed = threading.Event()
    dests = dests or {}

    def one(uri: str) -> bool:
        if failed.is_set():
            return False
        try:
            _delete_one(uri, where, hint, dests.get(uri))
        except BaseException:
            failed.set()
            raise
        return True

    with concurrent.futures.ThreadPoolExecutor(min(_DELETE_WORKERS, len(todo)),
                                               thread_name_prefix="pxt-delete") as pool:
        futures = [pool.submit(one, u) for u in todo]
    for f in futures:  # the first failure, in order
        if f.exception() is not None:
            raise f.exception()  # type: ignore[misc]
    return sum(1 for f in futures if f.result())


def _prune_local_dirs(uris: Iterable[str], dests: dict[str, str]) -> None:
    """Remove the shard folders (<slug>/<col>/<aa>/<bb>) that deleting local files left empty, up to (not
    including) the destination recorded for each file, following no symlink (see ContainedLocalStore)."""
    for uri in uris:
        dest = dests.get(uri)
        try:
            if dest is None or stores.provider_of(uri) != "local" or stores.provider_of(dest) != "local":
                continue
            prune_written(uri, dest)
        except stores.StoreError:
            continue


def _delete_owned(files: list[tuple[str, str | None]], where: str, store: rowstore.RowStore) -> int:
    """Delete every (uri, recorded destination) we wrote, and forget them in the write journal (unless written
    again meanwhile). Raises (keeping every row) on a failed delete."""
    started = time.time()
    uris = [u for u, _ in files]
    dests = {u: d for u, d in files if isinstance(d, str)}
    deleted = _delete_files(uris, where, dests=dests)
    _prune_local_dirs(uris, dests)
    store.forget_writes(uris, written_before=started)
    return deleted


def _check_batch(batch: str) -> None:
    if not isinstance(batch, str) or not _BATCH_RE.match(batch):
        raise ValueError(f"invalid batch key {batch!r}: expected a key such as those batches() returns")


def _default_instance(instance: dg.DagsterInstance | None) -> dg.DagsterInstance:
    if instance is not None:
        return instance
    return get_instance()


# ---------------------------------------------------------------------------------------------------------
# batches, columns, tables


def _store(table=None) -> rowstore.RowStore:
    return rowstore.for_settings(table.settings if table is not None else current_settings())


def delete_batch(table, batch: str, *, instance: dg.DagsterInstance | None = None) -> int:
    """See MediaTable.delete. Every column the table's rows hold counts, including columns the table's
    current definition no longer has. Returns the number of files deleted."""
    _check_batch(batch)
    store = _store(table)
    slug = table.spec.slug
    deleted_in_views = 0
    if not hasattr(table, "base_spec"):  # the batch's rows in views of the table go with it
        for view_slug, view_path in _views_of(store, table.path, batch=batch):
            if store.batch_info(view_slug, batch) is not None:
                deleted_in_views += _delete_view_batch(view_slug, view_path, batch, store)
    rt = store.row_table(slug)
    # Files first, rows after: if a delete fails, the rows still say where the remaining files are.
    deleted = _delete_owned(store.owned_files(rt, slug, batch=batch), f"table {table.path!r}, batch {batch}", store)
    store.delete_batch(rt, slug, batch)
    if hasattr(table, "base_spec"):  # a view's batches are its base table's partitions: they stay
        return deleted
    instance = _default_instance(instance)
    name = asset_builder.partitions_name(table.spec)
    if instance.has_dynamic_partition(name, batch):
        instance.delete_dynamic_partition(name, batch)
    return deleted + deleted_in_views


def _views_of(store: rowstore.RowStore, path: str, *, batch: str | None = None) -> list[tuple[str, str]]:
    """(slug, path) of the views of table `path`: the catalog's, and every view the database has batches of
    made from it, wherever it was declared (in code, in a defs.yaml: see rowstore/views.py), so any process
    finds them. `batch`: only views with that batch (and the catalog's)."""
    found = {spec.slug: spec.display_path for spec in (view_parts(doc)[0] for doc in store.view_docs(path))}
    for view in store.views(path, batch=batch):
        found.setdefault(view.slug, view.path)
    return sorted(found.items(), key=lambda v: v[1])


def _delete_view_batch(slug: str, path: str, batch: str, store: rowstore.RowStore) -> int:
    rt = store.row_table(slug)
    deleted = _delete_owned(store.owned_files(rt, slug, batch=batch), f"view {path!r}, batch {batch}", store)
    store.delete_batch(rt, slug, batch)
    return deleted


def drop_column(table, name: str, *, instance: dg.DagsterInstance | None = None) -> int:
    """See MediaTable.drop_column: any column may be dropped (an inserted one too), unless another column's
    expression reads it or it is the table's last inserted column. Deletes the files it wrote in every batch
    (from the recorded locations), its values, its asset's materialization history, and removes it from
    the table's definition. Returns the number of files deleted."""
    spec: TableSpec = table.spec
    store = _store(table)
    rt = store.row_table(spec.slug)
    in_rows = rt is not None and name in rt.column_types
    if name not in spec.columns and not in_rows:
        raise SpecError(f"table {table.path!r} has no column {name!r}")
    if name in spec.columns:
        check_column_drop(spec, name, store, is_view=hasattr(table, "base_spec"),
                          code_views=getattr(table, "_views", {}).values())
    return drop_column_data(table, name, instance=instance)


def check_column_drop(spec: TableSpec, name: str, store: rowstore.RowStore, *, is_view: bool,
                      code_views: Iterable = ()) -> None:
    """Raise unless column `name` of `spec` may be dropped: no other column's expression reads it, no view
    makes its rows from it (the catalog's, and `code_views`: views declared in code on this table object),
    and it is not the table's only inserted column."""
    col = spec.columns[name]
    path = spec.display_path
    dependents = [c.name for c in spec.columns.values() if c.expr is not None and name in c.expr.columns()]
    if dependents:
        names = ", ".join(repr(d) for d in dependents)
        raise SpecError(f"cannot drop column {name!r} of table {path!r}: column(s) {names} "
                        f"compute from it; drop {'them' if len(dependents) > 1 else 'it'} first")
    if not is_view:
        readers = [view.display_path for view, _, iterator in map(view_parts, store.view_docs(path))
                   if name in iterator.columns()]
        readers += [view.path for view in code_views  # declared with it in code
                    if view.path not in readers and name in view.iterator.columns()]
        if readers:
            raise SpecError(f"cannot drop column {name!r} of table {path!r}: view(s) {readers} "
                            "make their rows from it; drop them first")
    if not col.is_computed and len(spec.source_columns()) == 1:
        raise SpecError(f"cannot drop column {name!r} of table {path!r}: it is the table's only "
                        "inserted column; use pxt.drop_table to drop the table")


def drop_column_data(table, name: str, *, instance: dg.DagsterInstance | None = None,
                     catalog_path: str | None = None) -> int:
    """What dropping column `name` of `table` removes, once it may go (see check_column_drop): the files it
    wrote, its values (files first, values after), its asset's history; and the column from `table.spec`.
    `catalog_path`: a catalog table's path, whose catalog entry no longer has the column; its values stay
    if the column was added there again meanwhile. Returns the number of files deleted."""
    spec: TableSpec = table.spec
    store = _store(table)
    rt = store.row_table(spec.slug)
    deleted = _delete_owned(store.owned_files(rt, spec.slug, column=name), f"table {table.path!r}, column {name!r}", store)
    store.drop_row_column(spec.slug, name, unless_in_catalog=catalog_path)
    spec.columns.pop(name, None)
    table._defs = None
    instance = _default_instance(instance)
    instance.wipe_assets([asset_builder.asset_key(spec, name)])
    return deleted


def drop_column_files(table, name: str, files: list[tuple[str, str | None]], *,
                      instance: dg.DagsterInstance | None = None) -> int:
    """After column `name` left a catalog table (and its row table): delete the files it wrote (`files`,
    listed before) and its asset's history. Returns the number of files deleted; a file that cannot be
    deleted is named in the error, and gc collects it (no row names it)."""
    where = f"table {table.path!r}, column {name!r}"
    try:
        deleted = _delete_owned(files, where, _store(table))
    except Exception as e:
        raise RuntimeError(f"column {name!r} of {table.path!r} was dropped, but not every file it wrote could be "
                           f"deleted ({e}); `python -m pxt_assets gc DESTINATION --delete` deletes them") from e
    _default_instance(instance).wipe_assets([asset_builder.asset_key(table.spec, name)])
    return deleted


def drop_table(path, *, if_not_exists: str = "error", instance: dg.DagsterInstance | None = None,
               catalog_entry: tuple[str, str | None] | None = None) -> int:
    """Drop the table at `path` ('dir/name' or 'dir.name', or a MediaTable): delete every file it wrote
    (in every batch and column its rows record, from the recorded locations, whatever the table's
    definition or the configuration says now), its rows and batches, its dynamic partitions and its assets'
    materialization history on the Dagster instance. Files it only referenced are kept.

    Works from the database alone: the table need not be declared. `if_not_exists='ignore'` returns 0 for a
    table with neither rows nor partitions; 'error' (the default) raises. Returns the number of files deleted.

    `catalog_entry`: (path, identity) of the catalog's table being dropped: its entry goes in the same
    transaction as its rows, unless another table of that path replaced it meanwhile (then that one's rows
    stay).
    """
    if if_not_exists not in ("error", "ignore"):
        raise ValueError(f"if_not_exists must be 'error' or 'ignore', got {if_not_exists!r}")
    if hasattr(path, "spec"):  # a MediaTable
        spec, known_columns, store = TableSpec(path.spec.path), list(path.spec.columns), _store(path)
    else:
        spec, known_columns, store = TableSpec(parse_table_path(str(path))), [], _store()
    rt = store.row_table(spec.slug)
    batches = store.batches(spec.slug)
    instance = _default_instance(instance)
    partitions = asset_builder.partitions_name(spec)
    keys = instance.get_dynamic_partitions(partitions)
    catalog_path, table_id = catalog_entry if catalog_entry is not None else (None, None)
    if rt is None and not batches and not keys:
        if catalog_path is not None:
            store.drop_row_table(spec.slug, catalog_path=catalog_path, table_id=table_id)
        if if_not_exists == "ignore":
            return 0
        raise SpecError(f"drop_table: table {spec.display_path!r} does not exist "
                        f"(no rows in {store!r}, no partitions {partitions!r})")
    deleted = _delete_owned(store.owned_files(rt, spec.slug), f"table {spec.display_path!r}", store)
    # Then the instance, then the rows last: until they are gone, a retry knows everything that remains.
    for key in keys:
        instance.delete_dynamic_partition(partitions, key)
    columns = dict.fromkeys([*known_columns, *(rt.column_types if rt is not None else [])])
    if columns:
        instance.wipe_assets([asset_builder.asset_key(spec, c) for c in columns])
    store.drop_row_table(spec.slug, catalog_path=catalog_path, table_id=table_id)
    return deleted


# ---------------------------------------------------------------------------------------------------------
# garbage collection


def referenced_uris(store: rowstore.RowStore | None = None) -> set[str]:
    """Canonical forms of every URI any row or staged record in the database refers to."""
    return {stores.canonical_uri(u) for u in (store or _store()).referenced_uris()}


def _batch_of(uri: str) -> str | None:
    """The batch a file named like ours belongs to (a temporary file of a local write: that of the file it
    was to become), else None."""
    name = urllib.parse.unquote(uri.rstrip("/").rsplit("/", 1)[-1])
    m = OBJECT_NAME_RE.match(temp_target(name) or name)
    return m.group("batch") if m else None


def _listing(destination: str):
    uri = stores.normalize_uri(destination)
    store = stores.store_for(uri)
    if store.provider == "local":
        path = stores.path_of(uri)
        if not path.is_dir():
            raise FileNotFoundError(f"local folder {str(path)!r} does not exist")
        # and the temporary files of writes killed midway, which no listing shows (gc's, once their batch is
        # not live: a write in progress belongs to a live batch)
        return itertools.chain(store.list_objects(uri), store.list_temp_files(uri))
    return store.list_objects(uri)


log = logging.getLogger(__name__)

#: a file modified this long after its write was recorded as done was rewritten since (by a writer that keeps
#: no journal here: another home, an older release): gc leaves it. Covers whole-second provider times and
#: clock skew between this machine and the provider.
_MTIME_SLACK_S = 5.0


def _prefix(destination: str) -> str:
    return stores.normalize_uri(destination).rstrip("/") + "/"


def _candidates(destination: str, min_age: float,
                store: rowstore.RowStore) -> tuple[list[rowstore.Written], dict[str, rowstore.Written]]:
    """gc's candidates under `destination`: the journal entries recorded at least `min_age` seconds ago whose
    batch is not live and that no row or staged record names; and, in a local folder, the temporary files of
    writes killed midway ({temp file: its target's entry}) whose target is in the journal (ours: another
    home's temporary files are not) and whose batch is not live."""
    if min_age < 0:
        raise ValueError(f"min_age must be >= 0 seconds, got {min_age!r}")
    cutoff = time.time() - min_age
    # Order matters: the entries first, then the live batches and the references (a run marks its batch
    # live before it records a key, and keeps it live until its rows name the key).
    entries = store.journal_entries(_prefix(destination))
    live = store.live_batches()
    referenced = referenced_uris(store)
    entries = [e for e in entries if e.batch not in live]
    orphans = [e for e in entries if e.written_at <= cutoff and stores.canonical_uri(e.uri) not in referenced]
    return orphans, _temp_files(destination, {stores.canonical_uri(e.uri): e for e in entries}, cutoff)


def _temp_files(destination: str, targets: dict[str, rowstore.Written], cutoff: float) -> dict[str, rowstore.Written]:
    """A local destination's temporary files (`.tmp-<name>-<random>`) last modified at or before `cutoff` whose
    target is one of `targets` (canonical URI -> journal entry)."""
    uri = stores.normalize_uri(destination)
    store = stores.store_for(uri)
    if store.provider != "local" or not targets:
        return {}
    path = stores.path_of(uri)
    if not path.is_dir():
        raise FileNotFoundError(f"local folder {str(path)!r} does not exist")
    out = {}
    for info in store.list_temp_files(uri):
        head, _, name = info.uri.rpartition("/")
        target = temp_target(urllib.parse.unquote(name))
        if target is None or info.mtime > cutoff:
            continue
        entry = targets.get(stores.canonical_uri(f"{head}/{urllib.parse.quote(target)}"))
        if entry is not None:
            out[info.uri] = entry
    return out


def find_orphans(destination: str, *, min_age: float = DEFAULT_MIN_AGE_S) -> list[str]:
    """The files under `destination` (a local folder, a file:// URL or a bucket URI) that this database wrote
    (its write-intent journal records them: rowstore/journal.py), that no row or staged record of any table
    refers to, whose batch is not pending or being written, recorded at least `min_age` seconds ago (sorted);
    and, in a local folder, the temporary files of such writes killed midway. A file this database never
    wrote (another home's, a user's) is never included; nothing is listed in a bucket."""
    orphans, temps = _candidates(destination, min_age, _store())
    return sorted([e.uri for e in orphans] + list(temps))


def reconcile(destination: str) -> list[str]:
    """The files under `destination` named the way we name files that this database's journal does not hold
    (another home's, or written by a release that kept no journal and named by no row): reported, never
    deleted. This lists the destination (the only part of gc that does)."""
    store = _store()
    known = {stores.canonical_uri(e.uri) for e in store.journal_entries(_prefix(destination))}
    return sorted(info.uri for info in _listing(destination)
                  if _batch_of(info.uri) is not None and stores.canonical_uri(info.uri) not in known)


def _check_again(entry: rowstore.Written, store: rowstore.RowStore, referenced: set[str]) -> str:
    """Checked just before deleting a candidate, under its batch's claim: "keep" if a row or staged record
    names it now, it was recorded again since it was chosen, or it was modified after its write was recorded
    as done; "gone" if there is no such object (its journal entry is forgotten; a killed write's temporary
    file still goes); else "delete"."""
    if stores.canonical_uri(entry.uri) in referenced:
        return "keep"
    now = store.journal_entry(entry.uri)
    if now is None or now.written_at != entry.written_at:
        return "keep"  # forgotten meanwhile, or written again since: not ours to delete now
    info = stores.store_for(entry.uri).stat(entry.uri)
    if info is None:
        store.forget_writes([entry.uri], written_before=entry.written_at)
        return "gone"
    if entry.done_at is not None and info.mtime > entry.done_at + _MTIME_SLACK_S:
        log.warning("gc: %s was modified after this database wrote it (by another writer?): left in place",
                    redact(entry.uri))
        return "keep"
    return "delete"


def collect_garbage(destination: str, delete: bool = False, *, min_age: float = DEFAULT_MIN_AGE_S) -> list[str]:
    """find_orphans(destination); with `delete`, also delete them (a failure raises naming the file).

    Each batch's files are deleted under a claim that runs of that batch wait for (rowstore/journal.py), and
    each file is checked again just before (no row names it, it was not recorded again since, it was not
    modified after its write: `_deletable`), so a re-run writing one of them meanwhile is never undone.
    Returns the orphans found (and, with `delete`, deleted: those skipped by the last check are left out).
    """
    store = _store()
    orphans, temps = _candidates(destination, min_age, store)
    if not delete:
        return sorted([e.uri for e in orphans] + list(temps))
    by_batch: dict[tuple[str, str], tuple[list[rowstore.Written], list[str]]] = {}
    for e in orphans:
        by_batch.setdefault((e.slug, e.batch), ([], []))[0].append(e)
    for tmp, e in temps.items():
        by_batch.setdefault((e.slug, e.batch), ([], []))[1].append(tmp)
    local = stores.normalize_uri(destination)
    deleted: list[str] = []
    for (slug, batch), (mine, tmps) in by_batch.items():
        if not store.claim_batch(slug, batch):
            continue  # a run of this batch may be writing it now: next time
        try:
            referenced = referenced_uris(store)
            todo = [e for e in mine if _check_again(e, store, referenced) == "delete"]
            # under the claim no write of this batch is in flight here: its temporary files are all leftovers
            files = [e.uri for e in todo] + tmps
            fault_point("gc_before_delete")
            _delete_files(files, f"gc {destination}", "Run gc again to finish", dests=dict.fromkeys(files, local))
            for e in todo:
                store.forget_writes([e.uri], written_before=e.written_at)
            deleted += files
        finally:
            store.release_claim(slug, batch)
    if stores.provider_of(local) == "local":
        _prune_local_dirs(deleted, dict.fromkeys(deleted, local))
    return sorted(deleted)


__all__ = ["OBJECT_NAME_RE", "check_column_drop", "collect_garbage", "delete_batch", "drop_column",
           "drop_column_data", "drop_column_files", "drop_table", "find_orphans", "reconcile", "referenced_uris"]
