"""The seeds as real notebooks: each seed's code cells (as test_seeds.py has them: only the import changed,
sample media served from 127.0.0.1, emulator buckets instead of real ones) become a notebook that a real
Jupyter kernel (ipykernel, through nbclient) runs. Every cell must run without an exception and without a
single line on stderr, and each `collect()` shown must be an HTML table with inline image previews and the
fileurls it selected. The executed notebooks are kept beside the UI screenshots ($PXT_TEST_ARTIFACTS,
default test-artifacts/ui/), as `seed-NNN.ipynb`.

Also here: a run made while an asyncio loop runs in the calling thread (what a kernel's cell is) leaves no
coroutine unawaited (Dagster's per-run event loop; see launch.execute_in_process)."""

from __future__ import annotations

import asyncio
import gc
import html
import json
import pathlib
import sys
import warnings
from dataclasses import dataclass, field

import nbclient
import nbformat
import pytest

import pxt_assets as pxt
from pxt_assets_tests.conftest import SAMPLES, artifacts_dir, unique_bucket
from pxt_assets_tests.mediagen import make_video
from pxt_assets_tests.test_seeds import b2_bucket, notebook  # noqa: F401 - the fixtures


@dataclass
class Cell:
    """A seed's code cell; `shows`: what its displayed result must hold (`img`: an inline image preview;
    `urls`: a query, run in the test afterwards, whose values must all appear in the cell's HTML)."""

    source: str
    img: bool = False
    urls: list[str] = field(default_factory=list)


def _cells(cells: list[Cell | str]) -> list[Cell]:
    return [c if isinstance(c, Cell) else Cell(c) for c in cells]


@pytest.fixture
def kernel(request, tmp_path, monkeypatch):
    """A user's machine (test_seeds' `notebook`: HOME, PIXELTABLE_HOME, DAGSTER_HOME of its own), and a kernel
    spec that starts this interpreter's ipykernel (not whatever `python3` kernel the machine has)."""
    home = request.getfixturevalue("notebook")
    spec = tmp_path / "jupyter" / "kernels" / "pxt-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "pxt test", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # the debugger's notice on frozen modules
    return home


