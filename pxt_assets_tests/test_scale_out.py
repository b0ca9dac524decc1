"""Scale-out on every CI run: `./dev scale-demo` at a small size. PostgreSQL (Dagster's storage and the rows),
Redis, moto, the Dagster daemon and two Celery workers, each with its own empty homes (no shared disk)."""

from __future__ import annotations

import shutil

import pytest

pytest.importorskip("dagster_celery", reason="the [distributed] extra (dagster-celery) is not installed")


def test_two_celery_workers_with_no_shared_disk_process_the_watched_bucket(tmp_path):
    from pxt_assets_tests import emulators, scale_demo

    if shutil.which("redis-server") is None or emulators.postgres_bin_dir() is None:
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
    assert result["shared_disk"] is False
