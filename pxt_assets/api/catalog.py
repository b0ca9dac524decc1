"""The catalog: Pixeltable's module-level calls (`create_dir`, `create_table`, `get_table`, ...).

Directories and notebook tables live in the row store's database, so every process that shares it (another
notebook, `dagster dev` after a reload, a worker on another machine with the same `db_url`) sees them.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from pxt_assets import lifecycle, rowstore
from pxt_assets.api.table import MediaTable, checked_at_once
from pxt_assets.api.view import MediaView
from pxt_assets.config import current_settings
from pxt_assets.exceptions import ErrorCode
from pxt_assets.spec import SpecError, TableSpec, parse_table_path


def _store() -> rowstore.RowStore:
    return rowstore.for_settings(current_settings())


def _joined(parts: tuple[str, ...]) -> str:
    return "/".join(parts)


def create_dir(path: str, *, if_exists: str = "error", parents: bool = False) -> None:
    """Create a directory for tables (`pxt.create_dir('blob_storage_demo')`)."""
    parts = parse_table_path(path)
    store = _store()
    if store.dir_exists(_joined(parts)):
        if if_exists == "error":
            raise SpecError(f"directory {path!r} already exists", error_code=ErrorCode.PATH_ALREADY_EXISTS)
        return
    if store.table_doc(_joined(parts)) is not None:
        raise SpecError(f"{path!r} is a table, not a directory")
    if not parents and not store.dir_exists(_joined(parts[:-1])):
        raise SpecError(f"directory {_joined(parts[:-1])!r} does not exist; create it first")
    store.create_dirs([_joined(parts[:i]) for i in range(1, len(parts) + 1)])
    print(f"Created directory {parts[-1]!r}.")


#: how many times create_table(..., if_exists='replace') drops a table another process created meanwhile
_REPLACE_ATTEMPTS = 10


def _create(path: str, parts: tuple[str, ...], store: rowstore.RowStore, if_exists: str,
            instance: dg.DagsterInstance | None, make) -> tuple[MediaTable, bool]:
    """The table or view at `path`: `make()` (a new one, not yet in the catalog) recorded there, or, with
    if_exists='ignore', the one there. (table, whether it is new). Creation is one INSERT that does nothing
    if the path is taken, so of two processes creating one table with if_exists='error', one gets it and the
    other an error."""
    key = _joined(parts)
    if if_exists == "ignore" and store.table_token(key) is not None:
        try:
            return get_table(path), False
        except SpecError:  # dropped meanwhile: create it
            pass
    if store.dir_exists(key):
        raise SpecError(f"{path!r} is an existing directory; a table cannot be created there (it already exists "
                        "as a directory)", error_code=ErrorCode.PATH_ALREADY_EXISTS)
    if if_exists == "error" and store.table_token(key) is not None:
        raise SpecError(f"table {path!r} already exists: {path!r} is an existing table",
                        error_code=ErrorCode.PATH_ALREADY_EXISTS)
    if if_exists == "replace" and store.table_token(key) is not None and _has_views(key, store):
        raise SpecError(f"table {path!r} already exists and has views; if_exists='replace' drops only a table "
                        "without views: use if_exists='replace_force' to drop it with its views",
                        error_code=ErrorCode.CONSTRAINT_VIOLATION)
    if not store.dir_exists(_joined(parts[:-1])):
        raise SpecError(f"directory {_joined(parts[:-1])!r} does not exist; create it with pxt.create_dir",
                        error_code=ErrorCode.DIRECTORY_NOT_FOUND)
    table = make()
    for _ in range(_REPLACE_ATTEMPTS):
        if if_exists.startswith("replace") and store.table_token(key) is not None:
            drop_table(path, if_not_exists="ignore", force=if_exists == "replace_force", instance=instance)
        if table._create_in_catalog():  # checks the directory again
            return table, True
        if if_exists == "error":
            raise SpecError(f"table {path!r} already exists: {path!r} is an existing table",
                            error_code=ErrorCode.PATH_ALREADY_EXISTS)
        if if_exists == "ignore":
            try:
                return get_table(path), False
            except SpecError:  # dropped again meanwhile: create it
                continue
    raise SpecError(f"create_table {path!r}: other processes kept creating a table there while this one replaced "
                    f"it ({_REPLACE_ATTEMPTS} times); try again")


def _check_if_exists(if_exists: str) -> None:
    if if_exists not in _IF_EXISTS:
        raise SpecError(f"if_exists must be one of: {list(_IF_EXISTS)}, got {if_exists!r}",
                        error_code=ErrorCode.INVALID_ARGUMENT)


_IF_EXISTS = ("error", "ignore", "replace", "replace_force")


def _has_views(key: str, store: rowstore.RowStore) -> bool:
    return bool(store.view_entries(key)) or bool(store.views(key))


def create_table(path: str, schema: dict[str, Any], *, if_exists: str = "error",
                 instance: dg.DagsterInstance | None = None) -> MediaTable:
    """Create a table in the persistent catalog; every process (and `dagster dev`) sees it.

    `schema`: column name -> type, in Pixeltable's forms (`pxt.Image`, `pxt.Int | None`, `Optional[pxt.Int]`:
    nullable; `pxt.Required[pxt.Int]`: every insert must give it a value).
    if_exists: 'error' (default), 'ignore' (return the existing table), 'replace' (drop it, files and
    all, then create it anew; refused when it has views) or 'replace_force' (drop it and its views).
    Of processes creating one table at once with 'error', exactly one succeeds.
    """
    _check_if_exists(if_exists)
    parts, store = parse_table_path(path), _store()

    def make() -> MediaTable:
        with checked_at_once():  # its entry records the destinations: resolved now, wherever it is made
            return MediaTable(path, schema)

    table, new = _create(path, parts, store, if_exists, instance, make)
    if new:
        print(f"Created table {parts[-1]!r}.")
    return table


def table_from_doc(doc: dict) -> MediaTable:
    """A catalog document as a table, or a view (a MediaView) when it records one."""
    return MediaTable.from_doc(doc)


def get_table(path: str) -> MediaTable:
    """A table (or view) of the catalog, as recorded (with the destinations resolved when its columns were
    added)."""
    entry = _store().table_entry(_joined(parse_table_path(path)))
    if entry is None:
        raise SpecError(f"table {path!r} does not exist", error_code=ErrorCode.PATH_NOT_FOUND)
    return MediaTable.from_entry(entry)


def create_view(path: str, base: MediaTable, *, iterator, destination: str | None = None,
                if_exists: str = "error", instance: dg.DagsterInstance | None = None) -> MediaTable:
    """A view of `base` whose rows `iterator` makes from each base row, as Pixeltable's:
    `pxt.create_view('dir/frames', videos, iterator=frame_iterator(videos.video, fps=1))`.

    `destination` (ours; Pixeltable has none) is where the iterator's media go (frames, audio segments, page
    images); without it they go to output_media_dest, else the local default, except frames, which are then
    not written at all but decoded again from the video when read. Rows of the base table's existing batches
    are made now; each later batch of the base table makes its view rows when it is inserted.

    A view of a table declared in code (`pxt.MediaTable(...)`, a defs.yaml) is declared in code as well, as
    `pxt.MediaView(path, base, iterator)` is: not in the catalog (its base is not), made again by the code
    that makes its base. Its rows are the database's like any table's; deleting a batch of the base, or
    dropping it, finds them from any process. `if_exists='replace'` drops the rows it already has."""
    _check_if_exists(if_exists)
    if not isinstance(base, MediaTable):
        raise SpecError(f"create_view {path!r}: the base must be a table (pxt.get_table(...)), got {base!r}")
    parts, store = parse_table_path(path), _store()
    if not base._persistent and not isinstance(base, MediaView):
        return _code_view(path, base, iterator, destination, if_exists, instance)
    if store.table_token(base.path) is None:
        raise SpecError(f"create_view {path!r}: the base table {base.path!r} is not in the catalog "
                        "(make it with pxt.create_table)")

    def make() -> MediaTable:
        base.columns()  # its columns as the catalog has them now
        with checked_at_once():
            return MediaView(path, base, iterator, destination=destination)

    view, new = _create(path, parts, store, if_exists, instance, make)
    if new:
        _populated(view, base, instance)
    return view


def _populated(view: MediaView, base: MediaTable, instance: dg.DagsterInstance | None) -> None:
    """Make a new view's rows; if its iterator's arguments cannot work on a base row (Pixeltable's create_view
    raises then), the view is dropped and that is raised."""
    rows = view._populate(instance)
    problem = view._argument_error()
    if problem is None:
        print(f"Created view {view.spec.name!r} with {rows} rows.")
        return
    base._remove_view(view)
    if view._persistent:
        drop_table(view.path, if_not_exists="ignore", instance=instance)
    else:
        lifecycle.drop_table(view.path, if_not_exists="ignore", instance=instance)
    raise SpecError(f"create_view {view.path!r}: {problem}")


def _code_view(path: str, base: MediaTable, iterator, destination: str | None, if_exists: str,
               instance: dg.DagsterInstance | None) -> MediaView:
    """create_view of a table declared in code: a view declared in code too (see create_view)."""
    if if_exists.startswith("replace"):
        lifecycle.drop_table(path, if_not_exists="ignore", instance=instance)
    with checked_at_once():
        view = MediaView(path, base, iterator, destination=destination)
    _populated(view, base, instance)
    return view


def views_of(path: str) -> list[MediaTable]:
    """The catalog's views whose base table is `path`."""
    return [MediaTable.from_entry(e) for e in _store().view_entries(path)]


