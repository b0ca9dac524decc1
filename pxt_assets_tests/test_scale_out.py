"""Scale-out on every CI run: `./dev scale-demo` (pxt_assets/scale_demo.py) at a small size. PostgreSQL (Dagster's storage and the rows),
Redis, moto, the Dagster daemon and two Celery workers, each with its own empty homes, each worker and the daemon in a
mount namespace of its own where the host allows (its /tmp and homes private, the checkout read-only); the demo then
scans both databases for local paths (no shared disk). The scan and the isolation are also tested on their own, and
shown able to fail."""

from __future__ import annotations

import shutil

import pytest

pytest.importorskip("dagster_celery", reason="the [distributed] extra (dagster-celery) is not installed")


def test_two_celery_workers_with_no_shared_disk_process_the_watched_bucket(tmp_path):
    from pxt_assets import localservers, scale_demo

    if shutil.which("redis-server") is None or localservers.postgres_bin_dir() is None:
        pytest.skip("redis-server or PostgreSQL is not installed (./dev test installs both from Debian)")
    root = tmp_path / "demo"
    root.mkdir()
    root.chmod(0o755)
    result = scale_demo.run(images=10, batch_rows=2, timeout_s=420, root=root)
    assert result["rows"] == 10 and result["errors"] == 0 and result["batches"] == 5
    assert set(result["steps_by_worker"]) == {"worker1", "worker2"}
    assert all(n > 0 for n in result["steps_by_worker"].values()), result  # both workers ran steps
    # a source and a computed step per batch; Dagster's automation may also run a batch's computed step again
    # (idempotent: its rows are skipped as unchanged), so at least that many
    assert sum(result["steps_by_worker"].values()) >= 10
    assert result["max_concurrent_batches"] >= 2, result  # batches overlapped
    # nothing local reached the databases: the scan found no path (it can: test_the_scan_finds_a_local_destination)
    assert result["shared_disk"] is False and result["local_paths"] == [], result
    # isolated where the host allows (root here, in CI): no process saw the driver's files or could write the checkout
    expected = "mount-namespace" if scale_demo.mount_namespace_prefix() else "none"
    assert result["isolation"] == expected
    if expected == "mount-namespace":
        clean = {"driver_files_seen": [], "read_only_writable": []}
        assert result["isolation_probe"] == {"worker1": clean, "worker2": clean, "daemon": clean}, result


def test_the_celery_executor_still_runs_each_step_as_a_task_of_its_own(tmp_path):
    """`--executor steps`: the daemon starts a process per run and the Celery executor sends each step to a worker
    (the demo's default runs each batch's run as one Celery task instead)."""
    from pxt_assets import localservers, scale_demo

    if shutil.which("redis-server") is None or localservers.postgres_bin_dir() is None:
        pytest.skip("redis-server or PostgreSQL is not installed (./dev test installs both from Debian)")
    root = tmp_path / "demo"
    root.mkdir()
    root.chmod(0o755)
    result = scale_demo.run(images=4, batch_rows=2, timeout_s=420, root=root, executor="steps")
    assert result["rows"] == 4 and result["errors"] == 0 and result["batches"] == 2
    assert sum(result["steps_by_worker"].values()) >= 4, result  # a source and a computed step per batch
    assert result["shared_disk"] is False, result


def test_the_package_never_imports_the_tests():
    """The scale demo and its servers are in the package: an installed pxt_assets has no pxt_assets_tests."""
    import ast
    import pathlib

    package = pathlib.Path(__file__).resolve().parents[1] / "pxt_assets"
    bad = []
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad += [f"{path.name} line {node.lineno}: {n}" for n in names if n.split(".")[0] == "pxt_assets_tests"]
    assert not bad, bad


# -- the scan for local paths ------------------------------------------------------------------------------


def test_what_the_scan_takes_for_a_local_path():
    from pxt_assets.scale_demo import local_path_pattern

    pattern = local_path_pattern(["/srv/demo-root", "/checkout/here"])
    local = ["/tmp/x/a.jpg", "file:///anywhere/a.jpg", "FILE:/x", "/home/u/media/", "/work/wt/a.png",
             "/var/lib/x", "/checkout/here/pxt_assets", "/checkout/here"]
    for text in local:
        for wrapped in (text, f'{{"value": "{text}"}}', f"could not read {text}: gone", f"path={text}"):
            assert pattern.search(wrapped), wrapped
    not_local = ["s3://b/tmp/x.jpg", "gs://b/home/x", "https://h.example/tmp/x", "http://127.0.0.1:9/var/x",
                 "generated/tmp/x", "~/tmp/x", "./work/x", "blob_storage_demo/media.rotated (pxt.Image)",
                 "*/6 * * * *", "data:image/png;base64,iVBORw0KGgo/tmp/AAA+/home/x", "the config file: missing",
                 "/checkout/herewith", "wasbs://c@acct.blob.core.windows.net/tmp/x", "pxt://org:db/buckets/home/x"]
    for text in not_local:
        assert not pattern.search(text), (text, pattern.search(text))


@pytest.fixture
def pg_db(pxt_home, monkeypatch, pg_server) -> str:
    """The row store on a fresh PostgreSQL database of this test's own (the scale-out database)."""
    url = pg_server.create_database()
    monkeypatch.setenv("PIXELTABLE_DB_URL", url)
    return url


