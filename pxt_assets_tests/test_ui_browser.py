"""The Dagster UI in a real browser: Playwright driving Debian's Chromium against a `dagster dev` started here.

The demo table gets one batch (two sample photos and one corrupt file), then `dagster dev -w workspace.yaml`
serves it on a free 127.0.0.1 port with this module's own PIXELTABLE_HOME and DAGSTER_HOME. The tests check
what a person sees:

- the group `blob_storage_demo__media` draws one node per column, and its edges join `source_image` to each
  computed column (the edges' end points are matched to the nodes' boxes on screen);
- the `rotated` asset page shows the row and error counts, the destination, and the preview image (loaded:
  its natural size is the picture's);
- the failed row's error is on the page, by row id;
- a catalog table that cannot be read shows why on its asset's page, while the demo loads beside it.

Full-page screenshots go to `$PXT_TEST_ARTIFACTS` (default `test-artifacts/ui/` at the repository root), and
so does `dagster dev`'s log; a failing step adds `failure-<name>.png` and `.html`.

Chromium comes from Debian (`./dev test` runs `apt-get install chromium`); Playwright never downloads a
browser. Without either, these tests fail with a message saying so: they are not skipped.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import sys

import PIL.Image
import pytest

from pxt_assets.instance import write_config
from pxt_assets_tests.conftest import artifacts_dir
from pxt_assets_tests.test_cli_and_ui import (
    COLUMNS,
    COMPUTED,
    DAGSTER,
    INSERT_JOB,
    SAMPLES,
    SOURCE,
    TABLE_PATH,
    PxtEnv,
    output_of,
    path_of_url,
    start_dagster_dev,
    stop,
    write_run_config,
)

try:
    from playwright.sync_api import Page, expect, sync_playwright
except ImportError as e:  # a clear failure, not a skip: ./dev setup installs the test extra
    raise ImportError("playwright (Python) is not installed: run ./dev setup (the `test` extra)") from e

CHROMIUM = pathlib.Path("/usr/bin/chromium")
GROUP_URL = "/locations/pxt_assets/asset-groups/blob_storage_demo__media"
MEDIA_COLUMN = "rotated"
# The machine is small and shared: generous waits, always on a condition (never a sleep).
UI_TIMEOUT_MS = 60_000
# Tall enough that an asset page's whole metadata table is on screen (the UI scrolls inside the page).
VIEWPORT = {"width": 1600, "height": 1600}


class UI:
    """The running `dagster dev` (base URL), the environment it serves and the batch it shows."""

    def __init__(self, env: PxtEnv, base: str, batch: str, artifacts: pathlib.Path) -> None:
        self.env, self.base, self.batch, self.artifacts = env, base, batch, artifacts

    def screenshot(self, page: Page, name: str) -> pathlib.Path:
        path = self.artifacts / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture(scope="module")
def ui(tmp_path_factory) -> UI:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: ./dev test installs Debian's chromium (apt-get install chromium)")
    artifacts = artifacts_dir()
    for old in artifacts.glob("failure-*"):
        old.unlink()

    root = tmp_path_factory.mktemp("ui")
    home, dagster_home = root / "pixeltable", root / "dagster_home"
    write_config(dagster_home)  # as ./dev does
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIXELTABLE_", "PXT_", "DAGSTER_", "AZURE_STORAGE_"))}
    env.update(PIXELTABLE_HOME=str(home), DAGSTER_HOME=str(dagster_home), PYTHONUNBUFFERED="1")
    pxt_env = PxtEnv(root, home, dagster_home, env)

    # One batch before the UI starts: two good photos and a file that is not an image (the row in error).
    corrupt = root / "corrupt.jpg"
    corrupt.write_bytes(b"this is not a jpeg")
    config = root / "insert.yaml"
    write_run_config(config, files=[*(str(p) for p in SAMPLES[:2]), str(corrupt)])
    proc = pxt_env.run(DAGSTER, "job", "execute", "-m", "pxt_assets.definitions", "-j", INSERT_JOB, "-c", config)
    assert proc.returncode == 0 and "3 rows inserted with 1 errors" in proc.stdout + proc.stderr, output_of(proc)
    (batch,) = pxt_env.batches()
    # and a catalog entry that cannot be read, beside the demo: its asset shows why, the rest loads
    broken = pxt_env.run(sys.executable, "-c", (
        "import pxt_assets as pxt; from pxt_assets import rowstore; pxt.create_dir('broken'); "
        "rowstore.for_settings(pxt.load_settings()).save_table_doc('broken/t', "
        "{'path': 'broken/t', 'columns': [{'name': 'x', 'type': 'NoSuchType'}]})"))
    assert broken.returncode == 0, output_of(broken)

    dev, port, log = start_dagster_dev(pxt_env)
    try:
        yield UI(pxt_env, f"http://127.0.0.1:{port}", batch, artifacts)
    finally:
        stop(dev)
        shutil.copyfile(log, artifacts / "dagster_dev.log")


@pytest.fixture(scope="module")
def browser(ui):
    expect.set_options(timeout=UI_TIMEOUT_MS)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser, ui):
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    yield page
    context.close()


@contextlib.contextmanager
def kept_on_failure(ui: UI, page: Page, name: str):
    """On an error inside, keep what the browser showed (screenshot and HTML) as artifacts."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            page.screenshot(path=str(ui.artifacts / f"failure-{name}.png"), full_page=True)
            (ui.artifacts / f"failure-{name}.html").write_text(page.content())
        raise


