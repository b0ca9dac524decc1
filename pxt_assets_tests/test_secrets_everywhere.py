"""No secret is ever printed or stored (issue #16, item 3), checked the way a leak would be found: distinctive
secret values everywhere a credential can be (the AWS secret key, the Azure account key, the OpenAI key, a GCS
service-account key, a database password, and signed source URLs carrying X-Amz-Signature, X-Amz-Credential,
X-Amz-Security-Token, X-Goog-Signature, X-Goog-Credential, Azure sig and token parameters), sources that fail
(404 and decode errors from a local HTTP server, a 403 that quotes the signed URL back, a missing S3 object on
moto, Azure and GCS emulators when installed, an OpenAI-compatible server that refuses the key and quotes it),
inserts in process and with `dagster job execute`, computed columns, a failing Dagster job; then every output,
every log record, every Dagster event and every file the runs wrote under PIXELTABLE_HOME and DAGSTER_HOME is
searched for the secrets. The only place a secret may be is a value the user inserted, stored as given: in the
row store (the row's value and its batch's manifest) and in the run config Dagster keeps for the insert job.
"""

from __future__ import annotations

import base64
import http.server
import json
import logging
import os
import pathlib
import sqlite3
import subprocess
import sys
import threading
import traceback
from typing import Any

import dagster as dg
import pytest
import yaml

import pxt_assets as pxt
from pxt_assets import stores
from pxt_assets.instance import write_config
from pxt_assets_tests import emulators
from pxt_assets_tests.conftest import SAMPLES, stored_events, unique_bucket
from pxt_assets_tests.openai_stub import OpenAIStub

REPO = pathlib.Path(__file__).resolve().parents[1]
DAGSTER = pathlib.Path(sys.executable).parent / "dagster"

# Each secret is distinctive (nothing else in a run contains it); those that go in URLs are made of characters
# that need no escaping, so they read the same in a URL, in JSON and in a log line.
SECRETS = {
    "aws_secret": "AWSsecretKEYq8Zk3xW7vB2nM5pL0rT9yU4iO6aS1dF",
    "azure_key": base64.b64encode(b"AZUREaccountKEY" + bytes(range(49))).decode(),
    "openai_key": "sk-OPENAIsecretKEY0123456789abcdefghijKLMN",
    "amz_signature": "AMZSIGsecret5f1e2d3c4b5a69788796a5b4c3d2e1f0",
    "amz_credential": "AMZCREDsecretAKIAIOSFODNN7EXAMPLE",
    "amz_token": "AMZTOKENsecretFQoGZXIvYXdzEJr1K2L3M4N5O6P7",
    "goog_signature": "GOOGSIGsecret0a1b2c3d4e5f60718293a4b5c6d7e8f9",
    "goog_credential": "GOOGCREDsecretsigner",
    "azure_sig": "AZSIGsecretAbCdEfGhIjKlMnOpQrStUvWxYz0123",
    "token": "TOKENsecret9z8y7x6w5v4u3t2s1r",
    "db_password": "PGPASSsecret4242xyz",
}
ACCEPTED_OPENAI_KEY = "sk-the-one-key-the-server-accepts-0000"
TABLE = "sec/photos"
INSERT_JOB = "sec__photos_job"
INSERT_OP = "sec__photos__insert"


class ForbiddingServer:
    """Answers every GET with 403 and an S3/GCS-style XML error that quotes the request back, query string
    included (as a signature mismatch's StringToSign and CanonicalRequest do)."""

    def __init__(self) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                body = (f"<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated "
                        f"does not match</Message><CanonicalRequest>GET\n{self.path}</CanonicalRequest></Error>")
                data = body.encode()
                self.send_response(403)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{name}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def forbidding_server():
    server = ForbiddingServer()
    yield server
    server.close()


class RecordEverything(logging.Handler):
    """Every log record of the process, formatted with its exception and stack, as a console would print it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        self.lines.append(self.format(record))


@pytest.fixture
def all_logs():
    handler = RecordEverything()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)  # debug lines name URLs too (cache misses, downloads, botocore's requests)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


# -----------------------------------------------------------------------------------------------------------
# searching


def hits(text: str) -> list[str]:
    """The names of the secrets `text` holds."""
    return [name for name, value in SECRETS.items() if value in text]


def is_sqlite(path: pathlib.Path) -> bool:
    with open(path, "rb") as f:
        return f.read(16) == b"SQLite format 3\x00"


def strings_in(value: Any) -> list[str]:
    """Every string inside a JSON document (keys and values)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in strings_in(k) + strings_in(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings_in(v)]
    return []


