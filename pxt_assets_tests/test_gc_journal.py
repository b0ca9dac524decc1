"""gc deletes only what this database wrote (issue #26 item 1).

- Two homes (two databases) sharing one destination, a local folder or a bucket prefix on moto, each
  collecting garbage with --min-age 0, never delete each other's files; `--reconcile` reports the other's.
- A batch re-run while gc is deleting its files (gc frozen at `gc_before_delete`, holding the batch's claim,
  its candidates checked): the run waits for gc, then writes again, and every file its rows name exists.
- Journal mechanics: group commit (many threads, one transaction each group), completions, upgrade backfill.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
import sqlalchemy as sa

import pxt_assets as pxt
from pxt_assets import lifecycle, rowstore, stores
from pxt_assets.config import current_settings
from pxt_assets.rowstore import schema
from pxt_assets_tests.conftest import forget_value, stored_records, unique_bucket
from pxt_assets_tests.emulators import REPO
from pxt_assets_tests.test_faults import (
    TABLE,
    Setup,
    assert_exact,
    child_env,
    output_of,
    resume_stopped,
    wait_stopped,
)

HOME_CODE = """
import sys
import pxt_assets as pxt
from pxt_assets import lifecycle, rowstore, stores
from pxt_assets.config import current_settings
dest, images = sys.argv[1], sys.argv[2:]
t = pxt.MediaTable('shared/t', {'img': pxt.Image})
t.add_computed_column(rot=t.img.rotate(90), destination=dest)
if images:
    t.insert([{'img': p} for p in images])
