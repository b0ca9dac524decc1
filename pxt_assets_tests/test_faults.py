"""Faults recovered exactly: `kill -9` of the inserting process at named points (before, during and after
uploads; before, during and after the row commit), and a worker killed in the middle of a computing step.

Each insert runs in a real child process, which kills itself with SIGKILL at the point PXT_FAULT_POINT names
(pxt_assets/faults.py: deterministic, no sleeps). Then the batch is run again the way docs/lifecycle.md says
(`t.resume()`, `python -m pxt_assets resume`), and the table is checked exactly: every row present once,
every recorded file exists and opens, no staged record or pending batch left, and nothing in any destination
(local folders, hidden files included, and the bucket) that no row names.
"""

from __future__ import annotations

import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import dagster as dg
import PIL.Image
import pytest
import yaml

import pxt_assets as pxt
from pxt_assets import lifecycle, rowstore, stores
from pxt_assets.instance import write_config
from pxt_assets_tests.conftest import make_image, unique_bucket
from pxt_assets_tests.emulators import REPO

SUBPROCESS_TIMEOUT_S = 300
TABLE = "faults/media"
LABELS = [f"row{i}" for i in range(7)]


def child_env(home: pathlib.Path, dagster_home: pathlib.Path, **extra: str) -> dict[str, str]:
    """The environment of a child process: this test's home, its own Dagster instance, moto's endpoint."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIXELTABLE_", "DAGSTER_", "PXT_"))}
    if os.environ.get("PIXELTABLE_DB_URL"):
        env["PIXELTABLE_DB_URL"] = os.environ["PIXELTABLE_DB_URL"]
    env.update(PIXELTABLE_HOME=str(home), DAGSTER_HOME=str(write_config(dagster_home)), PYTHONUNBUFFERED="1",
               **extra)
    return env


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S,
                          stdin=subprocess.DEVNULL)


def output_of(proc: subprocess.CompletedProcess) -> str:
    return f"--- exit code {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-6000:]}"


class Setup:
    """A catalog table with an inserted image (to `input_media_dest`: the bucket or a local folder), a label,
    a computed image in a local folder, a computed thumbnail in the bucket and a width; the rows to insert."""

    def __init__(self, tmp_path: pathlib.Path, home: pathlib.Path, bucket: str, input_dest: str,
                 monkeypatch) -> None:
        self.home, self.bucket = home, bucket
        self.local_in, self.local_out = tmp_path / "in_dest", tmp_path / "rotated"
        self.local_in.mkdir()
        self.local_out.mkdir()
        self.destinations = [str(self.local_out), f"s3://{bucket}/"]
        if input_dest == "s3":
            monkeypatch.setenv("PIXELTABLE_INPUT_MEDIA_DEST", f"s3://{bucket}/inputs/")
        else:
            monkeypatch.setenv("PIXELTABLE_INPUT_MEDIA_DEST", str(self.local_in))
            self.destinations.append(str(self.local_in))
        pxt.create_dir("faults", if_exists="ignore")
        t = pxt.create_table(TABLE, {"img": pxt.Image, "label": pxt.String})
        t.add_computed_column(rotated=t.img.rotate(90), destination=str(self.local_out))
        t.add_computed_column(thumb=t.img.thumbnail((24, 24)), destination=f"s3://{bucket}/thumbs/")
        t.add_computed_column(w=t.img.width)
        monkeypatch.delenv("PIXELTABLE_INPUT_MEDIA_DEST")  # recorded with the column: children need not know
        self.table = t
        src = tmp_path / "src"
        src.mkdir()
        paths = [make_image(src / f"{i}.jpg", size=(40 + 8 * i, 32), color=(40 * i, 90, 200)) for i in range(4)]
        # two rows with the same file as others (same bytes, other rows: names differ by row id), and a
        # missing file (a row in error: present once too, with no file)
        files = [*paths, paths[0], paths[1], src / "missing.jpg"]
        self.rows = [{"img": str(f), "label": label} for f, label in zip(files, LABELS)]

    def insert_code(self) -> str:
        return f"import pxt_assets as pxt; pxt.get_table({TABLE!r}).insert({self.rows!r}, on_error='ignore')"


@pytest.fixture
def bucket(s3_env) -> str:
    name = unique_bucket("faults")
    s3_env.client().create_bucket(Bucket=name)
    return name


def listed_objects(setup: Setup, s3) -> set[str]:
    """Everything under the destinations, in canonical form: local files (hidden ones too: a temp file left
    by a killed write counts) and every object in the bucket."""
    out = set()
    for d in setup.destinations:
        if d.startswith("s3://"):
            continue
        out |= {stores.canonical_uri(str(p)) for p in pathlib.Path(d).rglob("*") if p.is_file()}
    for page in s3.client().get_paginator("list_objects_v2").paginate(Bucket=setup.bucket):
        out |= {stores.canonical_uri(f"s3://{setup.bucket}/{o['Key']}") for o in page.get("Contents", [])}
    return out


def assert_exact(setup: Setup, s3) -> None:
    """Every row once, every recorded file present and readable, nothing left that no row names."""
    t = setup.table
    store = rowstore.for_settings(t.settings)
    assert t.pending_batches() == []
    assert t.count() == len(LABELS)
    frame = t.select(t.label, t.img.fileurl, t.rotated.fileurl, t.thumb.fileurl, t.w, t.img.errortype).collect().to_pandas()
    assert sorted(frame["label"]) == LABELS, "a row is missing or duplicated"
    by_label = frame.set_index("label")
    assert by_label.loc["row6", "img_errortype"] == "not_found"
    assert [int(by_label.loc[f"row{i}", "w"]) for i in range(6)] == [40, 48, 56, 64, 40, 48]
    owned = store.owned_files(store.row_table(t.spec.slug), t.spec.slug)
    assert len(owned) == 6 * 3, owned  # six good rows: the inserted copy, rotated and thumb each
    recorded = {u for u, _ in owned}
    assert recorded == {u for c in ("img_fileurl", "rotated_fileurl", "thumb_fileurl") for u in frame[c] if u}
    for uri in recorded:
        data = stores.store_for(uri).read_bytes(uri)  # exists, and whole: it opens as an image
        with PIL.Image.open(__import__("io").BytesIO(data)) as img:
            img.load()
    assert listed_objects(setup, s3) == {stores.canonical_uri(u) for u in recorded}, "objects no row names"
    for dest in setup.destinations:
        assert lifecycle.find_orphans(dest, min_age=0) == []


# -- kill -9 of the inserting process ---------------------------------------------------------------------------

KILL_POINTS = [
    # (point, input_media_dest, database): every point with a local folder and the bucket among the destinations
    ("before_upload:1", "s3", "sqlite"),     # nothing written yet
    ("after_upload:3", "s3", "sqlite"),      # some inserted files in the bucket, no row staged
    ("mid_upload:2", "local", "sqlite"),     # a local file written under its temporary name, not renamed into place
    ("after_upload:9", "local", "sqlite"),   # the inserted copies staged, some computed files written
    ("before_commit:1", "s3", "sqlite"),     # every file written and staged, nothing committed
    ("mid_commit:1", "local", "sqlite"),     # inside the SQL transaction: rows written, not committed
    ("mid_commit:1", "s3", "postgres"),      # the same, the server rolling back for a client that vanished
    ("after_commit:1", "s3", "sqlite"),      # committed; the process dies before it says so
]


@pytest.mark.parametrize("point,input_dest,database", KILL_POINTS,
                         ids=[f"{p.split(':')[0]}-{d}-{db}" for p, d, db in KILL_POINTS])
def test_kill_9_of_the_inserting_process_then_resume_gives_every_row_once_and_no_orphan(
        point, input_dest, database, request, pxt_home, tmp_path, monkeypatch, s3_env, bucket, instance):
    if database == "postgres":
        monkeypatch.setenv("PIXELTABLE_DB_URL", request.getfixturevalue("pg_database"))
    setup = Setup(tmp_path, pxt_home, bucket, input_dest, monkeypatch)
    t = setup.table
    env = child_env(pxt_home, tmp_path / "child_dagster", PXT_FAULT_POINT=point)
    killed = run([sys.executable, "-c", setup.insert_code()], env)
    assert killed.returncode == -9, f"the insert was not killed at {point}:\n{output_of(killed)}"
    written = listed_objects(setup, s3_env)
    assert bool(written) == (not point.startswith("before_upload")), written  # the kill came where it should
    for dest in setup.destinations:  # the killed batch's files are kept: a re-run names them
        assert lifecycle.find_orphans(dest, min_age=0) == []

    if point.startswith("after_commit"):  # the batch committed before the process died: nothing to resume
        assert t.pending_batches() == [] and t.count() == len(LABELS)
    else:  # nothing of the batch is visible until it is run again
        assert len(t.pending_batches()) == 1 and t.count() == 0
    results = t.resume(instance=instance)
    assert [r.num_rows for r in results] == ([] if point.startswith("after_commit") else [len(LABELS)])
    # The re-run wrote the same names (deterministic), so it left nothing behind, except the temporary files
    # of local writes the kill cut short (the one at the fault point, and any other thread's write in flight
    # at that moment): those are gc's, now that their batch is committed and their process gone.
    collected = [u for d in setup.destinations for u in lifecycle.collect_garbage(d, delete=True, min_age=0)]
    assert all(pathlib.Path(stores.path_of(u)).name.startswith(".tmp-") for u in collected), collected
    if point.startswith("mid_upload"):
        assert collected
    elif input_dest == "s3" and not point.startswith("after_upload"):
        assert collected == []
    assert_exact(setup, s3_env)


# -- a worker killed in the middle of a step --------------------------------------------------------------------


def test_a_step_process_killed_mid_step_fails_its_run_and_resume_completes_the_batch_exactly(
        pxt_home, tmp_path, monkeypatch, s3_env, bucket):
    """`dagster job execute` of the insert job: its op submits the batch's run, which Dagster launches in a
    process of its own with the multiprocess executor, each step in a process of its own. Fault points count
    per process: the source step stores 6 files (the inserted copies) and lives; the computing step (12 files,
    rotated and thumb) is killed after its 8th (a worker lost mid-step). The run fails, the batch stays pending
    and invisible; `python -m pxt_assets resume` completes it."""
    setup = Setup(tmp_path, pxt_home, bucket, "s3", monkeypatch)
    t = setup.table
    config = tmp_path / "insert.yaml"
    config.write_text(yaml.safe_dump({"ops": {"faults__media__insert": {"config": {"rows": setup.rows}}}}))
    dagster_home = tmp_path / "dagster_home"
    env = child_env(pxt_home, dagster_home, PXT_FAULT_POINT="after_upload:8")
    failed = run([str(pathlib.Path(sys.executable).parent / "dagster"), "job", "execute", "-m", "pxt_assets.definitions",
                  "-j", "faults__media_job", "-c", str(config)], env)
    assert failed.returncode != 0, output_of(failed)
    (batch,) = t.pending_batches()
    assert t.count() == 0
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    try:
        (batch_run,) = [r for r in instance.get_runs() if r.job_name == "faults__media__batch_job"]
        assert batch_run.status == dg.DagsterRunStatus.FAILURE
        messages = " ".join(e.user_message or "" for e in instance.all_logs(batch_run.run_id))
        # the step's own process died (SIGKILL), not the run: the executor saw it and failed the step
        assert "child process for step faults__media__computed was terminated by signal 9" in messages, messages[-3000:]
        succeeded = [e for e in instance.all_logs(batch_run.run_id)
                     if e.dagster_event is not None and e.dagster_event.event_type == dg.DagsterEventType.STEP_SUCCESS]
        assert [e.step_key for e in succeeded] == ["faults__media__source"]  # it ran in a process of its own
    finally:
        instance.dispose()
    written = listed_objects(setup, s3_env)
    assert len(written) >= 6 + 8, written  # the inserted copies, and what the killed step wrote
    for dest in setup.destinations:
        assert lifecycle.find_orphans(dest, min_age=0) == []

    resumed = run([sys.executable, "-m", "pxt_assets", "resume", TABLE],
                  child_env(pxt_home, dagster_home))
    assert resumed.returncode == 0, output_of(resumed)
    # Pixeltable's line: the bad row's error, in its column and in those computed from it
    assert re.search(rf"Inserted {len(LABELS)} rows with [1-9][0-9]* errors? across", resumed.stdout), \
        output_of(resumed)
    # all gc may find is a local write's temporary file: another row's, being written when the step was killed
    collected = [u for d in setup.destinations for u in lifecycle.collect_garbage(d, delete=True, min_age=0)]
    assert all(u.rsplit("/", 1)[-1].startswith(".tmp-") for u in collected), collected
    assert_exact(setup, s3_env)


def wait_stopped(proc: subprocess.Popen, timeout_s: float = SUBPROCESS_TIMEOUT_S) -> None:
    """Wait until `proc` has stopped itself at its fault point (PXT_FAULT_POINT=name:count:stop); fail with
    its output if it ends instead."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pid, status = os.waitpid(proc.pid, os.WUNTRACED | os.WNOHANG)
        if pid == 0:
            time.sleep(0.05)  # polling the condition: the child has not reached its point yet
            continue
        if os.WIFSTOPPED(status):
            return
        out, err = proc.communicate()
        pytest.fail(f"the child ended (status {status}) before its fault point:\n{out[-3000:]}\n{err[-6000:]}")
    proc.kill()
    pytest.fail("the child never reached its fault point")


