"""No credential is ever printed: signed URLs' signatures and tokens are redacted in row errors, logs,
Dagster events and metadata, and in exception messages; the value a user inserted is kept as given."""

from __future__ import annotations

import json

import dagster as dg

import pxt_assets as pxt
from pxt_assets.redaction import redact
from pxt_assets_tests.conftest import SAMPLES

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
    assert sorted(t.select(t.img.fileurl).collect().iloc[:, 0]) == sorted([good, missing])  # URLs are read lazily
    texts = [json.dumps(t.select(t.img.errormsg, t.w.errormsg).collect().to_dict("records"))]
    texts.append(capsys.readouterr().out + capsys.readouterr().err + caplog.text)
    for record in instance.all_logs(result.run_id):
        texts.append(record.user_message or "")
        event = record.dagster_event
        if event is not None and event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            texts.append(json.dumps({k: str(v) for k, v in event.event_specific_data.materialization.metadata.items()}))
    joined = "\n".join(texts)
    assert "missing.jpg" in joined and "REDACTED" in joined  # the error names the input, without its secrets
    assert SECRET not in joined and TOKEN not in joined
