"""A shared deployment: Dagster's storage in PostgreSQL, rows in PostgreSQL, the Dagster daemon running.
Batches are submitted through the instance (its run coordinator, the daemon, the run launcher), never run
nested in the caller: a notebook's insert, the insert job run by `dagster job execute`, a column's backfill."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import dagster as dg
import PIL.Image
import pytest

import pxt_assets as pxt
from pxt_assets import launch, lifecycle, stores
from pxt_assets_tests.conftest import SAMPLES, make_image, unique_bucket
from pxt_assets_tests.test_cli_and_ui import stop
from pxt_assets_tests.test_faults import child_env, output_of, resume_stopped, wait_stopped

REPO = pathlib.Path(__file__).resolve().parents[1]
BIN = pathlib.Path(sys.executable).parent

pytest.importorskip("dagster_postgres", reason="the [distributed] extra (dagster-postgres) is not installed")


@pytest.fixture
def deployment(pg_server, tmp_path, monkeypatch):
    """DAGSTER_HOME on PostgreSQL, PIXELTABLE_DB_URL on PostgreSQL, and `dagster-daemon run` (with its own
    empty PIXELTABLE_HOME) launching what is submitted."""
    dagster_db = pg_server.create_database("dagster").replace("+psycopg:", "+psycopg2:")
    rows_db = pg_server.create_database("rows")
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(
        f"storage:\n  postgres:\n    postgres_url: {dagster_db}\ntelemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    monkeypatch.setenv("PIXELTABLE_DB_URL", rows_db)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PXT_")}
    env["PIXELTABLE_HOME"] = str(tmp_path / "daemon_home")  # nothing of the notebook's home is shared
    log = tmp_path / "daemon.log"
    with log.open("w") as out:
        proc = subprocess.Popen([str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"], cwd=REPO, env=env,
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        yield dg.DagsterInstance.get(), log
    finally:
        stop(proc)


def test_batches_go_through_the_instance_and_its_daemon(deployment, tmp_path, pxt_home, http_server):
    instance, log = deployment
    assert launch.is_shared(instance)
    pxt.create_dir("shared")
    t = pxt.create_table("shared/photos", {"img": pxt.Image})
    t.add_computed_column(w=t.img.width)

    # a notebook insert: submitted, launched by the daemon, waited for
    # URLs: every machine of the deployment reads them (local files are refused, see below)
    result = t.insert([{"img": http_server.url(p.name)} for p in SAMPLES[:2]], instance=instance)
    run = instance.get_run_by_id(result.run_id)
    assert run.status == dg.DagsterRunStatus.SUCCESS and run.remote_job_origin is not None, log.read_text()[-3000:]
    assert run.tags["dagster/partition"] == result.batch
    assert t.count() == 2 and sorted(t.select(t.w).collect()["w"]) == sorted(
        PIL.Image.open(p).width for p in SAMPLES[:2])

    # a column added later: its backfill is a submitted run too
    runs_before = len(instance.get_run_records())
    t.add_computed_column(h=t.img.height)
    assert len(instance.get_run_records()) == runs_before + 1
    assert t.where(t.h == None).count() == 0  # noqa: E711

    # the insert job (`dagster job execute`): its op submits the batch's run; nothing is nested
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps({"ops": {"shared__photos__insert": {"config": {"files": [http_server.url(SAMPLES[2].name)]}}}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PXT_")}
    done = subprocess.run([str(BIN / "dagster"), "job", "execute", "-m", "pxt_assets.definitions", "-j",
                           "shared__photos_job", "-c", str(config)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert t.count() == 3
    batch_runs = [r for r in instance.get_run_records()
                  if r.dagster_run.job_name == "shared__photos__batch_job"]
    assert len(batch_runs) == 3 and all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in batch_runs)
    inserting = next(r.dagster_run for r in instance.get_run_records() if r.dagster_run.job_name == "shared__photos_job")
    child = next(r.dagster_run for r in batch_runs if r.dagster_run.tags.get("pxt/parent_run_id") == inserting.run_id)
    assert child.remote_job_origin is not None  # launched by the daemon, not executed inside the op


def test_in_a_shared_deployment_local_files_go_to_a_bucket_or_are_refused(s3_env, deployment, pxt_home, tmp_path,
                                                                         monkeypatch):
    instance, log = deployment
    pxt.create_dir("nodisk")
    t = pxt.create_table("nodisk/photos", {"img": pxt.Image})
    # no input_media_dest: a worker elsewhere could not read a local file
    with pytest.raises(pxt.SpecError, match=r"column 'img' gets the local file .*000000000036.jpg"):
        t.insert([{"img": str(SAMPLES[0])}], instance=instance)
    with pytest.raises(pxt.SpecError, match=r"Column 'small': in a shared deployment .* give a bucket destination"):
        t.add_computed_column(small=t.img.resize((8, 8)))
    assert "small" not in t.spec.columns

    bucket = "nodisk-" + os.urandom(4).hex()
    s3_env.client().create_bucket(Bucket=bucket)
    (pxt_home / "config.toml").write_text(f'[pixeltable]\ninput_media_dest = "s3://{bucket}/in/"\n'
                                          f'output_media_dest = "s3://{bucket}/out/"\n')
    u = pxt.create_table("nodisk/uploaded", {"img": pxt.Image})
    u.add_computed_column(small=u.img.resize((8, 8)))
    result = u.insert([{"img": str(SAMPLES[0])}], instance=instance)  # uploaded here, computed by the daemon's run
    assert result.num_errors == 0, log.read_text()[-3000:]
    (rec,) = [r for r in u.select(u.img.fileurl, u.small.fileurl).collect().to_pandas().itertuples(index=False)]
    assert rec[0].startswith(f"s3://{bucket}/in/") and rec[1].startswith(f"s3://{bucket}/out/")
    keys = sorted(o["Key"] for o in s3_env.client().list_objects_v2(Bucket=bucket)["Contents"])
    assert len(keys) == 2  # the upload is the row's file: not copied again by the insert step


def test_in_a_shared_deployment_gc_leaves_an_inserts_uploads_alone_before_its_batch_is_recorded(
        s3_env, deployment, pxt_home, tmp_path, monkeypatch):  # s3_env first: the daemon needs it too
    """In a shared deployment the inserting machine uploads its local files before it records the batch (the
    manifest names the uploads). Frozen between the two, gc with --min-age 0 takes none of them."""
    bucket = unique_bucket("shfaults")
    s3_env.client().create_bucket(Bucket=bucket)
    monkeypatch.setenv("PIXELTABLE_INPUT_MEDIA_DEST", f"s3://{bucket}/inputs/")
    pxt.create_dir("shfaults", if_exists="ignore")
    t = pxt.create_table("shfaults/media", {"img": pxt.Image, "label": pxt.String})
    t.add_computed_column(thumb=t.img.thumbnail((24, 24)), destination=f"s3://{bucket}/thumbs/")
    monkeypatch.delenv("PIXELTABLE_INPUT_MEDIA_DEST")
    src = tmp_path / "src"
    src.mkdir()
    rows = [{"img": str(make_image(src / f"{i}.jpg", size=(40 + i, 32))), "label": f"row{i}"} for i in range(3)]
    env = child_env(tmp_path / "notebook_home", pathlib.Path(os.environ["DAGSTER_HOME"]),
                    PXT_FAULT_POINT="after_upload:3:stop")
    child = subprocess.Popen([sys.executable, "-c", f"import pxt_assets as pxt; pxt.get_table('shfaults/media').insert({rows!r})"],
                             cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_stopped(child)
    s3 = s3_env.client()
    uploaded = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert len(uploaded) == 3 and t.batches() == []  # uploaded; the batch not recorded yet
    assert lifecycle.collect_garbage(f"s3://{bucket}/", delete=True, min_age=0) == []
    done = resume_stopped(child)
    assert done.returncode == 0, output_of(done)
    assert t.count() == 3
    frame = t.select(t.img.fileurl, t.thumb.fileurl).collect()
    recorded = {u for c in frame.columns for u in frame[c]}
    assert all(stores.store_for(u).exists(u) for u in recorded), "an uploaded file was deleted under the insert"
    listed = {f"s3://{bucket}/{o['Key']}" for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}
    assert listed == recorded


def test_abort_in_a_shared_deployment(deployment, pxt_home, http_server):
    """on_error='abort' (Pixeltable's default in a notebook): the batch's run is launched by the daemon, the abort
    decided in its step (the run's tag), the batch rolled back here."""
    instance, log = deployment
    pxt.create_dir("shab")
    t = pxt.create_table("shab/photos", {"img": pxt.Image})
    t.add_computed_column(w=t.img.width)
    with pytest.raises(pxt.Error, match=r"column '(img|w)' failed for row 1") as e:
        t.insert([{"img": http_server.url("000000000036.jpg")}, {"img": http_server.url("missing.jpg")}],
                 instance=instance, on_error="abort")
    assert "missing.jpg" in str(e.value), log.read_text()[-3000:]
    assert t.count() == 0 and t.batches() == []
    status = t.insert([{"img": http_server.url("000000000036.jpg")}, {"img": http_server.url("missing.jpg")}],
                      instance=instance, on_error="ignore")
    assert (status.num_rows, status.num_errors) == (2, 1) and t.count() == 2
