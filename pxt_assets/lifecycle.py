"""Lifecycle: deleting batches, columns and tables, and collecting files no row refers to.

Every file the project wrote is recorded in its row frame (value = URI, owned = True, destination), so
deletes use the recorded locations, whatever the configuration (or the table's definition) says now. Files a
user only referenced (owned = False) are never deleted.

Deletes go files first, row data after: if deleting a file fails, the call stops and raises an error naming
that file, and the row frames stay, so the same call made again finishes the job (a file already gone counts
as deleted).

Garbage collection (`find_orphans`, `collect_garbage`, `python -m pxt_assets gc`) lists the files under a
destination that are named by our naming scheme (see io_managers/writers.py) and that no row frame of this
`$PIXELTABLE_HOME` refers to. Anything not named by the scheme is never listed nor deleted.
"""

from __future__ import annotations

import concurrent.futures
import os
import pathlib
import re
import shutil
import threading
import urllib.parse
from collections.abc import Iterable, Iterator

import dagster as dg
import pandas as pd

from pxt_assets import assets as asset_builder
from pxt_assets.spec import SpecError, TableSpec, parse_table_path

#: the folder of a table directory that holds batch manifests (every other sub-folder is a column)
BATCHES_DIR = "_batches"

_DELETE_WORKERS = 8
_BATCH_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
#: the file names ColumnWriter.object_name gives: <slug>_<col>_<batch>-<6 digits>_<hash16><ext>
#: (batch keys are new_batch_key()'s: 20261122T211640123456-3fa9)
OBJECT_NAME_RE = re.compile(rf"^{_IDENT}_{_IDENT}_\d{{8}}T\d{{6,}}-[0-9a-f]{{4,}}-\d{{6}}_[0-9a-f]{{16}}\.\w+$")


# ---------------------------------------------------------------------------------------------------------
# deleting files


_RETRY_HINT = ("The row data was kept, so it still records this file and the others not yet deleted: fix the "
               "cause and make the same call again to finish")


def _delete_one(uri: str, where: str, hint: str = _RETRY_HINT) -> None:
    """Delete one file we wrote; a file already gone is fine. Any other failure names the URI."""
    from pxt_assets import stores

    try:
        stores.store_for(uri).delete(uri)
    except stores.StoreError as e:
        if e.kind == "not_found":  # the object (or its whole bucket) is already gone
            return
        raise stores.StoreError(f"cannot delete {uri} ({where}): {e}. {hint}", kind=e.kind) from e
    except Exception as e:  # an SDK or OS error: same contract, named by the URI
        raise stores.StoreError(f"cannot delete {uri} ({where}): {type(e).__name__}: {e}. {hint}",
                                kind="store_error") from e


def _delete_files(uris: Iterable[str], where: str, hint: str = _RETRY_HINT) -> int:
    """Delete `uris` (a few at once); stop at the first failure and raise it. Returns how many were deleted."""
    todo = list(dict.fromkeys(uris))
    if not todo:
        return 0
    failed = threading.Event()

    def one(uri: str) -> bool:
        if failed.is_set():
            return False
        try:
            _delete_one(uri, where, hint)
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


def _read_frame(path: pathlib.Path) -> pd.DataFrame:
    # use_threads=False, as TableStore.read_column: pyarrow's reader threads can abort the interpreter at exit.
    return pd.read_parquet(path, use_threads=False)


def _owned_files(frame_path: pathlib.Path) -> tuple[list[str], dict[str, str]]:
    """The URIs a row frame records as written by us (owned), and each one's recorded destination."""
    frame = _read_frame(frame_path)
    if "owned" not in frame or "value" not in frame:
        return [], {}
    owned = frame[frame["owned"].fillna(False).astype(bool) & frame["value"].notna()]
    uris = [str(u) for u in owned["value"]]
    dests = {}
    if "destination" in owned:
        dests = {str(u): str(d) for u, d in zip(owned["value"], owned["destination"]) if isinstance(d, str)}
    return uris, dests