def list_tables(dir_path: str = "", recursive: bool = True) -> list[str]:
    """Paths of the catalog's tables (under `dir_path`)."""
    parts = parse_table_path(dir_path) if dir_path else ()
    out = []
    for path, _ in _store().table_docs():
        p = tuple(path.split("/"))
        if p[: len(parts)] == parts and len(p) > len(parts) and (recursive or len(p) == len(parts) + 1):
            out.append(path)
    return sorted(out)


def drop_table(table: str | MediaTable, *, if_not_exists: str = "error", force: bool = False,
               instance: dg.DagsterInstance | None = None) -> int:
    """Drop a table (its path, or the table object, as Pixeltable takes either): every file it wrote (from
    the recorded locations), its rows, partitions and catalog entry. Files a user only referenced are kept.
    A table with views (the catalog's, or views declared in code or YAML that have rows) needs force=True,
    which drops them too; with force=True a missing table is not an error. Returns the number of files
    deleted."""
    if if_not_exists not in ("error", "ignore"):
        raise SpecError(f"if_not_exists must be one of: ['error', 'ignore'], got {if_not_exists!r}",
                        error_code=ErrorCode.INVALID_ARGUMENT)
    if isinstance(table, MediaTable):
        path = table.path
    elif isinstance(table, str):
        path = table
    else:
        raise SpecError(f"drop_table: expected a table path or a table, got {table!r}",
                        error_code=ErrorCode.TYPE_MISMATCH)
    if force:
        if_not_exists = "ignore"
    key = _joined(parse_table_path(path))
    store = _store()
    token = store.table_token(key)
    views = views_of(key)
    # and views the catalog does not hold (declared in code or YAML), found from their batches
    in_code = [v.path for v in store.views(key) if v.path not in {w.path for w in views}]
    if (views or in_code) and not force:
        raise SpecError(f"table {path!r} has views {[v.path for v in views] + in_code}: drop them first, or pass "
                        "force=True")
    deleted_views = sum(drop_table(v.path, force=True, instance=instance) for v in views)
    deleted_views += sum(lifecycle.drop_table(p, if_not_exists="ignore", instance=instance) for p in in_code)
    # the catalog entry goes with the rows, in one transaction (unless another table replaced it meanwhile)
    deleted = lifecycle.drop_table(path, if_not_exists="ignore" if token is not None else if_not_exists,
                                   instance=instance, catalog_entry=(key, token[0]) if token is not None else None)
    return deleted + deleted_views


