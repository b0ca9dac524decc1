"""No credential is ever printed: signed URLs' signatures and tokens are redacted in row errors, logs,
Dagster events and metadata, and in exception messages; the value a user inserted is kept as given."""

from __future__ import annotations

import json
import logging
import traceback
import urllib.error

import dagster as dg
import pytest

import pxt_assets as pxt
from pxt_assets.redaction import redact
from pxt_assets_tests.conftest import SAMPLES, stored_events

SECRET, TOKEN = "SIGsecret123abc", "TOKsecret456def"


def test_redact_covers_the_query_string_credentials_of_every_provider():
    cases = {
        f"https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIA%2Fx&X-Amz-Signature={SECRET}&X-Amz-Security-Token={TOKEN}": 3,
        f"https://storage.googleapis.com/b/o?X-Goog-Credential=sa%40p&X-Goog-Signature={SECRET}": 2,
        f"https://a.blob.core.windows.net/c/b?sv=2024-01-01&se=2026&sp=r&sig={SECRET}": 1,
        f"http://cdn/x.jpg?access_token={TOKEN}&page=2&api_key={SECRET}": 2,
        f"postgresql://user:{SECRET}@db:5432/pxt": 1,
    }
    for text, n in cases.items():
        out = redact(f"cannot read {text}: 403")
        assert SECRET not in out and TOKEN not in out and out.count("REDACTED") == n, out
    assert redact("file not found: /tmp/a.jpg?page=2") == "file not found: /tmp/a.jpg?page=2"


def test_signed_urls_never_appear_in_errors_logs_or_metadata(pxt_home, instance, http_server, capsys, caplog):
    pxt.create_dir("sec")
    t = pxt.create_table("sec/photos", {"img": pxt.Image})
    t.add_computed_column(w=t.img.width)
    query = f"?X-Amz-Signature={SECRET}&X-Amz-Security-Token={TOKEN}"
    good = http_server.url(SAMPLES[0].name) + query
    missing = http_server.url("missing.jpg") + query
    result = t.insert([{"img": good}, {"img": missing}], instance=instance)
    assert result.num_errors == 1

    # the inserted value is the user's data, stored as given
    assert sorted(t.select(t.img.fileurl).collect().to_pandas().iloc[:, 0]) == sorted([good, missing])  # URLs are read lazily
    texts = [json.dumps(t.select(t.img.errormsg, t.w.errormsg).collect().to_pandas().to_dict("records"))]
    texts.append(capsys.readouterr().out + capsys.readouterr().err + caplog.text)
    for record in instance.all_logs(result.run_id):
        texts.append(record.user_message or "")
        event = record.dagster_event
        if event is not None and event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            texts.append(json.dumps({k: str(v) for k, v in event.event_specific_data.materialization.metadata.items()}))
    joined = "\n".join(texts)
    assert "missing.jpg" in joined and "REDACTED" in joined  # the error names the input, without its secrets
    assert SECRET not in joined and TOKEN not in joined


# -- logs, exceptions and Dagster's event log ------------------------------------------------------------

SIGNED = f"https://b.s3.amazonaws.com/k.jpg?X-Amz-Signature={SECRET}&X-Amz-Security-Token={TOKEN}"


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(logging.Formatter("%(name)s %(message)s").format(record))


