"""A new home survives concurrent first use: four processes making their first insert into one new
`$PIXELTABLE_HOME` at once leave it working, twenty homes over.

The first use of a home sets up its Dagster instance (Dagster's SQLite storage under `$PIXELTABLE_HOME/dagster`:
tables created, alembic revision stamped) and its row store (`pxt.db`). Dagster's set-up is a check then a
write; before the instance folder's set-up lock (pxt_assets/instance.py), two processes could both pass the
check and stamp twice, and every later open of that instance failed ("more than one head"). Run on that code,
this test failed both times: about 45 of the 80 set-ups failed outright, and the insert after them failed
in 9 of the 20 homes.

The four processes of a home start its first use together (each waits for the others' ready files). To keep
this quick they do what a first insert does before running its batch (open the instance and its run, event
log and schedule storage, add a partition, create a table in the row store), 20 homes in a row; then each
makes one real insert in five of the homes. `python -m bench first-use` runs whole first inserts at once.

The row store's half alone is cheap to repeat more often: four processes open a new `pxt.db` at once, 100
times (the package's __init__, which imports Dagster, left out). Its first connection switches the file to
WAL, which needs it to itself; before the set-up lock, one open in one to two hundred failed ("database is
locked", at once: SQLite does not wait where waiting could deadlock), and this test failed both times.
"""

from __future__ import annotations

import json
import os
import pathlib
import sqlite3
import subprocess
import sys

import sqlalchemy as sa

from pxt_assets.rowstore import versions
from pxt_assets_tests.conftest import BARE_PACKAGE, PACKAGE_DIR
from pxt_assets_tests.emulators import REPO

HOMES = 20
PROCESSES = 4
TIMEOUT_S = 600

# One process: for each home in turn, wait until every process is ready, then its first use ("open": what a first
# insert does to set the home up, "insert": a whole first insert); with "open", afterwards one real insert into
# every PROCESSES-th home. Prints one line per home and step: FIRST-USE {json}.
CHILD = r"""
import json, os, pathlib, sys, time, traceback
me, homes, procs, first = json.loads(sys.argv[1])
import PIL.Image
import pxt_assets as pxt
from pxt_assets import assets, rowstore
from pxt_assets.instance import get_instance


def report(home, step, started, error=None, **extra):
    print("FIRST-USE " + json.dumps({"home": home, "process": me, "step": step, "ok": error is None,
                                      "error": error, "s": round(time.monotonic() - started, 3), **extra}), flush=True)


def enter(home):
    os.environ["PIXELTABLE_HOME"] = home
    os.environ.pop("DAGSTER_HOME", None)  # the home's own instance: $PIXELTABLE_HOME/dagster


def insert(home, table):
    image = pathlib.Path(home) / f"in-{me}.png"
    PIL.Image.new("RGB", (8, 6), (40 * me, 90, 160)).save(image)
    return table.insert([{"img": str(image)}]).num_rows


for home in homes:
    enter(home)
    pathlib.Path(home, f".ready-{me}").touch()
    while sum(pathlib.Path(home, f".ready-{i}").exists() for i in range(procs)) < procs:
        time.sleep(0.001)
    started = time.monotonic()
    try:
        t = pxt.create_table(f"t{me}", {"img": pxt.Image})
        if first == "insert":
            report(home, "first", started, rows=insert(home, t))
            continue
        instance = get_instance()  # the instance folder and its run, event log and schedule storage
        try:
            t._rowstore().for_spec(t.spec)
            instance.add_dynamic_partitions(assets.partitions_name(t.spec), [f"p{me}"])
            instance.get_run_records(limit=1)
        finally:
            instance.dispose()
        report(home, "first", started)
    except Exception as e:
        report(home, "first", started, f"{type(e).__name__}: {e}"[:500], traceback=traceback.format_exc()[-3000:])

if first == "open":
    for home in homes[me::procs]:
        enter(home)
        started = time.monotonic()
        try:
            report(home, "insert", started, rows=insert(home, pxt.get_table(f"t{me}")))
        except Exception as e:
            report(home, "insert", started, f"{type(e).__name__}: {e}"[:500], traceback=traceback.format_exc()[-3000:])
"""