lifecycle.collect_garbage(dest, delete=True, min_age=0)
store = rowstore.for_settings(t.settings)
rt = store.row_table(t.spec.slug)
urls = [u for u, _ in store.owned_files(rt, t.spec.slug)] if rt is not None else []
print('MISSING' if any(not stores.store_for(u).exists(u) for u in urls) else 'ALL THERE', len(urls))
"""


def _home(tmp_path, name, dest, images):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIXELTABLE_", "DAGSTER_", "PXT_"))}
    env.update(PIXELTABLE_HOME=str(tmp_path / name), DAGSTER_HOME=str(tmp_path / name / "dagster"))
    return subprocess.run([sys.executable, "-c", HOME_CODE, dest, *map(str, images)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(params=["local", "s3"])
def shared_dest(request, tmp_path):
    if request.param == "local":
        dest = tmp_path / "shared_out"
        dest.mkdir()
        return str(dest)
    s3 = request.getfixturevalue("s3_env")
    bucket = unique_bucket("shared")
    s3.client().create_bucket(Bucket=bucket)
    return f"s3://{bucket}/shared/out/"


def _last(proc) -> str:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def test_two_homes_sharing_a_destination_never_collect_each_others_files(tmp_path, images, shared_dest):
    first = _home(tmp_path, "a", shared_dest, images[:2])
    assert _last(first) == "ALL THERE 2"
    second = _home(tmp_path, "b", shared_dest, images[1:])  # B's gc runs with A's files under the prefix
    assert _last(second) == f"ALL THERE {len(images) - 1}"
    assert _last(_home(tmp_path, "a", shared_dest, [])) == "ALL THERE 2"  # A collects again, after B wrote
    assert _last(_home(tmp_path, "b", shared_dest, [])) == f"ALL THERE {len(images) - 1}"
    # each home's --reconcile reports the other's files (named like ours, not in its journal), deleting none
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIXELTABLE_", "DAGSTER_", "PXT_"))}
    env.update(PIXELTABLE_HOME=str(tmp_path / "a"), DAGSTER_HOME=str(tmp_path / "a" / "dagster"))
    rec = subprocess.run([sys.executable, "-m", "pxt_assets", "gc", shared_dest, "--reconcile"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)
    assert rec.returncode == 0, rec.stderr[-3000:]
    assert rec.stdout.splitlines()[-1].startswith(f"{len(images) - 1} files named like ours that this database did "
                                                  "not write"), rec.stdout


def test_a_batch_rerun_while_gc_deletes_its_files_waits_and_keeps_every_file(pxt_home, tmp_path, monkeypatch,
                                                                            s3_env, instance):
    bucket = unique_bucket("gcrace")
    s3_env.client().create_bucket(Bucket=bucket)
    setup = Setup(tmp_path, pxt_home, bucket, "local", monkeypatch)
    t = setup.table
    batch = t.insert(setup.rows, instance=instance).batch
    # row 0's rotated file loses its row's reference and its computation (as a killed backfill leaves it):
    # a candidate for gc, and what `resume` computes again, under the same (deterministic) name
    lost = stored_records(t, "rotated", batch)[0]
    forget_value(t, "rotated", lost["row_id"])
    store = rowstore.for_settings(t.settings)
    rt = store.for_spec(t.spec)
    with store.engine.begin() as conn:
        conn.execute(rt.table().update().where(rt.table().c._row_id == lost["row_id"]).values(
            {rt.field("rotated", schema.VERSION): None}))
    assert t.uncomputed() and lifecycle.find_orphans(str(setup.local_out), min_age=0) == [lost["value"]]

    gc = subprocess.Popen([sys.executable, "-m", "pxt_assets", "gc", str(setup.local_out), "--delete",
                           "--min-age", "0"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=child_env(pxt_home, tmp_path / "dagster_gc", PXT_FAULT_POINT="gc_before_delete:1:stop"))
    wait_stopped(gc)  # holding the batch's claim, the candidate checked, about to delete it
    rerun = subprocess.Popen([sys.executable, "-m", "pxt_assets", "resume", TABLE], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=child_env(pxt_home, tmp_path / "dagster"))
    try:
        deadline = time.monotonic() + 120
        while batch not in store.live_batches():  # the re-run has marked its batch live
            assert rerun.poll() is None, rerun.communicate()
            assert time.monotonic() < deadline, "the re-run never marked its batch"
            time.sleep(0.05)
        time.sleep(3.0)  # long enough for a re-run that did not wait to rewrite the file and commit
        assert rerun.poll() is None, "the re-run did not wait for gc's claim on its batch"
    except BaseException:
        rerun.kill()
        gc.kill()
        raise
    collected = resume_stopped(gc)
    assert collected.returncode == 0, output_of(collected)
    assert collected.stdout.splitlines() == [lost["value"], "1 orphaned file deleted"]
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, f"{out[-3000:]}\n{err[-5000:]}"
    assert_exact(setup, s3_env)  # row 0's file written again and named; nothing else gone or left over
    assert stored_records(t, "rotated", batch)[0]["value"] == lost["value"]


def test_intents_of_many_threads_are_group_committed_and_completions_recorded(pxt_home):
    store = rowstore.for_settings(current_settings())
    commits = []
    sa.event.listen(store.engine, "commit", lambda conn: commits.append(1))
    uris = [f"file:///tmp/x/t_c_20260101T000000000000-abcd-{i:06d}_0123456789abcdef.png" for i in range(64)]

    def write(uri: str) -> None:
        store.record_writes([(uri, "t", "20260101T000000000000-abcd", "c", "file:///tmp/x")])
        store.write_done(uri)

    threads = [threading.Thread(target=write, args=(u,)) for u in uris]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    store.flush_writes()
    entries = store.journal_entries("file:///tmp/x/")
    assert sorted(e.uri for e in entries) == sorted(uris)
    assert all(e.done_at is not None and e.done_at >= e.written_at for e in entries)
    assert len(commits) < len(uris), "every intent had a transaction of its own"
    store.forget_writes(uris)
    assert store.journal_entries("file:///tmp/x/") == []


def test_a_file_modified_after_its_write_is_left_in_place(pxt_home, tmp_path, images):
    out = tmp_path / "out"
    out.mkdir()
    t = pxt.MediaTable("gcj/mod", {"img": pxt.Image})
    t.add_computed_column(rot=t.img.rotate(90), destination=str(out))
    batch = t.insert([{"img": str(p)} for p in images[:2]]).batch
    changed, gone = (r["value"] for r in stored_records(t, "rot", batch))
    for r in stored_records(t, "rot", batch):
        forget_value(t, "rot", r["row_id"])
    path = stores.path_of(changed)
    later = time.time() + 60  # rewritten by a writer this database does not know, after its write was done
    os.utime(path, (later, later))
    assert lifecycle.collect_garbage(str(out), delete=True, min_age=0) == [gone]
    assert path.is_file() and not stores.path_of(gone).exists()
    store = rowstore.for_settings(t.settings)
    assert [e.uri for e in store.journal_entries(stores.normalize_uri(str(out)).rstrip("/") + "/")] == [changed]


def test_upgrade_enters_the_files_rows_name_into_the_journal(pxt_home, tmp_path, images):
    out = tmp_path / "out"
    out.mkdir()
    t = pxt.MediaTable("gcj/up", {"img": pxt.Image})
    t.add_computed_column(rot=t.img.rotate(90), destination=str(out))
    t.insert([{"img": str(p)} for p in images[:3]])
    store = rowstore.for_settings(t.settings)
    named = sorted(u for u, _ in store.owned_files(store.row_table(t.spec.slug), t.spec.slug))
    prefix = stores.normalize_uri(str(out)).rstrip("/") + "/"
    assert sorted(e.uri for e in store.journal_entries(prefix)) == named
    # as a release before the journal left it: no entries; the upgrade's step fills them from the rows
    from pxt_assets.rowstore import versions
    with store.engine.begin() as conn:
        conn.execute(schema.written.delete())
        versions._journal_backfill(conn)
    assert sorted(e.uri for e in store.journal_entries(prefix)) == named
