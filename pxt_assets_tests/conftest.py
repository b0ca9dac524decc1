"""Shared fixtures: an isolated PIXELTABLE_HOME, a real Dagster instance, a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import collections
import http.server
import os
import pathlib
import shutil
import sys
import threading

import dagster as dg
import PIL.Image
import pytest

SAMPLES = sorted((pathlib.Path(__file__).parent.parent / "pxt_assets" / "sample_data").glob("*.jpg"))


#: test files that run with Pixeltable's default on_error ('abort'), besides those under pixeltable/ (the
#: ported tests); the rest of the suite was written when insert always kept bad rows, and runs as a
#: deployment that keeps them ([pixeltable] on_error = "ignore", docs/settings.md)
PIXELTABLE_DEFAULTS = frozenset({"test_seeds.py", "test_pxt_api.py"})


@pytest.fixture(autouse=True)
def _on_error_default(request, monkeypatch) -> None:
    path = pathlib.Path(str(request.node.path))
    if path.parent.name == "pixeltable" or path.name in PIXELTABLE_DEFAULTS:
        monkeypatch.delenv("PIXELTABLE_ON_ERROR", raising=False)
    else:
        monkeypatch.setenv("PIXELTABLE_ON_ERROR", "ignore")


@pytest.fixture
def pxt_home(tmp_path, monkeypatch) -> pathlib.Path:
    """A fresh $PIXELTABLE_HOME with no config file, and no destination settings from the environment."""
    home = tmp_path / "pxt_home"
    home.mkdir()
    monkeypatch.setenv("PIXELTABLE_HOME", str(home))
    for var in ("PIXELTABLE_CONFIG", "PIXELTABLE_INPUT_MEDIA_DEST", "PIXELTABLE_OUTPUT_MEDIA_DEST",
                "PIXELTABLE_FILE_CACHE_SIZE_G"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def instance(tmp_path):
    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as inst:
        yield inst


@pytest.fixture
def images(tmp_path) -> list[pathlib.Path]:
    """Copies of the three sample photos in a folder of the test's own."""
    folder = tmp_path / "inputs"
    folder.mkdir()
    out = []
    for src in SAMPLES:
        dst = folder / src.name
        shutil.copyfile(src, dst)
        out.append(dst)
    return out


#: The package folder, and the first lines of a child process's script that imports pxt_assets modules
#: without running the package __init__, which imports Dagster (seconds per process, and nothing to do with
#: the cache or fsutil): the child gets PACKAGE_DIR as sys.argv[1], and an empty package module stands in.
PACKAGE_DIR = pathlib.Path(__file__).resolve().parent.parent / "pxt_assets"
BARE_PACKAGE = r"""
import sys, types
package = types.ModuleType("pxt_assets")
package.__path__ = [sys.argv[1]]
sys.modules["pxt_assets"] = package
"""


def write_module(tmp_path: pathlib.Path, monkeypatch, name: str, source: str) -> pathlib.Path:
    """A user's module `name` (`source`) in tmp_path/user_code, importable (on sys.path), not imported yet."""
    folder = tmp_path / "user_code"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(folder))
    sys.modules.pop(name, None)
    return folder


def files_under(folder: pathlib.Path) -> list[pathlib.Path]:
    """Every file below `folder` (none if it does not exist), sorted."""
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def random_file(folder: pathlib.Path, name: str, size: int) -> pathlib.Path:
    path = folder / name
    path.write_bytes(os.urandom(size))
    return path


def query_params(url: str) -> dict[str, str]:
    import urllib.parse

    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


def make_image(path: pathlib.Path, size=(64, 48), color=(200, 30, 30)) -> pathlib.Path:
    PIL.Image.new("RGB", size, color).save(path, format="JPEG")
    return path


class CountingHTTPServer:
    """Serves a folder on 127.0.0.1 and counts GET requests per path (query strings recorded too)."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self.requests: collections.Counter[str] = collections.Counter()
        self.full_requests: list[str] = []
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self):  # noqa: N802
                outer.full_requests.append(self.path)
                outer.requests[self.path.split("?")[0]] += 1
                super().do_GET()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def http_server(tmp_path, images):
    root = tmp_path / "served"
    root.mkdir()
    for img in images:
        shutil.copyfile(img, root / img.name)
    (root / "corrupt.jpg").write_bytes(b"this is not a jpeg")
    server = CountingHTTPServer(root)
    yield server
    server.close()


# -- storage emulators (real servers on 127.0.0.1, one per test session) ---------------------------------

from pxt_assets_tests import emulators  # noqa: E402


@pytest.fixture(scope="session")
def s3_server():
    server = emulators.MotoS3()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gcs_server():
    server = emulators.GcsEmulator()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def azurite_server(tmp_path_factory):
    if emulators.azurite_binary() is None:
        pytest.skip("Azurite (npm) is not installed: the Azure provider is not available here")
    server = emulators.Azurite(tmp_path_factory.mktemp("azurite"))
    yield server
    server.stop()


@pytest.fixture
def s3_env(monkeypatch, s3_server):
    """Point every S3 client at moto (AWS_ENDPOINT_URL) with dummy credentials."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws_config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws_credentials")
    return s3_server