def cell_leaks(cell: str, inserted: set[str]) -> list[str]:
    """Why a database cell that holds a secret is a leak: empty when each secret in it is an inserted value
    stored whole (the cell is that value, or a JSON document where it is one whole string)."""
    if not hits(cell) or cell in inserted:
        return []
    try:
        doc = json.loads(cell)
    except ValueError:
        return [cell]
    return [s for s in strings_in(doc) if hits(s) and s not in inserted]


#: the only files where a value the user inserted may be stored (as given): the row store, and Dagster's run
#: storage (an insert job's run config)
DATA_FILES = ("pxt.db", "runs.db")


def leaks_in_files(roots: list[pathlib.Path], inserted: set[str]) -> tuple[list[str], dict[str, int], int]:
    """Every secret stored under `roots`: (leaks, how many times an inserted value holding a secret is stored
    in each of DATA_FILES, files searched). SQLite databases are read cell by cell (their -wal and -shm files
    are part of them); other files byte by byte."""
    leaks: list[str] = []
    allowed: dict[str, int] = {}
    searched = 0
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            searched += 1
            if path.name.endswith(("-wal", "-shm", "-journal")):
                continue
            if is_sqlite(path):
                conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
                try:
                    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
                    for table in tables:
                        for row in conn.execute(f'SELECT * FROM "{table}"'):
                            for cell in row:
                                text = cell.decode("utf-8", "replace") if isinstance(cell, bytes) else cell
                                if not isinstance(text, str) or not hits(text):
                                    continue
                                bad = cell_leaks(text, inserted) if path.name in DATA_FILES else [text]
                                leaks.extend(f"{path} table {table}: {b[:300]!r}" for b in bad)
                                if not bad:
                                    allowed[path.name] = allowed.get(path.name, 0) + sum(
                                        text.count(v) for v in inserted if hits(v))
                finally:
                    conn.close()
            else:
                data = path.read_bytes().decode("utf-8", "replace")
                if hits(data):
                    leaks.append(f"{path}: {hits(data)}")
    return leaks, allowed, searched


# -----------------------------------------------------------------------------------------------------------
# the run