def _prune_local_dirs(uris: Iterable[str], dests: dict[str, str]) -> None:
    """Remove the shard folders (<slug>/<col>/<aa>/<bb>) that deleting local files left empty, up to (not
    including) the destination recorded for each file."""
    from pxt_assets import stores

    for uri in uris:
        dest = dests.get(uri)
        try:
            if dest is None or stores.provider_of(uri) != "local" or stores.provider_of(dest) != "local":
                continue
            stop = stores.path_of(dest).absolute()
            folder = stores.path_of(uri).absolute().parent
        except stores.StoreError:
            continue
        while folder != stop and stop in folder.parents:
            try:
                folder.rmdir()
            except OSError:  # not empty (or already gone): stop here
                break
            folder = folder.parent


def _delete_frames_files(frames: list[pathlib.Path], where: str) -> int:
    """Delete every owned file recorded in `frames`. Raises (keeping every frame) on a failed delete."""
    uris: list[str] = []
    dests: dict[str, str] = {}
    for path in frames:
        u, d = _owned_files(path)
        uris.extend(u)
        dests.update(d)
    deleted = _delete_files(uris, where)
    _prune_local_dirs(uris, dests)
    return deleted


# ---------------------------------------------------------------------------------------------------------
# the table's storage


def _column_dirs(table_dir: pathlib.Path) -> list[pathlib.Path]:
    """The column folders under a table's directory, as found on disk (whatever the table's definition says
    now). A sub-folder that has folders of its own is another table nested under this path, not a column."""
    if not table_dir.is_dir():
        return []
    out = []
    for p in sorted(table_dir.iterdir()):
        if not p.is_dir() or p.name == BATCHES_DIR or p.name.startswith("."):
            continue
        if any(c.is_dir() for c in p.iterdir()):
            continue
        out.append(p)
    return out


def _frames(column_dir: pathlib.Path, batch: str | None = None) -> list[pathlib.Path]:
    if batch is not None:
        path = column_dir / f"{batch}.parquet"
        return [path] if path.is_file() else []
    return sorted(p for p in column_dir.glob("*.parquet") if not p.name.startswith(".tmp-"))


def _check_batch(batch: str) -> None:
    if not isinstance(batch, str) or not _BATCH_RE.match(batch):
        raise ValueError(f"invalid batch key {batch!r}: expected a key such as those batches() returns")


def _default_instance(instance: dg.DagsterInstance | None) -> dg.DagsterInstance:
    if instance is not None:
        return instance
    from pxt_assets.instance import get_instance

    return get_instance()


def _remove_empty_parents(folder: pathlib.Path, stop: pathlib.Path) -> None:
    """rmdir `folder` and its parents while empty, up to (not including) `stop`."""
    while folder != stop and stop in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


# ---------------------------------------------------------------------------------------------------------
# batches, columns, tables


def delete_batch(table, batch: str, *, instance: dg.DagsterInstance | None = None) -> int:
    """See MediaTable.delete. Every column folder on disk counts, including columns the table's current
    definition no longer has. Returns the number of files deleted."""
    _check_batch(batch)
    store = table.table_store()
    table_dir = store.table_dir(table.spec)
    column_dirs = _column_dirs(table_dir)
    frames = [f for d in column_dirs for f in _frames(d, batch)]
    # Files first, rows after: if a delete fails, the rows still say where the remaining files are.
    deleted = _delete_frames_files(frames, f"table {table.path!r}, batch {batch}")
    for path in frames:
        path.unlink(missing_ok=True)
    store.manifest_path(table.spec, batch).unlink(missing_ok=True)
    instance = _default_instance(instance)
    name = asset_builder.partitions_name(table.spec)
    if instance.has_dynamic_partition(name, batch):
        instance.delete_dynamic_partition(name, batch)
    return deleted


