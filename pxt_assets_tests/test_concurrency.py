"""Concurrency: four processes inserting into one table at once, with `gc --delete --min-age 0` running in a
loop in a fifth, lose and duplicate nothing; on SQLite (the embedded default) and on PostgreSQL.

Every process is real and shares the home, the Dagster instance, the database, the local folders and the
bucket (moto), as processes of one user on one machine do. Two of the inserters also resume, at the same
moment, one batch whose insert was killed before (`kill -9` before its commit): two runs of one batch then
write the same objects (deterministic names) and commit it twice over. Inserts reuse the same source files
across processes. Nothing here sleeps to synchronise: processes wait on files the test creates.
"""

from __future__ import annotations

import json
import subprocess
import sys

import dagster as dg
import pytest

import pxt_assets as pxt
from pxt_assets import rowstore, stores
from pxt_assets_tests.conftest import make_image, record_intent, unique_bucket
from pxt_assets_tests.emulators import REPO
from pxt_assets_tests.test_faults import SUBPROCESS_TIMEOUT_S, child_env, output_of, run

CONC_TABLE = "conc/media"
INSERTERS = 4
BATCHES_PER_INSERTER = 3
ROWS_PER_BATCH = 4

# An inserting process: ready, wait for the start signal, (resume the killed batch,) insert its batches.
INSERTER = """
import json, pathlib, sys, time
import pxt_assets as pxt
me, rows_by_batch, resume, ready, go = json.loads(sys.argv[1])
t = pxt.get_table({table!r})
pathlib.Path(ready).touch()
while not pathlib.Path(go).exists():
    time.sleep(0.01)
if resume:
    print("resumed", [r.num_rows for r in t.resume(resume)])
for rows in rows_by_batch:
    print("inserted", t.insert(rows).num_rows)
"""

# gc in a loop until told to stop; counts its rounds (in a file, as it goes) and what it deleted.
GC_LOOP = """
import json, os, pathlib, sys
from pxt_assets import lifecycle
dests, rounds_file, stop = json.loads(sys.argv[1])
deleted, rounds = [], 0
while not pathlib.Path(stop).exists():
    for d in dests:
        deleted += lifecycle.collect_garbage(d, delete=True, min_age=0)
    rounds += 1
    pathlib.Path(rounds_file + ".tmp").write_text(str(rounds))
    os.replace(rounds_file + ".tmp", rounds_file)  # read at any moment: whole
print(json.dumps(deleted))
"""


