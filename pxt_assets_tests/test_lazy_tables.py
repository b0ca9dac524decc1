"""Tables declared in a module load lazily: `t = pxt.MediaTable(...)` and `t.add_computed_column(...,
destination=...)` made while Python imports a module record the destination, and `pxt.definitions(t,
resources=...)` checks it with those resources. The credentials reach the bucket only through an
`S3Resource`: no AWS_* variable, no ~/.aws, and a proxy in front of moto that refuses any request not signed
with the resource's key. A destination that cannot be used shows on the table's assets; the import goes on.
Tables of the catalog (pxt.create_table) still check their destinations at once, even in a module."""

from __future__ import annotations

import importlib
import os
import pathlib
import re
import subprocess
import sys
import textwrap
import urllib.parse
import uuid

import pytest
import yaml

import pxt_assets as pxt
from pxt_assets.api.jobs import META_LOAD_ERROR
from pxt_assets.instance import write_config
from pxt_assets.stores import resources as store_resources
from pxt_assets_tests.conftest import SAMPLES, unique_bucket
from pxt_assets_tests.faultproxy import FaultProxy

BIN = pathlib.Path(sys.executable).parent
KEY_ID, SECRET = "lazy-tables-key", "lazy-tables-secret"
_CREDENTIAL = re.compile(r"Credential=([^/,\s&]+)/")
_DENIED = b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"


@pytest.fixture(autouse=True)
def _forget_resources():
    yield
    store_resources.reset()


@pytest.fixture
def s3_proxy(s3_server):
    """moto behind a proxy that answers 403 to any request not signed with KEY_ID (moto accepts any key)."""
    proxy = FaultProxy("127.0.0.1", s3_server.port)

    def gate(method, path, headers):
        signed = _CREDENTIAL.search(headers.get("Authorization") or "") or _CREDENTIAL.search(urllib.parse.unquote(path))
        return None if signed is not None and signed.group(1) == KEY_ID else (403, _DENIED)

    proxy.gate = gate
    yield proxy
    proxy.close()


def _resource(endpoint: str) -> str:
    return (f"S3Resource(endpoint_url={endpoint!r}, aws_access_key_id={KEY_ID!r}, "
            f"aws_secret_access_key={SECRET!r}, region_name='us-east-1')")


def _write_modules(folder: pathlib.Path, name: str, table: str, destination: str, endpoint: str) -> None:
    """`<name>_tables` declares the table; `<name>_defs` builds its definitions with an S3Resource."""
    folder.mkdir(exist_ok=True)
    (folder / f"{name}_tables.py").write_text(textwrap.dedent(f"""
        import pxt_assets as pxt

        t = pxt.MediaTable({table!r}, {{"img": pxt.Image}})
        t.add_computed_column(rot=t.img.rotate(90), destination={destination!r})
        t.add_computed_column(w=t.img.width)
    """))
    (folder / f"{name}_defs.py").write_text(textwrap.dedent(f"""
        from dagster_aws.s3 import S3Resource

        import pxt_assets as pxt
        from {name}_tables import t

        defs = pxt.definitions(t, resources={{"s3": {_resource(endpoint)}}})
    """))