def drop_column(table, name: str, *, instance: dg.DagsterInstance | None = None) -> int:
    """See MediaTable.drop_column: any column may be dropped (an inserted one too), unless another column's
    expression reads it or it is the table's last inserted column. Deletes the files it wrote in every batch
    (from the recorded locations), its row data, its asset's materialization history, and removes it from
    the table's definition. Returns the number of files deleted."""
    spec: TableSpec = table.spec
    store = table.table_store()
    column_dir = store.table_dir(spec) / name
    col = spec.columns.get(name)
    if col is None and not (re.fullmatch(_IDENT, name) and not name.startswith("_") and column_dir.is_dir()):
        raise SpecError(f"table {table.path!r} has no column {name!r}")
    if col is not None:
        dependents = [c.name for c in spec.columns.values() if c.expr is not None and name in c.expr.columns()]
        if dependents:
            names = ", ".join(repr(d) for d in dependents)
            raise SpecError(f"cannot drop column {name!r} of table {table.path!r}: column(s) {names} "
                            f"compute from it; drop {'them' if len(dependents) > 1 else 'it'} first")
        if not col.is_computed and len(spec.source_columns()) == 1:
            raise SpecError(f"cannot drop column {name!r} of table {table.path!r}: it is the table's only "
                            "inserted column; use pxt.drop_table to drop the table")
    deleted = 0
    if column_dir.is_dir():
        deleted = _delete_frames_files(_frames(column_dir), f"table {table.path!r}, column {name!r}")
        shutil.rmtree(column_dir)
    spec.columns.pop(name, None)
    table._defs = None
    instance = _default_instance(instance)
    instance.wipe_assets([asset_builder.asset_key(spec, name)])
    return deleted


def drop_table(path, *, if_not_exists: str = "error", instance: dg.DagsterInstance | None = None) -> int:
    """Drop the table at `path` ('dir/name' or 'dir.name', or a MediaTable): delete every file it wrote
    (in every batch and column found in its stored row data, from the recorded locations, whatever the
    table's definition or the configuration says now), its row data and manifests, its dynamic partitions
    and its assets' materialization history on the Dagster instance. Files it only referenced are kept.

    Works from storage alone: the table need not be declared. `if_not_exists='ignore'` returns 0 for a table
    with neither row data nor partitions; 'error' (the default) raises. Returns the number of files deleted.
    """
    from pxt_assets.api import MediaTable
    from pxt_assets.config import load_settings
    from pxt_assets.io_managers.table_store import TableStore

    if if_not_exists not in ("error", "ignore"):
        raise ValueError(f"if_not_exists must be 'error' or 'ignore', got {if_not_exists!r}")
    if isinstance(path, MediaTable):
        spec, store, known_columns = TableSpec(path.spec.path), path.table_store(), list(path.spec.columns)
    else:
        spec, known_columns = TableSpec(parse_table_path(str(path))), []
        store = TableStore(load_settings().tables_dir)
    table_dir = store.table_dir(spec)
    column_dirs = _column_dirs(table_dir)
    batches_dir = table_dir / BATCHES_DIR
    instance = _default_instance(instance)
    partitions = asset_builder.partitions_name(spec)
    keys = instance.get_dynamic_partitions(partitions)
    if not column_dirs and not batches_dir.is_dir() and not keys:
        if if_not_exists == "ignore":
            return 0
        raise SpecError(f"drop_table: table {spec.display_path!r} does not exist "
                        f"(no row data under {table_dir}, no partitions {partitions!r})")

    frames = [f for d in column_dirs for f in _frames(d)]
    deleted = _delete_frames_files(frames, f"table {spec.display_path!r}")
    # Then the instance, then the row data last: until it is gone, a retry knows everything that remains.
    for key in keys:
        instance.delete_dynamic_partition(partitions, key)
    columns = dict.fromkeys([*known_columns, *(d.name for d in column_dirs)])
    if columns:
        instance.wipe_assets([asset_builder.asset_key(spec, c) for c in columns])
    for d in column_dirs:
        shutil.rmtree(d)
    shutil.rmtree(batches_dir, ignore_errors=True)
    if table_dir.is_dir():
        # Loose files go too; a table nested under this path (its own folder of folders) stays.
        for p in table_dir.iterdir():
            if not p.is_dir():
                p.unlink(missing_ok=True)
    _remove_empty_parents(table_dir, store.tables_dir)
    return deleted