def test_the_scan_finds_a_local_destination_in_the_rows_the_catalog_and_the_event_log(pg_db, tmp_path, instance,
                                                                                       images):
    import pxt_assets as pxt
    from pxt_assets import rowstore
    from pxt_assets.scale_demo import local_paths_in_database

    out = tmp_path / "local_out"
    out.mkdir()
    pxt.create_dir("scan", if_exists="ignore")
    t = pxt.create_table("scan/media", {"img": pxt.Image})
    t.add_computed_column(rotated=t.img.rotate(90), destination=str(out))
    t.insert(img=str(images[0]), instance=instance)
    store = rowstore.for_settings(t.settings)

    found = local_paths_in_database(store, instance)
    assert found, "a local destination was stored, the scan found nothing"
    naming_out = [f for f in found if str(out) in f]
    # the catalog document, the row table's value and destination fields, and Dagster's event log all name it
    assert any(f.startswith("pxt_tables scan/media doc: ") for f in naming_out), found
    assert any(f.startswith("pxt_t_scan__media ") and "_destination: " in f for f in naming_out), found
    assert any(f.startswith("pxt_t_scan__media ") and f.endswith(".jpg") for f in naming_out), found
    assert any(f.startswith("run ") and " event ASSET_MATERIALIZATION: " in f for f in naming_out), found
    # and the local source path the batch's manifest recorded (no input_media_dest: the path is stored)
    assert any(f.startswith("pxt_batches ") and str(images[0]) in f for f in found), found


def test_the_scan_finds_nothing_where_everything_is_in_a_bucket(pg_db, instance, images, s3_env):
    """The negative of the above on the same code path: a table whose every file is in a (moto) bucket."""
    import pxt_assets as pxt
    from pxt_assets import rowstore
    from pxt_assets.scale_demo import local_paths_in_database
    from pxt_assets_tests.conftest import unique_bucket

    bucket = unique_bucket("scan")
    s3 = s3_env.client()
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="in/a.jpg", Body=images[0].read_bytes(), ContentType="image/jpeg")
    pxt.create_dir("scan", if_exists="ignore")
    t = pxt.create_table("scan/cloud", {"img": pxt.Image})
    t.add_computed_column(rotated=t.img.rotate(90), destination=f"s3://{bucket}/out/")
    t.insert(img=f"s3://{bucket}/in/a.jpg", instance=instance)
    assert t.select(t.rotated.fileurl).collect().to_pandas().iloc[0]["rotated_fileurl"].startswith(f"s3://{bucket}/out/")
    assert local_paths_in_database(rowstore.for_settings(t.settings), instance) == []


# -- the isolation ------------------------------------------------------------------------------------------


def _isolated_probe(tmp_path, *, isolate: bool, options: list[str] | None = None) -> tuple[dict | None, str]:
    import os
    import shutil
    import subprocess

    from pxt_assets import scale_demo

    prefix = scale_demo.mount_namespace_prefix()
    if prefix is None:
        pytest.skip("no mount namespaces here (unshare needs root or CAP_SYS_ADMIN): the demo reports isolation none")
    if options is not None:
        prefix = [shutil.which("unshare"), *options]
        if subprocess.run([*prefix, "true"], capture_output=True).returncode != 0:
            pytest.skip(f"unshare {' '.join(options)} is not allowed here")
    root = tmp_path / "root"
    (root / "w" / "home").mkdir(parents=True)
    (root / "cfg.yaml").write_text("handed: over\n")
    (root / "other_process_file").write_text("not yours\n")
    marker = tmp_path / "driver.marker"
    marker.write_text("the driver's\n")
    checkout = scale_demo.PACKAGE_ROOT
    private = [tmp_path, root, root / "w" / "home"] if isolate else []
    args, env = scale_demo.isolated(
        prefix, ["sh", "-c", 'cat cfg.yaml; ls; pwd; echo "$PXT_ISOLATED_FILE_0"'], dict(os.environ), cwd=root,
        private=private, files={root / "cfg.yaml": "handed: over\n"} if isolate else {},
        read_only=[checkout] if isolate else [], driver_files=[marker, root / "other_process_file"])
    done = subprocess.run(args, env=env, cwd=root, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return scale_demo.probe_result(done.stdout), done.stdout


@pytest.mark.parametrize("options", [0, 1], ids=["as-root", "user-namespace"])
def test_an_isolated_process_sees_only_what_it_is_handed_and_cannot_write_the_checkout(tmp_path, options):
    from pxt_assets.scale_demo import NAMESPACE_OPTIONS

    probe, out = _isolated_probe(tmp_path, isolate=True, options=NAMESPACE_OPTIONS[options])
    assert probe == {"driver_files_seen": [], "read_only_writable": []}, out
    lines = out.splitlines()
    # the config it was handed, in a working folder that is the private one (no file of the driver's in it)
    assert "handed: over" in lines and "other_process_file" not in lines and str(tmp_path / "root") in lines
    assert lines[-1] == ""  # the handed-over file's variable is gone before the command starts
    assert (tmp_path / "driver.marker").exists()  # the driver's own files are untouched


def test_the_isolation_probe_can_fail(tmp_path):
    probe, out = _isolated_probe(tmp_path, isolate=False)
    assert probe is not None and len(probe["driver_files_seen"]) == 2, out


def test_without_unshare_the_demo_runs_unisolated(monkeypatch):
    from pxt_assets import scale_demo

    monkeypatch.setattr(scale_demo.shutil, "which", lambda name: None)
    assert scale_demo.mount_namespace_prefix() is None