def first_use_at_once(root: pathlib.Path, homes: int = HOMES, processes: int = PROCESSES,
                      first: str = "open") -> list[dict]:
    """Run `processes` processes through `homes` new homes under `root` (see CHILD); returns every line they
    reported, and raises if a process failed outside them."""
    paths = [root / f"home{i:02d}" for i in range(homes)]
    for p in paths:
        p.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIXELTABLE_", "DAGSTER_", "PXT_"))}
    env["PYTHONUNBUFFERED"] = "1"
    children = [subprocess.Popen([sys.executable, "-c", CHILD, json.dumps([me, [str(p) for p in paths], processes,
                                                                         first])],
                                 cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 stdin=subprocess.DEVNULL)
                for me in range(processes)]
    lines, problems = [], []
    for child in children:
        out, err = child.communicate(timeout=TIMEOUT_S)
        lines += [json.loads(line.split(" ", 1)[1]) for line in out.splitlines() if line.startswith("FIRST-USE ")]
        if child.returncode != 0:
            problems.append(f"--- exit code {child.returncode}\n{out[-2000:]}\n{err[-4000:]}")
    if problems:
        raise AssertionError("\n".join(problems))
    return lines


def alembic_stamps(home: pathlib.Path) -> dict[str, int]:
    """How many revisions each of the home's Dagster databases has stamped (one, in a working instance)."""
    out = {}
    for db in ("history/runs.db", "history/runs/index.db", "schedules/schedules.db"):
        with sqlite3.connect(home / "dagster" / db) as conn:
            out[db] = conn.execute("SELECT count(*) FROM alembic_version").fetchone()[0]
    return out


def test_four_processes_first_use_of_twenty_new_homes_at_once_leave_each_working(tmp_path):
    lines = first_use_at_once(tmp_path)
    failed = [line for line in lines if not line["ok"]]
    assert failed == [], "\n".join(f"{f['home']} ({f['step']}): {f['error']}\n{f['traceback']}" for f in failed[:3])
    firsts = [line for line in lines if line["step"] == "first"]
    inserts = [line for line in lines if line["step"] == "insert"]
    assert len(firsts) == HOMES * PROCESSES
    assert sorted(line["home"] for line in inserts) == sorted(str(tmp_path / f"home{i:02d}") for i in range(HOMES))
    assert all(line["rows"] == 1 for line in inserts)
    for i in range(HOMES):
        home = tmp_path / f"home{i:02d}"
        assert alembic_stamps(home) == dict.fromkeys(alembic_stamps(home), 1), home


# One process: for each new database folder in turn, wait until every process is ready, then open the row store's
# SQLite database there (a new file). Prints FAILED <error> for each open that failed, then DONE.
ROW_STORE_CHILD = BARE_PACKAGE + r"""
import json, pathlib, time
from pxt_assets.rowstore.engine import Database
me, folders, procs = json.loads(sys.argv[2])
for folder in folders:
    folder = pathlib.Path(folder)
    folder.mkdir(exist_ok=True)
    (folder / f".ready-{me}").touch()
    while sum((folder / f".ready-{i}").exists() for i in range(procs)) < procs:
        time.sleep(0.0005)
    try:
        Database(f"sqlite:///{folder / 'pxt.db'}").dispose()
    except Exception as e:
        print("FAILED", folder.name, type(e).__name__, str(e).splitlines()[0], flush=True)
print("DONE", flush=True)
"""


def test_four_processes_opening_a_new_row_store_database_at_once_all_open_it_a_hundred_times_over(tmp_path):
    folders = [str(tmp_path / f"db{i:03d}") for i in range(100)]
    children = [subprocess.Popen([sys.executable, "-c", ROW_STORE_CHILD, str(PACKAGE_DIR),
                                  json.dumps([me, folders, PROCESSES])],
                                 cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 stdin=subprocess.DEVNULL)
                for me in range(PROCESSES)]
    outs = [child.communicate(timeout=TIMEOUT_S) for child in children]
    for (out, err), child in zip(outs, children):
        assert child.returncode == 0 and out.rstrip().endswith("DONE"), out[-2000:] + err[-4000:]
    failed = [line for out, _ in outs for line in out.splitlines() if line.startswith("FAILED")]
    assert failed == []
    engine = sa.create_engine(f"sqlite:///{folders[-1]}/pxt.db")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert versions.recorded(conn) == versions.CURRENT
    finally:
        engine.dispose()