def max_overlap(dagster_home) -> int:
    """The most batch runs that were running at one moment, from the runs' recorded start and end times."""
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    try:
        records = instance.get_run_records(dg.RunsFilter(job_name="conc__media__batch_job"))
    finally:
        instance.dispose()
    ended = [r for r in records if r.start_time is not None and r.end_time is not None]  # not the killed one
    edges = sorted([(r.start_time, 1) for r in ended] + [(r.end_time, -1) for r in ended])
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def test_four_inserting_processes_and_gc_beside_them_lose_and_duplicate_nothing(
        db, pxt_home, tmp_path, monkeypatch, s3_env):
    bucket = unique_bucket("conc")
    s3 = s3_env.client()
    s3.create_bucket(Bucket=bucket)
    local_out = tmp_path / "rotated"
    local_out.mkdir()
    destinations = [str(local_out), f"s3://{bucket}/"]
    monkeypatch.setenv("PIXELTABLE_INPUT_MEDIA_DEST", f"s3://{bucket}/inputs/")
    pxt.create_dir("conc", if_exists="ignore")
    t = pxt.create_table(CONC_TABLE, {"img": pxt.Image, "label": pxt.String}, if_exists="replace")
    t.add_computed_column(rotated=t.img.rotate(90), destination=str(local_out))
    t.add_computed_column(thumb=t.img.thumbnail((24, 24)), destination=f"s3://{bucket}/thumbs/")
    t.add_computed_column(w=t.img.width)
    monkeypatch.delenv("PIXELTABLE_INPUT_MEDIA_DEST")
    src = tmp_path / "src"
    src.mkdir()
    # six source files shared by every process: the same bytes inserted many times, in rows of their own
    files = [make_image(src / f"{i}.jpg", size=(40 + 4 * i, 32), color=(30 * i, 90, 200)) for i in range(6)]

    def rows(label: str) -> list[dict]:
        return [{"img": str(files[(sum(map(ord, label)) + i) % len(files)]), "label": f"{label}-r{i}"}
                for i in range(ROWS_PER_BATCH)]

    env = child_env(pxt_home, tmp_path / "dagster")  # one Dagster instance for every process, as one user has
    # A batch killed before its commit, which two inserters will resume at the same moment.
    killed = run([sys.executable, "-c", f"import pxt_assets as pxt; pxt.get_table({CONC_TABLE!r}).insert({rows('k')!r})"],
                 {**env, "PXT_FAULT_POINT": "before_commit:1"})
    assert killed.returncode == -9, output_of(killed)
    (pending,) = t.pending_batches()
    # Real orphans (written through the journal, of a batch no row names), so gc is seen deleting while
    # inserts run.
    planted = []
    for d in destinations:
        name = "conc__media/rotated/aa/bb/conc__media_rotated_20200101T000000000000-abcd-000001_0123456789abcdef.jpg"
        uri = stores.store_for(d).join(d, name)
        record_intent(uri, d)
        if uri.startswith("s3://"):
            s3.put_object(Bucket=bucket, Key=name, Body=b"old")
        else:
            stores.path_of(uri).parent.mkdir(parents=True)
            stores.path_of(uri).write_bytes(b"old")
        planted.append(stores.canonical_uri(uri))

    sync = tmp_path / "sync"
    sync.mkdir()
    go, stop, rounds_file = sync / "go", sync / "stop", sync / "gc_rounds"
    gc_proc = subprocess.Popen([sys.executable, "-c", GC_LOOP, json.dumps([destinations, str(rounds_file), str(stop)])],
                               cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs = []
    for k in range(INSERTERS):
        args = [k, [rows(f"p{k}-b{j}") for j in range(BATCHES_PER_INSERTER)], pending if k < 2 else None,
                str(sync / f"ready{k}"), str(go)]
        procs.append(subprocess.Popen([sys.executable, "-c", INSERTER.format(table=CONC_TABLE), json.dumps(args)],
                                      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        for k, p in enumerate(procs):  # every inserter has imported everything and opened the table
            while not (sync / f"ready{k}").exists():
                try:
                    p.wait(0.05)
                except subprocess.TimeoutExpired:
                    continue
                pytest.fail(f"inserter {k} ended before it was ready:\n"
                            + output_of(subprocess.CompletedProcess(p.args, p.returncode, *p.communicate())))
        go.touch()
        outcomes = [p.communicate(timeout=SUBPROCESS_TIMEOUT_S) for p in procs]
        gc_rounds_during_inserts = int(rounds_file.read_text()) if rounds_file.exists() else 0
    finally:
        stop.touch()
        for p in procs:
            if p.poll() is None:
                p.kill()
        gc_out, gc_err = gc_proc.communicate(timeout=SUBPROCESS_TIMEOUT_S)
    for p, (out, err) in zip(procs, outcomes):
        assert p.returncode == 0, output_of(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    assert gc_proc.returncode == 0, output_of(subprocess.CompletedProcess(gc_proc.args, gc_proc.returncode, gc_out, gc_err))
    assert gc_rounds_during_inserts >= 3, f"gc ran only {gc_rounds_during_inserts} times during the inserts"
    deleted = {stores.canonical_uri(u) for u in json.loads(gc_out.strip().splitlines()[-1])}
    assert deleted == set(planted), "gc deleted something other than the planted orphans"
    assert max_overlap(tmp_path / "dagster") >= 3, "the inserts did not run at the same time: this proves nothing"

    # every row once: the killed batch, and each process's batches
    expected = sorted([f"k-r{i}" for i in range(ROWS_PER_BATCH)]
                      + [f"p{k}-b{j}-r{i}" for k in range(INSERTERS) for j in range(BATCHES_PER_INSERTER)
                         for i in range(ROWS_PER_BATCH)])
    assert t.pending_batches() == []
    assert len(t.batches()) == 1 + INSERTERS * BATCHES_PER_INSERTER
    assert t.count() == len(expected)
    frame = t.select(t.label, t.img.fileurl, t.rotated.fileurl, t.thumb.fileurl, t.w, t.img.errormsg).collect()
    assert sorted(frame["label"]) == expected
    assert frame["img_errormsg"].isna().all()
    # every recorded file exists; every object in the destinations is one a row names
    store = rowstore.for_settings(t.settings)
    recorded = {u for u, _ in store.owned_files(store.row_table(t.spec.slug), t.spec.slug)}
    assert len(recorded) == 3 * len(expected)
    assert recorded == {u for c in ("img_fileurl", "rotated_fileurl", "thumb_fileurl") for u in frame[c]}
    assert all(stores.store_for(u).exists(u) for u in recorded), "a recorded file is missing"
    listed = {stores.canonical_uri(str(p)) for p in local_out.rglob("*") if p.is_file()}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        listed |= {stores.canonical_uri(f"s3://{bucket}/{o['Key']}") for o in page.get("Contents", [])}
    assert listed == {stores.canonical_uri(u) for u in recorded}, "objects no row names"

