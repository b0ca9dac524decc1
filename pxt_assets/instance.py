"""The Dagster instance that inserts and notebook steps record their runs on.

The embedded default is Dagster's own SQLite storage under $DAGSTER_HOME, in the same files and layout
(`history/`, `history/runs/`, `schedules/`), with one setting changed: its write-ahead-logged databases
commit with `synchronous=NORMAL` instead of `FULL`. Every Dagster event (about forty per insert) is a
commit, and `FULL` syncs the disk on each one; `NORMAL` is SQLite's recommended setting in WAL mode: a
process crash loses nothing and the database cannot be corrupted, only an OS crash or power cut can lose
the last few events. On this machine it takes about a quarter of a second off every insert
(bench/README.md: `python -m bench`). A dagster.yaml that names another storage is used as it is.

Processes that open one instance folder for the first time at once (four notebooks' first inserts into a new
`$PIXELTABLE_HOME`) set its databases up one after another, under the folder's set-up lock
(`fsutil.setup_lock`): Dagster's own set-up (create the tables, stamp the alembic revision) is a check then a
write that two processes can both pass, leaving two `alembic_version` rows, after which every open of the
instance fails ("more than one head").
"""

from __future__ import annotations

import collections
import contextlib
import functools
import json
import os
import pathlib
import sqlite3
import tempfile
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import dagster as dg
import sqlalchemy as sa
from sqlalchemy.pool import NullPool, QueuePool

from pxt_assets import fsutil
from pxt_assets.config import load_settings
from pxt_assets.dagster_compat import (  # Dagster's SQLite storages: no public class to extend (see there)
    INDEX_SHARD_NAME,
    SQLITE_BUSY_TIMEOUT_SECONDS,
    DagsterSqliteStorage,
    DagsterStorage,
    SqliteEventLogStorage,
    SqliteRunStorage,
    SqliteScheduleStorage,
    _event_logs_directory,
    _runs_directory,
    _schedule_directory,
    create_db_conn_string,
    create_engine,
)

_DAGSTER_YAML = """\
# Written by pxt_assets: an embedded Dagster instance (SQLite storage under this folder).
storage:
  custom:
    module: pxt_assets.instance
    class: SqliteStorage
    config:
      base_dir: {base_dir}
# Runs submitted here (the insert job's batch run, the UI's) launch at once in a process of their own.
run_coordinator:
  module: dagster.core.run_coordinator
  class: DefaultRunCoordinator
telemetry:
  enabled: false
nux:
  enabled: false
"""


def _wal_commits_without_sync(dbapi_conn: Any, record: Any, *_: Any) -> None:
    """On checkout: `synchronous=NORMAL` once the database is in WAL mode (in rollback-journal mode NORMAL
    could corrupt it on power loss, so those keep SQLite's default). Checked until it is: Dagster switches a
    new shard to WAL on a connection opened before, which the pool then keeps."""
    if record.info.get("pxt_wal_normal"):
        return
    cursor = dbapi_conn.cursor()
    try:
        if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
            cursor.execute("PRAGMA synchronous=NORMAL")
            record.info["pxt_wal_normal"] = True
    finally:
        cursor.close()


_ENGINES: weakref.WeakSet[sa.engine.Engine] = weakref.WeakSet()


def _forget_pooled_connections_in_child() -> None:
    # A forked child must not use its parent's SQLite connections (SQLAlchemy, "Using Connection Pools with
    # Multiprocessing or os.fork()"): it opens its own, leaving the parent's to the parent.
    for engine in list(_ENGINES):
        engine.dispose(close=False)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pooled_connections_in_child)