def test_no_secret_in_any_output_log_event_or_file(pxt_home, tmp_path, monkeypatch, request, http_server,
                                                  forbidding_server, s3_env, gcs_signing_key, all_logs, capfd):
    # -- the credentials ------------------------------------------------------------------------------------
    azurite = request.getfixturevalue("azurite_server") if emulators.azurite_binary() is not None else None
    gcs = request.getfixturevalue("gcs_server")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRETS["aws_secret"])  # moto takes any key
    stub = OpenAIStub(accepted_key=ACCEPTED_OPENAI_KEY)
    request.addfinalizer(stub.close)
    monkeypatch.setenv("OPENAI_BASE_URL", stub.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", SECRETS["openai_key"])
    monkeypatch.setenv("PXT_OPENAI_MAX_RETRIES", "0")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs.endpoint)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "test")
    key_file = pathlib.Path(os.environ["GOOGLE_APPLICATION_CREDENTIALS"])
    pem_lines = [ln for ln in json.loads(key_file.read_text())["private_key"].splitlines() if "-----" not in ln]
    SECRETS["gcs_private_key"] = pem_lines[3]  # a line from the middle of the key
    request.addfinalizer(lambda: SECRETS.pop("gcs_private_key", None))
    if azurite is not None:
        monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", emulators.AZURITE_ACCOUNT)
        monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", SECRETS["azure_key"])  # not Azurite's: refused
        monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_URL", azurite.account_url)
    bucket = unique_bucket("sec")
    s3_env.client().create_bucket(Bucket=bucket)
    gcs_bucket = unique_bucket("sec")
    gcs.client().create_bucket(gcs_bucket)
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()

    # -- signed sources that fail ------------------------------------------------------------------------
    amz = (f"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={SECRETS['amz_credential']}&X-Amz-Date=20260101T000000Z"
           f"&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Security-Token={SECRETS['amz_token']}"
           f"&X-Amz-Signature={SECRETS['amz_signature']}")
    goog = (f"X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential={SECRETS['goog_credential']}"
            f"&X-Goog-Date=20260101T000000Z&X-Goog-Expires=600&X-Goog-SignedHeaders=host"
            f"&X-Goog-Signature={SECRETS['goog_signature']}")
    sas = f"sv=2024-08-04&se=2030-01-01T00%3A00%3A00Z&sr=b&sp=r&sig={SECRETS['azure_sig']}"
    sources = {
        "good": http_server.url(SAMPLES[0].name) + f"?token={SECRETS['token']}",
        "missing": http_server.url("missing.jpg") + "?" + amz,
        "corrupt": http_server.url("corrupt.jpg") + "?" + goog,
        "forbidden": forbidding_server.url("photo.jpg") + "?" + sas + f"&access_token={SECRETS['token']}",
        "s3_missing": f"s3://{bucket}/missing.jpg",
        "gcs_missing": f"gs://{gcs_bucket}/missing.jpg",
    }
    if azurite is not None:
        sources["azure_sas"] = (f"https://{emulators.AZURITE_ACCOUNT}.blob.core.windows.net/photos/missing.jpg?"
                                + sas)
        sources["azure_key"] = f"wasbs://photos@{emulators.AZURITE_ACCOUNT}.blob.core.windows.net/missing.jpg"
    inserted = set(sources.values())

    # -- in process: a table, computed columns, an insert with failing rows, queries -------------------------
    with dg.instance_for_test(temp_dir=str(dagster_home)) as instance:
        from pxt_assets.functions import net, openai

        pxt.create_dir("sec")
        t = pxt.create_table(TABLE, {"img": pxt.Image, "prompt": pxt.String})
        t.add_computed_column(w=t.img.width)
        t.add_computed_column(thumb=t.img.thumbnail((16, 16)), destination=f"s3://{bucket}/thumbs/")
        t.add_computed_column(answer=openai.chat_completions([{"role": "user", "content": t.prompt}], model="m"))
        t.add_computed_column(served=net.presigned_url(t.thumb.fileurl, 600))
        result = t.insert([{"img": url, "prompt": f"describe {name}"} for name, url in sources.items()],
                          instance=instance)
        assert result.num_rows == len(sources)
        assert result.num_errors == len(sources)  # every row: at least its answer (the key is refused)
        if azurite is not None:  # a destination the refused key cannot reach: the error names it, not the key
            with pytest.raises(pxt.DestinationError) as refused:
                t.add_computed_column(az=t.img.rotate(90), destination=f"wasbs://out@{emulators.AZURITE_ACCOUNT}"
                                                                        ".blob.core.windows.net/rotated/")
            assert "AZURE_STORAGE_ACCOUNT_NAME/KEY" in str(refused.value) or "denied" in str(refused.value)
        signed_gcs = stores.store_for(f"gs://{gcs_bucket}/x.jpg").presign(f"gs://{gcs_bucket}/x.jpg", 600)
        assert "X-Goog-Signature=" in signed_gcs  # signed with the service-account key (which never appears)

        # the user's data is stored as given ...
        stored = t.select(t.img.fileurl).collect().to_pandas().iloc[:, 0]
        assert sorted(stored) == sorted(inserted)
        # ... and never echoed: errors, reprs, query results of errors
        errors = t.select(t.img.errormsg, t.w.errormsg, t.thumb.errormsg, t.answer.errormsg,
                          t.served.errormsg).collect().to_pandas()
        messages = [m for m in errors.to_numpy().ravel() if isinstance(m, str)]
        shown = {
            "errors": json.dumps(errors.to_dict("records")),
            "errors repr": repr(errors) + errors._repr_html_(),
            "table repr": repr(t) + t._repr_html_(),
            "query repr": repr(t.where(t.img.errortype != None).select(t.img.errormsg)),  # noqa: E711
            "settings repr": repr(pxt.load_settings()),
            "stores": " ".join(repr(stores.store_for(u)) for u in sources.values()),
        }
        texts_by_name = {"missing": "missing.jpg", "corrupt": "corrupt.jpg", "forbidden": "photo.jpg"}
        for name, needle in texts_by_name.items():  # each error names its input (without the credentials)
            assert any(needle in m for m in messages), (name, messages)
        assert any("REDACTED" in m for m in messages)
        assert any("401" in m or "AuthenticationError" in m for m in messages), messages

    # -- `dagster job execute`: an insert whose rows fail, printed and stored by the CLI and its runs --------
    cli_home = tmp_path / "dagster_cli"
    write_config(cli_home)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_",))}
    env.update(DAGSTER_HOME=str(cli_home), PYTHONUNBUFFERED="1", PIXELTABLE_HOME=str(pxt_home))
    config = tmp_path / "batch.yaml"
    cli_rows = [{"img": sources["missing"], "prompt": "a"}, {"img": sources["forbidden"], "prompt": "b"}]
    config.write_text(yaml.safe_dump({"ops": {INSERT_OP: {"config": {"rows": cli_rows}}}}))
    outputs: dict[str, str] = {}

    def run(name: str, *args: Any, **extra_env: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(a) for a in args], cwd=REPO, env={**env, **extra_env}, capture_output=True,
                              text=True, timeout=600, stdin=subprocess.DEVNULL)
        outputs[name] = f"--- {name}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc

    ok = run("insert job", DAGSTER, "job", "execute", "-m", "pxt_assets.definitions", "-j", INSERT_JOB, "-c", config)
    assert ok.returncode == 0, outputs["insert job"]
    assert "2 rows inserted with 2 errors" in outputs["insert job"], outputs["insert job"]

    # -- a failing job: the thumbnails' bucket is gone, so the batch's computed step fails ----------------------
    s3 = s3_env.client()
    for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        s3.delete_object(Bucket=bucket, Key=obj["Key"])
    s3.delete_bucket(Bucket=bucket)
    with dg.instance_for_test(temp_dir=str(dagster_home)) as instance:
        with pytest.raises(RuntimeError) as failed:
            t.insert(cli_rows, instance=instance)
    assert f"Bucket '{bucket}' not found" in str(failed.value)
    outputs["failing job's exception"] = "".join(traceback.format_exception(failed.value))

    # -- a database that refuses the connection: its URL's password is never shown ---------------------------
    port = emulators.free_port()
    bad_db = run("unreachable database", sys.executable, "-m", "pxt_assets", "insert", TABLE, sources["missing"],
                 PIXELTABLE_DB_URL=f"postgresql://pxt:{SECRETS['db_password']}@127.0.0.1:{port}/pxt")
    assert bad_db.returncode != 0 and "Connection refused" in bad_db.stderr, outputs["unreachable database"]

    # -- search everything ---------------------------------------------------------------------------------
    captured = capfd.readouterr()
    outputs["this process's stdout and stderr"] = captured.out + captured.err
    outputs["log records"] = "\n".join(all_logs.lines)
    outputs.update(shown)
    assert all_logs.count > 100  # debug records of our code, Dagster and the SDKs were made and read
    events = stored_events(dagster_home) + stored_events(cli_home)
    assert '"STEP_FAILURE"' in events and "REDACTED" in events  # the failing run's error, and row warnings
    outputs["Dagster events"] = events
    leaks = [f"{name}: {line[:400]}" for name, text in outputs.items() for line in text.splitlines() if hits(line)]
    stored_leaks, allowed, searched = leaks_in_files([pxt_home, dagster_home, cli_home], inserted)
    assert searched > 20
    assert not leaks + stored_leaks, "\n".join(leaks[:50] + stored_leaks[:50])
    # The inserted values that hold a secret are stored as given, and only where they are the user's data:
    # in the row store, each committed row's value and fileurl and its batch's manifest (the first batch and
    # the CLI's), the failed batch's manifest and the source values its run staged; in Dagster's run storage,
    # the CLI run's config.
    signed, n = sum(1 for v in sources.values() if hits(v)), len(cli_rows)
    assert allowed == {"pxt.db": 2 * (signed + n) + (signed + n) + n + 2 * n, "runs.db": n}, allowed