def _run(name: str, cells: list[Cell], cwd: pathlib.Path):
    """Execute the cells in a fresh kernel; the executed notebook is written to the artifacts folder, whatever
    happens."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c.source) for c in cells])
    nb.metadata["kernelspec"] = {"name": "pxt-test", "display_name": "pxt test", "language": "python"}
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="pxt-test", allow_errors=True,
                                     resources={"metadata": {"path": str(cwd)}})
    try:
        client.execute()
    finally:
        nbformat.write(nb, str(artifacts_dir() / f"{name}.ipynb"))
    return nb


def _check(nb, cells: list[Cell], query_globals: dict) -> None:
    """Every cell: no error, nothing on stderr; a shown collect(): an HTML table with what it selected."""
    problems = []
    for i, (cell, nb_cell) in enumerate(zip(cells, nb.cells)):
        where = f"cell {i} ({cell.source.strip().splitlines()[-1][:60]!r})"
        for out in nb_cell.outputs:
            if out.output_type == "error":
                problems.append(f"{where}: {out.ename}: {out.evalue}")
            elif out.output_type == "stream" and out.name == "stderr":
                problems.append(f"{where}: stderr: {out.text!r}")
        if cell.source.rstrip().endswith(".collect()"):
            shown = [o for o in nb_cell.outputs if o.output_type == "execute_result"]
            page = shown[0].data.get("text/html", "") if shown else ""
            if "<table" not in page:
                problems.append(f"{where}: no HTML table shown ({[o.output_type for o in nb_cell.outputs]})")
                continue
            if cell.img and "<img" not in page:
                problems.append(f"{where}: no inline image preview")
            for query in cell.urls:
                for url in list(eval(query, query_globals)):  # noqa: S307 - the test's own query text
                    if url not in page and html.escape(url) not in page:
                        problems.append(f"{where}: fileurl {url!r} not in the HTML")
    assert not problems, "\n".join(problems)


def _import_changed(source: str) -> str:
    return (source.replace("import pixeltable as pxt", "import pxt_assets as pxt")
            .replace("from pixeltable.functions import", "from pxt_assets.functions import")
            .replace("import pixeltable.functions as pxtf", "import pxt_assets.functions as pxtf"))


def test_seed_001_as_a_notebook(kernel, http_server, request, tmp_path):
    bucket = request.getfixturevalue("b2_bucket")  # test_seeds' (the seed's B2 bucket, on the S3 emulator)
    sample = http_server.url("000000000036.jpg")
    cells = _cells([
        "import pixeltable as pxt\nfrom pathlib import Path\n# Clean slate for this demo\n"
        "pxt.drop_dir('blob_storage_demo', force=True)\npxt.create_dir('blob_storage_demo')",
        "# Create table\nt = pxt.create_table(\n    'blob_storage_demo/media',\n    {'source_image': pxt.Image},\n"
        "    if_exists='replace',\n)",
        "t",
        f"sample_image = {sample!r}\nt.insert(source_image=sample_image)",
        Cell("t.collect()", img=True),
        Cell("# Let's see where the source_image is stored by default\nt.select(t.source_image.fileurl).collect()",
             urls=["t.select(t.source_image.fileurl).collect()['source_image_fileurl']"]),
        "# Add computed column with no destination specified - uses default\nt.add_computed_column(\n"
        "    flipped=t.source_image.transpose(0), if_exists='replace'\n)",
        Cell("t.select(t.flipped, t.flipped.fileurl).collect()", img=True,
             urls=["t.select(t.flipped.fileurl).collect()['flipped_fileurl']"]),
        "base_path = Path.home() / 'Desktop' / 'pixeltable_outputs'\nbase_path.mkdir(parents=True, exist_ok=True)\n\n"
        "dest_rotated = str(base_path / 'rotated')\n\n# Create directory (only needed for local paths)\n"
        "Path(dest_rotated).mkdir(exist_ok=True)",
        "# Add column WITH explicit destination\nt.add_computed_column(\n    rotated=t.source_image.rotate(90),\n"
        "    destination=dest_rotated,\n    if_exists='replace',\n)",
        Cell("t.select(t.rotated, t.rotated.fileurl).collect()", img=True,
             urls=["t.select(t.rotated.fileurl).collect()['rotated_fileurl']"]),
        Cell("t.select(t.flipped, t.flipped.fileurl).collect()", img=True,
             urls=["t.select(t.flipped.fileurl).collect()['flipped_fileurl']"]),
        "# Create a different destination for thumbnails\ndest_thumbnails = str(base_path / 'thumbnails')\n"
        "Path(dest_thumbnails).mkdir(exist_ok=True)\n\n"
        "# Add column with explicit destination (overrides any global default)\nt.add_computed_column(\n"
        "    thumbnail=t.source_image.thumbnail((128, 128)),\n    destination=dest_thumbnails,\n"
        "    if_exists='replace',\n)",
        Cell("t.select(t.thumbnail, t.thumbnail.fileurl).collect()", img=True,
             urls=["t.select(t.thumbnail.fileurl).collect()['thumbnail_fileurl']"]),
        Cell("t.select(\n    source=t.source_image.fileurl,\n    rotated=t.rotated.fileurl,\n"
             "    flipped=t.flipped.fileurl,\n).collect()",
             urls=["t.select(t.rotated.fileurl).collect()['rotated_fileurl']"]),
        f"import os\n\n# Use HTTPS URL format for Backblaze B2\nb2_region = 'us-east-005'\nb2_bucket = {bucket!r}\n"
        "cloud_destination = (\n    f'https://s3.{b2_region}.backblazeb2.com/{b2_bucket}/presigned-demo/'\n)\n\n"
        "# Add the computed column\nt.add_computed_column(\n    cloud_thumbnail=t.source_image.thumbnail((64, 64)),\n"
        "    destination=cloud_destination,\n    if_exists='replace',\n)",
        Cell("# Now generate presigned URLs for the cloud-stored files\nfrom pixeltable.functions import net\n\n"
             "t.select(\n    cloud_thumbnail=t.cloud_thumbnail,\n    storage_url=t.cloud_thumbnail.fileurl,\n"
             "    presigned_url=net.presigned_url(\n        t.cloud_thumbnail.fileurl, 3600\n"
             "    ),  # 1-hour expiration\n).collect()", img=True,
             urls=["t.select(t.cloud_thumbnail.fileurl).collect()['cloud_thumbnail_fileurl']"]),
    ])
    for c in cells:
        c.source = _import_changed(c.source)
    nb = _run("seed-001", cells, tmp_path)
    t = pxt.get_table("blob_storage_demo/media")
    _check(nb, cells, {"t": t})


def test_seed_000_as_a_notebook(kernel, http_server, tmp_path):
    sample = http_server.url("000000000036.jpg")
    cells = _cells([  # the seed's cells (In [...]), as they are but the sample's URL
        "import pixeltable as pxt\nfrom pathlib import Path",
        "# Clean slate for this demo\npxt.drop_dir('blob_storage_demo', force=True)\npxt.create_dir('blob_storage_demo')",
        "# Create local destination directories\n# For S3: dest_rotated = \"s3://my-bucket/rotated/\"\n"
        "# For GCS: dest_rotated = \"gs://my-bucket/rotated/\"\n"
        "base_path = Path.home() / 'Desktop' / 'pixeltable_outputs'\nbase_path.mkdir(parents=True, exist_ok=True)\n\n"
        "dest_rotated = str(base_path / 'rotated')\ndest_flipped = str(base_path / 'flipped')\n\n"
        "# Create directories (only needed for local paths)\n"
        "Path(dest_rotated).mkdir(exist_ok=True)\nPath(dest_flipped).mkdir(exist_ok=True)",
        "# Create table and insert sample image\n"
        "t = pxt.create_table('blob_storage_demo.media', {'source_image': pxt.Image})\n"
        f"sample_image = {sample!r}\nt.insert(source_image=sample_image)",
        Cell("# Let's see where the source_image is stored by default\n"
             "t.select(t.source_image, t.source_image.fileurl).collect()", img=True,
             urls=["t.select(t.source_image.fileurl).collect()['source_image_fileurl']"]),
        "# Column WITH explicit destination\nt.add_computed_column(\n    rotated=t.source_image.rotate(90),\n"
        "    destination=dest_rotated\n)\n\n# Column WITHOUT destination - uses default (local storage)\n"
        "t.add_computed_column(\n    flipped=t.source_image.transpose(0)\n)",
        Cell("t.select(t.source_image, t.rotated, t.flipped, t.rotated.fileurl, t.flipped.fileurl).collect()",
             img=True, urls=["t.select(t.rotated.fileurl).collect()['rotated_fileurl']",
                             "t.select(t.flipped.fileurl).collect()['flipped_fileurl']"]),
        "# Add column with explicit destination (overrides any global default)\nt.add_computed_column(\n"
        "    thumbnail=t.source_image.resize((128, 128)),\n    destination=dest_flipped  # Reusing our flipped directory\n)",
        Cell("t.select(t.thumbnail, t.thumbnail.fileurl).collect()", img=True,
             urls=["t.select(t.thumbnail.fileurl).collect()['thumbnail_fileurl']"]),
        Cell("t.select(\n    t.source_image.fileurl,\n    t.rotated.fileurl,\n    t.flipped.fileurl\n).collect()",
             urls=["t.select(t.flipped.fileurl).collect()['flipped_fileurl']"]),
    ])
    for c in cells:
        c.source = _import_changed(c.source)
    nb = _run("seed-000", cells, tmp_path)
    _check(nb, cells, {"t": pxt.get_table("blob_storage_demo/media")})


def test_seed_003_as_a_notebook(kernel, http_server, s3_env, tmp_path):
    bucket = unique_bucket("multimedia-commons")
    s3_env.client().create_bucket(Bucket=bucket)
    video = make_video(tmp_path / "clip.mp4", seconds=1.0)
    paths = ["data/videos/mp4/ffe/ffb/a.mp4", "data/videos/mp4/ffe/feb/b.mp4"]
    for key in paths:
        s3_env.client().upload_file(str(video), bucket, key, ExtraArgs={"ContentType": "video/mp4"})
    urls = ",\n".join(f"    {http_server.url(p.name)!r}" for p in SAMPLES)
    cells = _cells([
        "import pixeltable as pxt",
        "pxt.drop_dir('cloud_demo', force=True)\npxt.create_dir('cloud_demo')",
        "images = pxt.create_table('cloud_demo.images', {'image': pxt.Image})",
        f"# Insert images by URL (HTTP)\nimage_urls = [\n{urls}\n]\n\n"
        "images.insert([{'image': url} for url in image_urls])",
        Cell("images.collect()", img=True),
        "videos = pxt.create_table('cloud_demo.videos', {'video': pxt.Video})",
        f"# Insert videos by S3 URL\ns3_prefix = 's3://{bucket}/'\nvideo_paths = [\n"
        + "".join(f"    {p!r},\n" for p in paths) + "]\n\n"
        "videos.insert([{'video': s3_prefix + path} for path in video_paths])",
        "videos.collect()",
        "images.add_computed_column(width=images.image.width)\nimages.add_computed_column(height=images.image.height)",
        Cell("images.select(images.image, images.width, images.height).collect()", img=True),
        Cell("import pixeltable.functions as pxtf\n\n# Generate presigned URLs for videos (1-hour expiration)\n"
             "videos.select(\n    videos.video,\n    original_uri=videos.video.fileurl,\n"
             "    http_url=pxtf.net.presigned_url(videos.video.fileurl, 3600)\n).collect()",
             urls=["videos.select(videos.video.fileurl).collect()['video_fileurl']"]),
        "videos.add_computed_column(\n    serving_url=pxtf.net.presigned_url(videos.video.fileurl, 86400)"
        "  # 24-hour expiration\n)",
    ])
    for c in cells:
        c.source = _import_changed(c.source)
    nb = _run("seed-003", cells, tmp_path)
    _check(nb, cells, {"videos": pxt.get_table("cloud_demo/videos")})


def test_a_run_inside_a_running_event_loop_leaves_no_coroutine_unawaited(pxt_home, instance):
    """A notebook cell runs inside the kernel's asyncio loop: Dagster's per-run loop cannot run its
    `shutdown_asyncgens()` there, and the coroutine it made is never awaited (a RuntimeWarning on stderr)."""
    pxt.create_dir("loop")
    t = pxt.create_table("loop/media", {"img": pxt.Image})

    async def cell() -> None:
        t.insert(img=str(SAMPLES[0]), instance=instance)
        t.add_computed_column(rot=t.img.rotate(90), instance=instance)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(cell())
        gc.collect()
    unawaited = [str(w.message) for w in caught if "never awaited" in str(w.message)]
    assert unawaited == [] and t.count() == 1