def _environment(root: pathlib.Path, modules: pathlib.Path) -> dict[str, str]:
    """This process's environment without any AWS_*, Pixeltable or Dagster variable, and a HOME with no
    ~/.aws: nothing but the module's S3Resource can reach the bucket."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "PIXELTABLE_", "PXT_", "DAGSTER_", "AZURE_", "GOOGLE_", "STORAGE_EMULATOR"))}
    home, dagster_home = root / "empty_home", root / "dagster_home"
    home.mkdir()
    write_config(dagster_home)  # as ./dev does: the batch's run is launched in its own process
    env.update(HOME=str(home), PIXELTABLE_HOME=str(root / "pixeltable"), DAGSTER_HOME=str(dagster_home),
               PYTHONPATH=str(modules), PYTHONUNBUFFERED="1")
    assert not any(k.startswith("AWS_") for k in env) and not (home / ".aws").exists()
    return env


def _run(args: list[str], env: dict[str, str], cwd: pathlib.Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL, check=False)
    assert proc.returncode == 0, f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    return proc


def test_dagster_job_execute_writes_to_the_bucket_with_only_an_s3_resource(tmp_path, s3_server, s3_proxy):
    bucket = unique_bucket("lazy")
    s3_server.client().create_bucket(Bucket=bucket)
    modules, name = tmp_path / "modules", f"lazy_{uuid.uuid4().hex[:8]}"
    _write_modules(modules, name, "lazy/media", f"s3://{bucket}/rot/", s3_proxy.endpoint)
    env = _environment(tmp_path, modules)
    # the insert job's op submits the batch's run through the instance, to the module `job execute` loaded

    # declaring the table touches no bucket: the import succeeds and makes no request at all
    _run([sys.executable, "-c", f"import {name}_tables as m; assert 'rot' in m.t.spec.columns"], env, modules)
    assert s3_proxy.forwarded == [] and s3_proxy.failed == []

    config = tmp_path / "insert.yaml"
    config.write_text(yaml.safe_dump({"ops": {"lazy__media__insert": {"config": {"files": [str(p) for p in SAMPLES]}}}}))
    proc = _run([BIN / "dagster", "job", "execute", "-m", f"{name}_defs", "-a", "defs", "-j", "lazy__media_job",
                 "-c", config], env, modules)
    assert f"{len(SAMPLES)} rows inserted with 0 errors" in proc.stdout + proc.stderr, proc.stdout + proc.stderr

    listed = s3_server.client().list_objects_v2(Bucket=bucket, Prefix="rot/").get("Contents", [])
    assert len(listed) == len(SAMPLES) and all(o["Key"].endswith(".jpg") for o in listed)
    # every request (the destination's check when the definitions were built, the uploads in the batch's
    # run) went through the resource's endpoint, signed with its key: the proxy refused none
    assert s3_proxy.failed == []
    assert sum(line.startswith("PUT ") for line in s3_proxy.forwarded) == len(SAMPLES)


def test_a_bad_destination_shows_on_the_tables_assets_instead_of_failing_the_import(pxt_home, tmp_path, s3_proxy,
                                                                                     monkeypatch, images):
    for var in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(var)
    missing = f"s3://{unique_bucket('lazy-missing')}/rot/"
    modules, name = tmp_path / "modules", f"lazy_{uuid.uuid4().hex[:8]}"
    _write_modules(modules, name, "lazy/bad", missing, s3_proxy.endpoint)
    monkeypatch.syspath_prepend(str(modules))
    try:
        defs = importlib.import_module(f"{name}_defs").defs  # does not raise
        t = sys.modules[f"{name}_tables"].t
    finally:
        for module in (f"{name}_defs", f"{name}_tables"):
            sys.modules.pop(module, None)

    specs = {tuple(s.key.path): s for s in defs.resolve_all_asset_specs()}
    assert set(specs) == {("lazy", "bad", c) for c in ("img", "rot", "w")}
    for spec in specs.values():
        error = spec.metadata[META_LOAD_ERROR]
        assert "'rot'" in error and missing in error and "not found" in error, error
        assert "cannot be loaded" in spec.description
    assert {j.name for j in defs.resolve_all_job_defs()} >= {"lazy__bad_job", "lazy__bad__batch_job"}
    assert s3_proxy.forwarded and s3_proxy.failed == []  # checked through the resource, with its key

    with pytest.raises(pxt.DestinationError) as e:  # an insert checks again, and says why
        t.insert(img=str(images[0]))
    assert "'rot'" in str(e.value) and missing in str(e.value)


def test_a_table_made_in_a_function_or_in_the_catalog_checks_its_destination_at_once(pxt_home, tmp_path,
                                                                                     monkeypatch):
    missing = tmp_path / "no" / "such" / "folder"
    t = pxt.MediaTable("lazy/now", {"img": pxt.Image})
    with pytest.raises(pxt.DestinationError):
        t.add_computed_column(rot=t.img.rotate(90), destination=str(missing))

    modules, name = tmp_path / "modules", f"lazy_{uuid.uuid4().hex[:8]}"
    modules.mkdir()
    (modules / f"{name}.py").write_text(textwrap.dedent(f"""
        import pxt_assets as pxt

        pxt.create_dir("lazy_catalog", if_exists="ignore")
        t = pxt.create_table("lazy_catalog/media", {{"img": pxt.Image}}, if_exists="replace")
        t.add_computed_column(rot=t.img.rotate(90), destination={str(missing)!r})
    """))
    monkeypatch.syspath_prepend(str(modules))
    try:
        with pytest.raises(pxt.DestinationError) as e:
            importlib.import_module(name)
    finally:
        sys.modules.pop(name, None)
    assert "'rot'" in str(e.value) and str(missing) in str(e.value)
