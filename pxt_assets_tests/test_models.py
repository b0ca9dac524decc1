"""Models in computed columns: seed 002's complete example (thumbnail + `openai.chat_completions`) against a
local OpenAI-compatible server, retries on 429 / 5xx, and an offline model (OpenCV's bundled Haar cascade)
on photos inserted from a bucket on moto."""

from __future__ import annotations

import base64
import io

import PIL.Image
import pytest

import pxt_assets as pxt
from pxt_assets_tests.conftest import SAMPLES, files_under, stored_records, unique_bucket
from pxt_assets_tests.openai_stub import OpenAIStub


@pytest.fixture
def openai_stub(monkeypatch):
    stub = OpenAIStub()
    monkeypatch.setenv("OPENAI_BASE_URL", stub.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key")
    yield stub
    stub.close()


def _data_url_image(url: str) -> PIL.Image.Image:
    head, _, payload = url.partition(",")
    assert head in ("data:image/jpeg;base64", "data:image/png;base64"), head
    return PIL.Image.open(io.BytesIO(base64.b64decode(payload)))


def test_seed_002_complete_example(pxt_home, http_server, s3_env, openai_stub, tmp_path, monkeypatch):
    bucket = unique_bucket("my-app-bucket")
    s3_env.client().create_bucket(Bucket=bucket)
    (pxt_home / "config.toml").write_text(
        f'[pixeltable]\ninput_media_dest = "s3://{bucket}/uploads/"\noutput_media_dest = "s3://{bucket}/generated/"\n')
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    local_photo = tmp_path / "image2.png"
    PIL.Image.open(SAMPLES[1]).save(local_photo)
    pxt.create_dir("production")  # as in Pixeltable, a table's directory exists first

    # --- the seed's cell, import changed (and local servers for the example's URLs) ---
    import pxt_assets as pxt_  # noqa: F401 - `import pixeltable as pxt`
    from pxt_assets.functions import openai

    # Create a table — input media automatically goes to input_media_dest
    t = pxt.create_table('production/photos', {'photo': pxt.Image})

    # Add a computed column for thumbnails
    t.add_computed_column(
        thumbnail=t.photo.resize((256, 256)),
        destination=f's3://{bucket}/thumbnails/'  # override default
    )

    # Add AI-generated descriptions (uses output_media_dest)
    messages = [
        {
            'role': 'user',
            'content': [
                {'type': 'text', 'text': 'Describe this image briefly.'},
                {'type': 'image_url', 'image_url': t.photo},
            ],
        }
    ]
    t.add_computed_column(
        description=openai.chat_completions(messages, model='gpt-4o-mini')
    )

    # Insert data — Pixeltable handles all uploads automatically
    t.insert([
        {'photo': http_server.url(SAMPLES[0].name)},
        {'photo': str(local_photo)},
    ])

    # Query as usual — files are streamed/cached as needed
    result = t.select(t.photo, t.thumbnail, t.description).collect()
    # --- end of the seed's cell ---

    assert len(result) == 2
    assert all(img.size == (256, 256) for img in result["thumbnail"])
    keys = sorted(o["Key"] for o in s3_env.client().list_objects_v2(Bucket=bucket)["Contents"])
    assert sum(k.startswith("uploads/") for k in keys) == 2 and sum(k.startswith("thumbnails/") for k in keys) == 2

    # the server got each photo as a base64 data URL, with the API key; the column holds its response
    assert len(openai_stub.requests) == 2
    sent = sorted((r["body"] for r in openai_stub.requests), key=lambda b: _data_url_image(
        b["messages"][0]["content"][1]["image_url"]["url"]).size)
    expected_sizes = sorted(PIL.Image.open(p).size for p in (SAMPLES[0], local_photo))
    for body, size in zip(sent, expected_sizes):
        assert body["model"] == "gpt-4o-mini"
        text, image = body["messages"][0]["content"]
        assert text == {"type": "text", "text": "Describe this image briefly."}
        assert image["type"] == "image_url" and _data_url_image(image["image_url"]["url"]).size == size
    assert {r["auth"] for r in openai_stub.requests} == {"Bearer sk-test-key"}
    for response in result["description"]:
        assert response["object"] == "chat.completion" and response["model"] == "gpt-4o-mini"
        assert response["choices"][0]["message"]["content"] == (
            "gpt-4o-mini saw 1 image(s); asked: Describe this image briefly.")
    contents = t.select(t.description.choices[0].message.content).collect().to_pandas().iloc[:, 0]
    assert list(contents) == ["gpt-4o-mini saw 1 image(s); asked: Describe this image briefly."] * 2
    assert t.where(t.description.usage.total_tokens == 15).count() == 2


def test_chat_completions_retries_rate_limits_and_server_errors_honouring_retry_after(pxt_home, instance, monkeypatch):
    stub = OpenAIStub(failures=[(429, "2"), (503, None)])
    monkeypatch.setenv("OPENAI_BASE_URL", stub.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key")
    try:
        from pxt_assets.functions import openai

        pxt.create_dir("llm")
        t = pxt.create_table("llm/prompts", {"prompt": pxt.String})
        t.add_computed_column(answer=openai.chat_completions(
            [{"role": "user", "content": [{"type": "text", "text": t.prompt}]}], model="m1",
            model_kwargs={"temperature": 0}))
        t.insert([{"prompt": "hello"}], instance=instance)
        assert [r["status"] for r in stub.requests] == [429, 503, 200]
        assert stub.requests[-1]["body"]["temperature"] == 0
        # the retry after the 429 waited what Retry-After asked (2 s; the client's own first backoff is < 1 s)
        assert stub.requests[1]["at"] - stub.requests[0]["at"] >= 1.9
        assert t.select(t.answer.choices[0].message.content).collect().to_pandas().iloc[0, 0] == "m1 saw 0 image(s); asked: hello"
    finally:
        stub.close()


def test_chat_completions_failure_is_the_rows_error(pxt_home, instance, monkeypatch):
    stub = OpenAIStub(failures=[(400, None)])
    monkeypatch.setenv("OPENAI_BASE_URL", stub.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key")
    try:
        from pxt_assets.functions import openai

        pxt.create_dir("llm")
        t = pxt.create_table("llm/prompts", {"prompt": pxt.String})
        t.add_computed_column(answer=openai.chat_completions([{"role": "user", "content": t.prompt}], model="m"))
        result = t.insert([{"prompt": "one"}, {"prompt": "two"}], instance=instance)
        assert result.num_errors == 1
        got = t.select(t.prompt, t.answer.errortype, t.answer.errormsg).collect().to_pandas().to_dict("records")
        bad = next(r for r in got if r["answer_errortype"] is not None)  # whichever request came first
        assert bad["answer_errortype"] == "udf_error"
        assert bad["answer_errormsg"].startswith(
            "answer: UDF chat_completions (pxt_assets.functions.openai:chat_completions) raised BadRequestError")
        assert "sk-test-key" not in bad["answer_errormsg"]
    finally:
        stub.close()


def test_face_detection_offline_model_on_photos_from_a_bucket(pxt_home, instance, s3_env, tmp_path):
    pytest.importorskip("cv2", reason="opencv-python-headless (the [models] extra) is not installed")
    from pxt_assets.examples.faces import detect_faces, draw_boxes, sample_photos

    bucket = unique_bucket("faces")
    s3 = s3_env.client()
    s3.create_bucket(Bucket=bucket)
    photos = sample_photos(tmp_path / "photos")
    for p in photos:
        s3.upload_file(str(p), bucket, f"photos/{p.name}")
    annotated_dest = tmp_path / "annotated"
    annotated_dest.mkdir()

    pxt.create_dir("faces")
    t = pxt.create_table("faces/photos", {"photo": pxt.Image})
    t.add_computed_column(faces=detect_faces(t.photo))
    t.add_computed_column(annotated=draw_boxes(t.photo, t.faces), destination=str(annotated_dest))
    t.add_computed_column(n_faces=t.faces[0:10])  # a JSON path on the model's output
    result = t.insert([{"photo": f"s3://{bucket}/photos/{p.name}"} for p in photos], instance=instance)
    assert result.num_errors == 0

    got = {r["photo_fileurl"].rsplit("/", 1)[-1]: r for r in
           t.select(t.photo.fileurl, t.faces, t.annotated, t.faces[0]["w"]).collect().to_pandas().to_dict("records")}
    for name in ("astronaut.jpg", "astronaut_mirrored.jpg", "astronaut_small.jpg"):
        assert len(got[name]["faces"]) == 1, (name, got[name]["faces"])
        box = got[name]["faces"][0]
        assert 25 <= box["w"] <= 70 and box["y"] < 60  # the astronaut's face, top centre of the portrait
        assert got[name]["faces_0_w"] == box["w"]
        # the annotation is drawn: a red outline along the box's top edge
        r, g, b = got[name]["annotated"].convert("RGB").getpixel((box["x"] + box["w"] // 2, box["y"] + 1))
        assert r > 180 and g < 90 and b < 90
    for name in ("gradient.jpg", "checkerboard.png"):
        assert got[name]["faces"] == []
    assert len(files_under(annotated_dest)) == len(photos)
    assert {r["destination"] for r in stored_records(t, "annotated")} == {annotated_dest.as_uri()}