def drop_dir(path: str, *, force: bool = False, if_not_exists: str = "error",
             instance: dg.DagsterInstance | None = None) -> None:
    """Drop a directory. With force=True its tables are dropped too (files and all), and a missing
    directory is not an error (the seeds' clean slate)."""
    parts = parse_table_path(path)
    store = _store()
    if not store.dir_exists(_joined(parts)):
        if force or if_not_exists == "ignore":
            return
        raise SpecError(f"directory {path!r} does not exist")
    tables = list_tables(path)
    if tables and not force:
        raise SpecError(f"directory {path!r} is not empty ({len(tables)} tables); use force=True")
    for t in tables:  # a base table drops its views with it (they may come later in the list)
        if store.table_doc(t) is not None:
            drop_table(t, force=True, instance=instance)
    store.remove_dir(_joined(parts))


def catalog_versions() -> tuple[tuple[str, int, str | None], ...]:
    """(path, version, identity) of every catalog table: what changes when one is created, altered or dropped."""
    return tuple((e.path, e.version, e.table_id) for e in _store().table_entries())


def catalog_tables() -> tuple[list[MediaTable], list[tuple[str, list[str], str]]]:
    """Every catalog table, and (path, column names if known, error) for those that could not be read: one
    bad entry must not take the others (or the whole code location) down."""
    tables, errors = [], []
    for entry in _store().table_entries():
        columns: list[str] = []
        try:
            doc = entry.doc
            columns = [str(c.get("name")) for c in doc.get("columns", []) if isinstance(c, dict) and c.get("name")]
            TableSpec.from_dict(doc)  # validates types and expressions
            tables.append(MediaTable.from_entry(entry))
        except Exception as e:  # noqa: BLE001 - reported, and the rest still load
            errors.append((entry.path, columns, f"{type(e).__name__}: {e}"))
    return tables, errors


def _columns_of(table: MediaTable) -> list[tuple[str, str, Any]]:
    return [(c.name, c.col_type.name, c.expr.to_dict() if c.expr else None) for c in table.spec.columns.values()]


def same_columns(a: MediaTable, b: MediaTable) -> bool:
    """Whether two declarations of a table have the same columns (names, types, expressions)."""
    return _columns_of(a) == _columns_of(b)


def merge_tables(code: list[MediaTable], catalog_tables: list[MediaTable]) -> list[MediaTable]:
    """Tables declared in code and in the catalog, side by side. The same path in both must have the same
    columns (the code one is used); otherwise it is an error naming the path and both column lists."""
    by_path = {t.spec.path: t for t in code}
    out = list(code)
    for t in catalog_tables:
        other = by_path.get(t.spec.path)
        if other is None:
            out.append(t)
        elif not same_columns(other, t):
            raise SpecError(
                f"table {t.path!r} is declared twice with different columns: in code "
                f"{[m[0] for m in _columns_of(other)]}, in the catalog {[x[0] for x in _columns_of(t)]}; "
                "drop one (pxt.drop_table) or make them agree"
            )
    return out