def _sqlite_engine(conn_string: str, **kwargs: Any) -> sa.engine.Engine:
    # A small pool, where Dagster's SQLite storages use NullPool: opening a connection (and reading the
    # schema on its first statement) cost about a millisecond, and an insert run opens some 200 (0.09 s of
    # a 0.7 s 10-row insert). A pooled connection holds no lock or snapshot between uses.
    engine = create_engine(conn_string, poolclass=QueuePool, pool_size=2, max_overflow=6, pool_use_lifo=True,
                           **kwargs)
    sa.event.listen(engine, "checkout", _wal_commits_without_sync)
    _ENGINES.add(engine)
    return engine


class _RunStorage(SqliteRunStorage):
    """Dagster's SQLite run storage (`history/runs.db`), committing with synchronous=NORMAL (WAL)."""

    @functools.cached_property
    def _engine(self) -> sa.engine.Engine:
        return _sqlite_engine(self._conn_string)

    @contextlib.contextmanager
    def connect(self) -> Iterator[Any]:
        with self._engine.connect() as conn, conn.begin():
            yield conn

    def dispose(self) -> None:
        if "_engine" in self.__dict__:
            self.__dict__.pop("_engine").dispose()
        super().dispose()


class _EventLogStorage(SqliteEventLogStorage):
    """Dagster's per-run-sharded SQLite event log; connections commit with synchronous=NORMAL (WAL), and
    the engines of the shards used last are kept, with their connections, instead of being built for
    every event."""

    _ENGINES_KEPT = 8

    def __init__(self, base_dir: str, inst_data: Any = None) -> None:
        self._engines: collections.OrderedDict[str, sa.engine.Engine] = collections.OrderedDict()
        super().__init__(base_dir, inst_data=inst_data)

    def _engine(self, shard: str) -> sa.engine.Engine:
        engine = self._engines.get(shard)
        if engine is None:
            engine = _sqlite_engine(self.conn_string_for_shard(shard),
                                    connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS})
            self._engines[shard] = engine
            while len(self._engines) > self._ENGINES_KEPT:
                self._engines.popitem(last=False)[1].dispose()
        else:
            self._engines.move_to_end(shard)
        return engine

    _shard_template: bytes | None = None  # per process: an empty run shard as Dagster initialises it
    _template_lock = threading.Lock()

    def _initdb(self, engine: sa.engine.Engine, for_index_shard: bool = False) -> None:
        path = engine.url.database
        if for_index_shard or not path or os.path.basename(path) == f"{INDEX_SHARD_NAME}.db" \
                or not self._new_shard_from_template(path):
            super()._initdb(engine, for_index_shard)

    def _new_shard_from_template(self, path: str) -> bool:
        """Create the new run shard `path` as a copy of an empty shard that Dagster's own _initdb set up
        (tables, WAL mode, alembic stamp). _initdb loads every alembic migration script to check and stamp
        the revision: about 60 ms per run. The copy is written durably and linked into place (fsutil, with
        replace=False), so a shard another process created first is left alone (then _initdb runs and finds
        it set up). Returns whether it created it."""
        if os.path.exists(path):
            return False
        # suffix "": a temp named *.db could be taken for a shard by Dagster's listing of the folder
        return fsutil.atomic_write(path, self._empty_shard(), replace=False, suffix="")

    def _empty_shard(self) -> bytes:
        cls = type(self)
        with cls._template_lock:
            if cls._shard_template is None:
                with tempfile.TemporaryDirectory() as scratch:
                    engine = create_engine(create_db_conn_string(scratch, "template"), poolclass=NullPool)
                    try:
                        super()._initdb(engine)  # Dagster's own set-up, on a scratch file
                    finally:
                        engine.dispose()
                    db = os.path.join(scratch, "template.db")
                    with contextlib.closing(sqlite3.connect(db)) as conn:  # WAL contents into the file
                        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                    with open(db, "rb") as f:
                        cls._shard_template = f.read()
            return cls._shard_template

    def _dispose_engines(self) -> None:
        with self._db_lock:
            engines, self._engines = list(self._engines.values()), collections.OrderedDict()
        for engine in engines:
            engine.dispose()

    def wipe(self) -> None:
        # wipe() deletes the shard files: no pooled connection may go on writing to a deleted file
        self._dispose_engines()
        super().wipe()

    def dispose(self) -> None:
        super().dispose()
        self._dispose_engines()

    @contextlib.contextmanager
    def _connect(self, shard: str) -> Iterator[Any]:
        # As SqliteEventLogStorage._connect, but with a kept engine and its pooled connections.
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn


class SqliteStorage(DagsterSqliteStorage):
    """`DagsterSqliteStorage` (same files, same layout) with the run and event log storages above, as the
    repo's dagster.yaml configures it:

    ```yaml
    storage:
      custom:
        module: pxt_assets.instance
        class: SqliteStorage
        config: {base_dir: {env: DAGSTER_HOME}}
    ```

    `write_config()` writes the same with the folder's absolute path as `base_dir`.
    """

    def __init__(self, base_dir: str, inst_data: Any = None) -> None:
        # DagsterSqliteStorage.__init__, with the run and event log classes swapped, under the folder's set-up
        # lock: each storage checks for its tables and alembic stamp and writes them if missing, which two
        # processes opening a new folder at once would both do (see the module's docstring). Opening a folder
        # set up before takes the lock for about 50 ms (the checks alone).
        self.base_dir = base_dir
        with fsutil.setup_lock(base_dir):
            self._run_storage = _RunStorage.from_local(_runs_directory(base_dir))
            self._event_log_storage = _EventLogStorage(_event_logs_directory(base_dir))
            self._schedule_storage = SqliteScheduleStorage.from_local(_schedule_directory(base_dir))
        self._inst_data = inst_data
        DagsterStorage.__init__(self)

    @classmethod
    def config_type(cls) -> Any:
        # base_dir may be left out (the repo's dagster.yaml does): $DAGSTER_HOME, else a temporary folder, as
        # Dagster's CLI makes when DAGSTER_HOME is unset (`dg list defs` in the repository)
        return {"base_dir": dg.Field(dg.StringSource, is_required=False)}

    @classmethod
    def from_config_value(cls, inst_data: Any, config_value: Any) -> SqliteStorage:  # type: ignore[override]
        base_dir = config_value.get("base_dir") or os.environ.get("DAGSTER_HOME") or _temporary_home()
        return cls.from_local(inst_data=inst_data, base_dir=base_dir)


def _temporary_home() -> str:
    import atexit
    import shutil
    import tempfile

    path = tempfile.mkdtemp(prefix="pxt-dagster-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def write_config(path: pathlib.Path) -> pathlib.Path:
    """Create the instance folder `path` with pxt_assets' dagster.yaml (the repo's dagster.yaml, with the
    folder's absolute path as base_dir so the instance also opens by path, without $DAGSTER_HOME), unless it
    has a dagster.yaml already. `./dev` calls this as `python -m pxt_assets.instance DIR`."""
    fsutil.make_dirs(path)
    config = path / "dagster.yaml"
    if not config.exists():
        # first writer wins: two processes setting up one home at once write the same file anyway
        fsutil.atomic_write(config, _DAGSTER_YAML.format(base_dir=json.dumps(str(path.resolve()))),  # JSON is YAML
                            replace=False)
    return path


def dagster_home() -> pathlib.Path:
    """$DAGSTER_HOME, or `$PIXELTABLE_HOME/dagster` when unset (created with telemetry off)."""
    home = os.environ.get("DAGSTER_HOME")
    return write_config(pathlib.Path(home).expanduser() if home else load_settings().home / "dagster")


def get_instance() -> dg.DagsterInstance:
    """The persistent instance under dagster_home(), so the UI shows what the Python API did."""
    home = dagster_home()
    os.environ.setdefault("DAGSTER_HOME", str(home))
    return dg.DagsterInstance.from_config(str(home))


if __name__ == "__main__":
    import sys

    print(write_config(pathlib.Path(sys.argv[1])) / "dagster.yaml")