def metadata_value(page: Page, key: str):
    """The value cell of a metadata table row, by its key."""
    return page.locator("tr", has=page.get_by_text(key, exact=True)).locator("td").last


# Every drawn edge, as (from node, to node): each end point is matched to the nearest node box on screen, in
# the page's coordinates (nodes are foreignObjects in the graph's SVG, edges are paths with an arrow marker).
EDGES_JS = """
() => {
  const nodes = [...document.querySelectorAll('svg foreignObject')].map(fo => {
    const label = fo.querySelector('[class*="AssetNode_assetName"] [data-tooltip]');
    return label && {name: label.dataset.tooltip, box: fo.getBoundingClientRect()};
  }).filter(Boolean);
  const distance = (pt, r) => Math.hypot(Math.max(r.left - pt.x, 0, pt.x - r.right),
                                          Math.max(r.top - pt.y, 0, pt.y - r.bottom));
  const nearest = pt => nodes.map(n => [distance(pt, n.box), n.name]).sort((a, b) => a[0] - b[0])[0];
  return [...document.querySelectorAll('svg path[marker-end]')].map(path => {
    const ctm = path.getScreenCTM(), length = path.getTotalLength();
    const [d0, from] = nearest(path.getPointAtLength(0).matrixTransform(ctm));
    const [d1, to] = nearest(path.getPointAtLength(length).matrixTransform(ctm));
    return {from, to, gap: Math.max(d0, d1)};
  });
}
"""


def test_demo_group_graph_shows_one_node_per_column_and_lineage_edges(ui: UI, page: Page) -> None:
    with kept_on_failure(ui, page, "graph"):
        page.goto(ui.base + GROUP_URL)
        labels = page.locator('svg foreignObject [class*="AssetNode_assetName"] [data-tooltip]')
        expect(labels).to_have_count(len(COLUMNS))
        assert sorted(labels.evaluate_all("els => els.map(e => e.dataset.tooltip)")) == sorted(COLUMNS)
        for column in COLUMNS:
            expect(page.locator("svg foreignObject").get_by_text(column, exact=True)).to_be_visible()
        edges = page.locator("svg path[marker-end]")
        expect(edges).to_have_count(len(COMPUTED))
        drawn = page.evaluate(EDGES_JS)
        assert all(e["gap"] < 30 for e in drawn), f"an edge ends away from every node: {drawn}"
        assert sorted((e["from"], e["to"]) for e in drawn) == sorted((SOURCE, c) for c in COMPUTED), drawn
        ui.screenshot(page, "graph-blob_storage_demo__media")


def test_media_asset_page_shows_counts_destination_and_preview(ui: UI, page: Page) -> None:
    with kept_on_failure(ui, page, f"asset-{MEDIA_COLUMN}"):
        page.goto(f"{ui.base}/assets/{'/'.join(TABLE_PATH)}/{MEDIA_COLUMN}")
        expect(metadata_value(page, "rows")).to_have_text("3")
        expect(metadata_value(page, "errors")).to_have_text("1")
        expect(metadata_value(page, "destination")).to_have_text(ui.env.rotated_dir.as_uri())
        expect(page.get_by_text(ui.batch, exact=True).first).to_be_visible()  # the latest materialization
        ui.screenshot(page, f"asset-{MEDIA_COLUMN}")

        metadata_value(page, "preview").get_by_text("[Show Markdown]").click()
        image = page.get_by_role("dialog").locator("img")
        expect(image).to_be_visible()
        assert image.get_attribute("src").startswith("data:image/png;base64,")
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
        width, height = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
        # the preview is the first good row's rotated picture, scaled down: same shape as the file
        with PIL.Image.open(path_of_url(ui.env.column(MEDIA_COLUMN, ui.batch)["value"][0])) as stored:
            assert max(width, height) <= max(stored.size)
            assert abs(width / height - stored.width / stored.height) < 0.05, ((width, height), stored.size)
        ui.screenshot(page, f"asset-{MEDIA_COLUMN}-preview")


def test_failed_rows_error_is_visible(ui: UI, page: Page) -> None:
    bad_row = f"{ui.batch}-000002"
    corrupt = str(ui.env.root / "corrupt.jpg")
    for column, error in [(SOURCE, f"not a readable image: {corrupt}: cannot identify image file"),
                          (MEDIA_COLUMN, f"source_image: not a readable image: {corrupt}")]:
        with kept_on_failure(ui, page, f"errors-{column}"):
            page.goto(f"{ui.base}/assets/{'/'.join(TABLE_PATH)}/{column}")
            cell = metadata_value(page, "sample_errors")
            expect(cell).to_be_visible()
            expect(cell).to_contain_text(bad_row)
            expect(cell).to_contain_text(error)
            for good in range(2):
                expect(cell).not_to_contain_text(f"{ui.batch}-{good:06d}")
            ui.screenshot(page, f"errors-{column}")


def test_a_table_that_cannot_be_loaded_shows_why_on_its_asset_page(ui: UI, page: Page) -> None:
    with kept_on_failure(ui, page, "broken-table"):
        page.goto(f"{ui.base}/assets/broken/t/x")
        expect(page.get_by_text("Table 'broken/t' cannot be loaded").first).to_be_visible()
        expect(page.get_by_text("NoSuchType").first).to_be_visible()
        ui.screenshot(page, "asset-broken-table")