def resume_stopped(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    os.kill(proc.pid, signal.SIGCONT)
    out, err = proc.communicate(timeout=SUBPROCESS_TIMEOUT_S)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


# -- gc beside an insert frozen at a point: it takes nothing the insert wrote ----------------------------------


def test_gc_beside_an_insert_frozen_after_its_uploads_deletes_nothing_it_wrote(pxt_home, tmp_path, monkeypatch,
                                                                              s3_env, bucket):
    """The insert stops itself (SIGSTOP) once its inserted copies are in the bucket, before any row is staged;
    gc with --min-age 0 then finds nothing to delete; let go, the insert completes exactly."""
    setup = Setup(tmp_path, pxt_home, bucket, "s3", monkeypatch)
    env = child_env(pxt_home, tmp_path / "dagster", PXT_FAULT_POINT="after_upload:6:stop")
    child = subprocess.Popen([sys.executable, "-c", setup.insert_code()], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_stopped(child)
    written = listed_objects(setup, s3_env)
    assert len(written) == 6  # the six inserted copies: named by no row yet
    assert [lifecycle.collect_garbage(d, delete=True, min_age=0) for d in setup.destinations] == [[], []]
    assert listed_objects(setup, s3_env) == written
    done = resume_stopped(child)
    assert done.returncode == 0, output_of(done)
    assert_exact(setup, s3_env)


def test_gc_beside_a_rerun_of_a_committed_batch_frozen_after_writing_new_files_deletes_none_of_them(
        pxt_home, tmp_path, monkeypatch, s3_env, bucket, instance):
    """A committed batch run again after its source file changed in place writes new copies under new names,
    which no row names until it commits: only its run's mark protects them. Frozen there, gc takes none."""
    setup = Setup(tmp_path, pxt_home, bucket, "local", monkeypatch)
    t = setup.table
    (first,) = [t.insert(setup.rows, instance=instance).batch]
    before = listed_objects(setup, s3_env)
    make_image(pathlib.Path(setup.rows[0]["img"]), size=(40, 32), color=(250, 250, 250))  # rows 0 and 4 change
    env = child_env(pxt_home, tmp_path / "dagster", PXT_FAULT_POINT="after_upload:6:stop")
    child = subprocess.Popen([sys.executable, "-m", "pxt_assets", "resume", TABLE, first], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_stopped(child)
    new = listed_objects(setup, s3_env) - before
    assert len(new) == 2, new  # the new copies of rows 0 and 4: named by no row, staged by no step yet
    assert [lifecycle.collect_garbage(d, delete=True, min_age=0) for d in setup.destinations] == [[]] * 3
    assert new <= listed_objects(setup, s3_env)
    done = resume_stopped(child)
    assert done.returncode == 0, output_of(done)
    assert_exact(setup, s3_env)  # the new files named, the replaced ones deleted
    assert not new - listed_objects(setup, s3_env)


def test_kill_9_after_a_reruns_commit_leaves_only_the_replaced_files_for_gc(pxt_home, tmp_path, monkeypatch,
                                                                           s3_env, bucket, instance):
    """A committed batch run again after a source file changed in place: its commit names new files, and the
    process is killed before it deletes the files the new values replaced. Those, and only those, are gc's."""
    setup = Setup(tmp_path, pxt_home, bucket, "local", monkeypatch)
    t = setup.table
    batch = t.insert(setup.rows, instance=instance).batch
    before = listed_objects(setup, s3_env)
    make_image(pathlib.Path(setup.rows[0]["img"]), size=(40, 32), color=(250, 250, 250))  # rows 0 and 4 change
    killed = run([sys.executable, "-m", "pxt_assets", "resume", TABLE, batch],
                 child_env(pxt_home, tmp_path / "dagster", PXT_FAULT_POINT="after_commit:1"))
    assert killed.returncode == -9, output_of(killed)
    collected = {stores.canonical_uri(u) for d in setup.destinations
                 for u in lifecycle.collect_garbage(d, delete=True, min_age=0)}
    assert len(collected) == 2 * 3 and collected <= before  # rows 0 and 4: the inserted copy, rotated, thumb
    assert_exact(setup, s3_env)