def test_every_log_record_is_redacted_whatever_logger_makes_it(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-" + SECRET + "-0123456789")
    handler = _Lines()
    other = logging.getLogger("some.sdk.connectionpool")  # not ours: redacted all the same
    other.addHandler(handler)
    other.setLevel(logging.DEBUG)
    try:
        other.debug('"GET %s HTTP/1.1" 403', SIGNED)
        other.info("key %s rejected", "sk-" + SECRET + "-0123456789")
        try:
            try:
                raise OSError(2, "No such file or directory", SIGNED)
            except OSError as e:
                raise RuntimeError(f"cannot read {SIGNED}") from e
        except RuntimeError:
            other.exception("download failed")
    finally:
        other.removeHandler(handler)
    text = "\n".join(handler.lines)
    assert "GET https://b.s3.amazonaws.com/k.jpg?X-Amz-Signature=REDACTED" in text
    assert "download failed" in text and "Traceback" in text and "OSError" in text
    assert SECRET not in text and TOKEN not in text


def test_redacting_filter_for_a_handler_of_ones_own():
    from pxt_assets.redaction import RedactingFilter

    record = logging.LogRecord("x", logging.INFO, __file__, 1, "fetch %s", (SIGNED,), None)  # no factory
    assert RedactingFilter().filter(record)
    assert SECRET not in record.getMessage() and "X-Amz-Signature=REDACTED" in record.getMessage()


def _chain(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


def test_scrub_redacts_sdk_exceptions_and_their_chains():
    import requests
    import sqlalchemy as sa
    from azure.core.exceptions import HttpResponseError

    from pxt_assets.redaction import RedactedError, scrub

    class Computed(Exception):  # a message made from attributes at print time, as SQLAlchemy's are
        def __init__(self, url: str) -> None:
            super().__init__()
            self.parts = [url]

        def __str__(self) -> str:
            return f"failed on {self.parts[0]}"

    errors = [
        requests.HTTPError(f"404 Client Error: Not Found for url: {SIGNED}"),
        urllib.error.HTTPError(SIGNED, 403, "Forbidden", {}, None),
        OSError(2, "No such file or directory", SIGNED),
        HttpResponseError(message=f"Server failed to authenticate the request {SIGNED}"),
        sa.exc.StatementError("(sqlite3.IntegrityError) UNIQUE", "INSERT INTO t VALUES (?)", (SIGNED,), None),
        Computed(SIGNED),
    ]
    for inner in errors:
        try:
            try:
                raise inner
            except Exception as e:
                raise RuntimeError("the step failed") from e
        except RuntimeError as outer:
            top = scrub(outer)
        text = _chain(top)
        assert SECRET not in text and TOKEN not in text, text
        assert "the step failed" in text and type(inner).__name__ in text, text
    assert isinstance(scrub(Computed(SIGNED)), RedactedError)  # a message that cannot change is replaced
    assert SECRET not in scrub(urllib.error.HTTPError(SIGNED, 403, "Forbidden", {}, None)).filename


def _failing_asset(redacted: bool):
    import requests

    from pxt_assets.redaction import scrubbing

    def body():
        try:
            raise requests.HTTPError(f"403 Client Error: Forbidden for url: {SIGNED}")
        except requests.HTTPError as e:
            raise RuntimeError(f"cannot copy {SIGNED} to the destination") from e

    @dg.asset(name="fails_with_a_signed_url")
    def fails() -> None:
        (scrubbing(body) if redacted else body)()

    return fails


@pytest.mark.parametrize("redacted", [True, False])
def test_a_failed_step_stores_no_credential_in_the_event_log(tmp_path, redacted):
    """What Dagster stores for a failed step (its error and every exception it chains to) read from the
    instance's SQLite event log; without `scrubbing` the same step stores the signature (the check can fail)."""
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = dg.materialize([_failing_asset(redacted)], instance=instance, raise_on_error=False)
        assert not result.success
    events = stored_events(tmp_path)
    assert '"STEP_FAILURE"' in events and "cannot copy https://b.s3.amazonaws.com/k.jpg" in events
    assert "403 Client Error" in events  # the cause is kept
    if redacted:
        assert SECRET not in events and TOKEN not in events
        assert "X-Amz-Signature=REDACTED" in events
    else:
        assert SECRET in events


def test_metadata_values_are_redacted():
    from pxt_assets.redaction import redact_metadata

    meta = redact_metadata({
        "text": dg.MetadataValue.text(SIGNED), "url": dg.MetadataValue.url(SIGNED),
        "md": dg.MetadataValue.md(f"[photo]({SIGNED})"), "path": dg.MetadataValue.path(f"/x?token={TOKEN}"),
        "json": dg.MetadataValue.json({"urls": [SIGNED], "n": 3}), "plain": SIGNED, "list": [SIGNED], "rows": 3,
    })
    assert SECRET not in str(meta) and TOKEN not in str(meta)
    assert meta["rows"] == 3 and meta["json"].data["n"] == 3
    assert isinstance(meta["url"], dg.UrlMetadataValue) and isinstance(meta["md"], dg.MarkdownMetadataValue)


def test_known_credentials_are_redacted_wherever_they_appear(monkeypatch):
    from pxt_assets.redaction import register_secret

    account_key = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo" + SECRET
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/" + SECRET)
    register_secret(account_key)
    text = redact(f"signing with wJalrXUtnFEMI/K7MDENG/{SECRET} and {account_key}; short 'testing' stays")
    assert SECRET not in text and "short 'testing' stays" in text
    pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"
    assert "MIIEvQ" not in redact(json.dumps({"private_key": pem, "client_email": "a@b"}))
    assert "MIIEvQ" not in redact(pem[:40])  # cut short
    assert redact("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.x") == "Authorization: Bearer REDACTED"
