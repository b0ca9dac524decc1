"""Scale-out on every CI run: `./dev scale-demo` (pxt_assets/scale_demo.py) at a small size. PostgreSQL (Dagster's storage and the rows),
Redis, moto, the Dagster daemon and two Celery workers, each with its own empty homes (no shared disk)."""

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
    assert result["shared_disk"] is False


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