@pytest.fixture
def gcs_env(monkeypatch, gcs_server):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server.endpoint)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "test")
    return gcs_server


@pytest.fixture
def azure_env(monkeypatch, azurite_server):
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", emulators.AZURITE_ACCOUNT)
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", emulators.AZURITE_KEY)
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_URL", azurite_server.account_url)
    return azurite_server


@pytest.fixture
def home_cloud(s3_env, monkeypatch):
    """A stand-in Pixeltable Cloud control plane over moto, with PIXELTABLE_API_KEY / _URL pointing at it."""
    from pxt_assets_tests.controlplane import ControlPlane

    plane = ControlPlane(s3_env)
    monkeypatch.setenv("PIXELTABLE_API_KEY", plane.api_key)
    monkeypatch.setenv("PIXELTABLE_API_URL", plane.url)
    yield plane
    plane.close()


def artifacts_dir() -> pathlib.Path:
    """Where tests leave what a person may want to look at (UI screenshots, executed notebooks):
    `$PXT_TEST_ARTIFACTS`, default test-artifacts/ui/ at the repository root."""
    folder = pathlib.Path(os.environ.get("PXT_TEST_ARTIFACTS")
                          or pathlib.Path(__file__).resolve().parent.parent / "test-artifacts" / "ui")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def unique_bucket(prefix: str = "bkt") -> str:
    """A fresh, valid bucket/container name (3-63 lowercase letters, digits, dashes)."""
    import uuid

    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def gcs_signing_key(tmp_path, monkeypatch):
    """A service-account key made here (an RSA key of our own), as GOOGLE_APPLICATION_CREDENTIALS."""
    import json

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path = tmp_path / "service_account.json"
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "test", "private_key_id": "k1", "private_key": pem,
        "client_email": "signer@test.iam.gserviceaccount.com", "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    return key


# -- reading what the row store holds (tests look behind the API; the product goes through rowstore) -----


def stored_records(table, column: str, batch: str | None = None) -> list[dict]:
    """A column's stored records (row_id, value, error, errortype, version, destination, owned), of one batch
    or of every batch, in row order."""
    from pxt_assets import rowstore

    store = rowstore.for_settings(table.settings)
    rt = store.for_spec(table.spec)
    out = []
    for b in [batch] if batch else store.batches(table.spec.slug):
        out.extend(store.read_columns(rt, b, [column]).get(column, {}).values())
    return out


def record_intent(uri: str, destination: str) -> None:
    """Record `uri` in this database's write-intent journal, as a writer does before writing it: a file then
    planted there is one this database wrote (a killed run's leftover, named by no row), which gc collects."""
    from pxt_assets import lifecycle, rowstore, stores
    from pxt_assets.config import current_settings

    batch = lifecycle._batch_of(uri) or "planted"
    rowstore.for_settings(current_settings()).record_writes(
        [(uri, "planted", batch, "planted", stores.normalize_uri(destination))])


def forget_value(table, column: str, row_id: str) -> None:
    """Null a stored value behind the table's back (as a lost row would leave its file unreferenced)."""

    from pxt_assets import rowstore
    from pxt_assets.rowstore import schema

    store = rowstore.for_settings(table.settings)
    rt = store.for_spec(table.spec)
    t = rt.table()
    with store.engine.begin() as conn:
        conn.execute(t.update().where(t.c._row_id == row_id).values(
            {rt.field(column, schema.VALUE): None, rt.field(column, schema.OWNED): False}))


def stored_events(dagster_home: pathlib.Path) -> str:
    """Every event a Dagster instance stored under `dagster_home` (its SQLite event log storage, read directly,
    one JSON document a line): what the UI shows and what stays on disk."""
    import sqlite3

    out = []
    for path in sorted(pathlib.Path(dagster_home).rglob("*.db")):
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'event_logs'").fetchone():
                out += [r[0] for r in conn.execute("SELECT event FROM event_logs")]
        finally:
            conn.close()
    return "\n".join(out)


# -- PostgreSQL: one throwaway cluster per test run, a fresh database per test module ---------------------


@pytest.fixture(scope="session")
def pg_server():
    server = emulators.Postgres()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pg_database(pg_server) -> str:
    """The URL of a database of this test module's own."""
    return pg_server.create_database()


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, pxt_home, monkeypatch) -> str:
    """The row store's database: the embedded SQLite file, or this module's PostgreSQL database."""
    if request.param == "postgres":
        url = request.getfixturevalue("pg_database")
        monkeypatch.setenv("PIXELTABLE_DB_URL", url)
        return url
    monkeypatch.delenv("PIXELTABLE_DB_URL", raising=False)
    from pxt_assets import rowstore

    return rowstore.default_url(pxt_home)
