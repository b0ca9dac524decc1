"""The persistent catalog: tables created from Python (a notebook) live under `$PIXELTABLE_HOME/catalog`,
so every process (another notebook, `dagster dev` after a reload) finds them.

    catalog/<dir>/.dir                   a directory made by create_dir
    catalog/<dir>/<name>.table.json      a table: schema, expressions, destinations as resolved and recorded

Writes are atomic (temp file + rename) under a cross-process lock.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
from typing import Any

import filelock

from pxt_assets.config import current_settings
from pxt_assets.spec import SpecError, TableSpec, parse_table_path

_TABLE_SUFFIX = ".table.json"
_DIR_MARKER = ".dir"


def root() -> pathlib.Path:
    return current_settings().home / "catalog"


def _lock() -> filelock.FileLock:
    r = root()
    r.mkdir(parents=True, exist_ok=True)
    return filelock.FileLock(str(r / ".lock"), timeout=60)


def _table_file(path: tuple[str, ...]) -> pathlib.Path:
    return root().joinpath(*path[:-1]) / f"{path[-1]}{_TABLE_SUFFIX}"


def _dir_folder(path: tuple[str, ...]) -> pathlib.Path:
    return root().joinpath(*path)


def dir_exists(path: tuple[str, ...]) -> bool:
    return not path or (_dir_folder(path) / _DIR_MARKER).exists()


def table_exists(path: tuple[str, ...]) -> bool:
    return _table_file(path).exists()


def create_dir(path: str, *, if_exists: str = "error", parents: bool = False) -> bool:
    """Create directory `path`; False if it already existed and if_exists='ignore'."""
    parts = parse_table_path(path)
    with _lock():
        if dir_exists(parts):
            if if_exists == "error":
                raise SpecError(f"directory {path!r} already exists")
            return False
        if table_exists(parts):
            raise SpecError(f"{path!r} is a table, not a directory")
        if not parents and not dir_exists(parts[:-1]):
            raise SpecError(f"directory {'/'.join(parts[:-1])!r} does not exist; create it first")
        for i in range(1, len(parts) + 1):
            folder = _dir_folder(parts[:i])
            folder.mkdir(parents=True, exist_ok=True)
            (folder / _DIR_MARKER).touch()
    return True


def save(doc: dict[str, Any]) -> None:
    """Store a table document (TableSpec.to_dict() plus table options) atomically."""
    parts = parse_table_path(doc["path"])
    target = _table_file(parts)
    with _lock():
        if not dir_exists(parts[:-1]):
            raise SpecError(f"directory {'/'.join(parts[:-1])!r} does not exist; create it with pxt.create_dir")
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=1)
        os.replace(tmp, target)


def load(path: str) -> dict[str, Any] | None:
    parts = parse_table_path(path)
    try:
        return json.loads(_table_file(parts).read_text())
    except FileNotFoundError:
        return None


def remove_table(path: str) -> None:
    with _lock():
        _table_file(parse_table_path(path)).unlink(missing_ok=True)


def list_tables(dir_path: str = "", *, recursive: bool = True) -> list[str]:
    """Paths of the catalog's tables under `dir_path` ('' for all), sorted."""
    parts = parse_table_path(dir_path) if dir_path else ()
    base = _dir_folder(parts)
    if not base.is_dir():
        return []
    pattern = f"**/*{_TABLE_SUFFIX}" if recursive else f"*{_TABLE_SUFFIX}"
    out = []
    for f in base.glob(pattern):
        rel = f.relative_to(root()).with_name(f.name[: -len(_TABLE_SUFFIX)])
        out.append("/".join(rel.parts))
    return sorted(out)


def remove_dir(path: str) -> None:
    """Remove an (empty of tables) directory folder and its sub-folders."""
    parts = parse_table_path(path)
    folder = _dir_folder(parts)
    with _lock():
        if any(folder.rglob(f"*{_TABLE_SUFFIX}")):
            raise SpecError(f"directory {path!r} still holds tables")
        for p in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
        if folder.exists():
            folder.rmdir()


def load_all() -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """Every table document, and (file, error) for any that cannot be read: one bad file must not take
    the others (or the whole code location) down."""
    docs, errors = [], []
    base = root()
    if not base.is_dir():
        return [], []
    for f in sorted(base.glob(f"**/*{_TABLE_SUFFIX}")):
        try:
            doc = json.loads(f.read_text())
            TableSpec.from_dict(doc)  # validates types and expressions
            docs.append(doc)
        except Exception as e:  # noqa: BLE001 - reported, and the rest still load
            errors.append((str(f), f"{type(e).__name__}: {e}"))
    return docs, errors