# ---------------------------------------------------------------------------------------------------------
# garbage collection


def _canonical(uri: str) -> str:
    """One spelling per stored object, so a listed URI and a stored one compare equal whatever form each was
    written in (a path or a file:// URL; wasbs/abfss/https for Azure; ...)."""
    from pxt_assets import stores

    try:
        provider = stores.provider_of(uri)
        if provider == "local":
            return "file:" + os.path.realpath(stores.path_of(uri))
        if provider == "s3":
            from pxt_assets.stores import s3

            loc = s3.parse(uri)
            return f"s3:{loc.flavor}:{loc.endpoint or ''}:{loc.bucket}/{loc.key}"
        if provider == "gcs":
            from pxt_assets.stores import gcs

            bucket, key = gcs.parse(uri, object_required=False)
            return f"gs:{bucket}/{key}"
        if provider == "azure":
            from pxt_assets.stores import azure

            ref = azure.parse(uri)
            return f"azure:{ref.account}/{ref.container}/{ref.blob}"
    except Exception:  # noqa: BLE001 - not a URI we can take apart: compared as written
        return uri
    return uri


def referenced_uris(tables_dir: pathlib.Path | None = None) -> set[str]:
    """Canonical forms of every URI any row frame under `tables_dir` (default: this home's) refers to."""
    if tables_dir is None:
        from pxt_assets.config import load_settings

        tables_dir = load_settings().tables_dir
    out: set[str] = set()
    if not pathlib.Path(tables_dir).is_dir():
        return out
    for path in sorted(pathlib.Path(tables_dir).rglob("*.parquet")):
        if path.name.startswith(".tmp-"):  # a frame being written: not a row yet
            continue
        try:
            frame = _read_frame(path)
        except Exception as e:  # unreadable row data: we cannot tell what it refers to
            raise RuntimeError(f"cannot read row data {path}: {e}; garbage collection needs every row frame "
                               "to tell which files are still referenced") from e
        if "value" not in frame:
            continue
        for v in frame["value"]:
            if isinstance(v, str) and v:
                out.add(_canonical(v))
    return out


def _matches_scheme(uri: str) -> bool:
    name = urllib.parse.unquote(uri.rstrip("/").rsplit("/", 1)[-1])
    return OBJECT_NAME_RE.match(name) is not None


def _listing(destination: str) -> Iterator[str]:
    from pxt_assets import stores

    uri = stores.normalize_uri(destination)
    store = stores.store_for(uri)
    if store.provider == "local":
        path = stores.path_of(uri)
        if not path.is_dir():
            raise FileNotFoundError(f"local folder {str(path)!r} does not exist")
    return store.list(uri)


def find_orphans(destination: str) -> list[str]:
    """The files under `destination` (a local folder, a file:// URL or a bucket URI) that are named by our
    naming scheme (`<slug>_<column>_<batch>-<6 digits>_<hash16>.<ext>`) and that no row of any table of this
    `$PIXELTABLE_HOME` refers to, as listed (sorted). Files not named by the scheme are never included."""
    referenced = referenced_uris()
    return sorted(u for u in _listing(destination) if _matches_scheme(u) and _canonical(u) not in referenced)


def collect_garbage(destination: str, delete: bool = False) -> list[str]:
    """find_orphans(destination); with `delete`, also delete them (a failure raises naming the file).
    Returns the orphans found (and deleted)."""
    orphans = find_orphans(destination)
    if delete:
        _delete_files(orphans, f"gc {destination}", "Run gc again to finish")
        from pxt_assets import stores

        local = stores.normalize_uri(destination)
        if stores.provider_of(local) == "local":
            _prune_local_dirs(orphans, dict.fromkeys(orphans, local))
    return orphans


__all__ = ["OBJECT_NAME_RE", "collect_garbage", "delete_batch", "drop_column", "drop_table", "find_orphans",
           "referenced_uris"]
