"""The project's entry points as a user runs them: `dagster job execute`, `python -m pxt_assets insert | show |
demo`, and `dagster dev -w workspace.yaml` (the UI's GraphQL API).

Everything runs in real subprocesses (no mocks), each test with its own PIXELTABLE_HOME and DAGSTER_HOME,
from the repository root, on the sample images that ship with the package. The only network used is
127.0.0.1 (the local Dagster webserver).
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

import dagster as dg
import pandas as pd
import PIL.Image
import PIL.ImageChops
import PIL.ImageOps
import PIL.ImageStat
import pytest
import yaml

from pxt_assets.instance import write_config

REPO = pathlib.Path(__file__).resolve().parents[1]
BIN = pathlib.Path(sys.executable).parent
DAGSTER = BIN / "dagster"
SAMPLES = sorted((REPO / "pxt_assets" / "sample_data").glob("*.jpg"))

TABLE = "blob_storage_demo/media"
TABLE_PATH = ("blob_storage_demo", "media")
GROUP = "blob_storage_demo__media"
PARTITIONS = "blob_storage_demo__media__batches"
INSERT_JOB = "blob_storage_demo__media_job"
BATCH_JOB = "blob_storage_demo__media__batch_job"
INSERT_OP = "blob_storage_demo__media__insert"
SOURCE = "source_image"
COMPUTED = ["flipped", "rotated", "thumbnail", "width", "height"]
COLUMNS = [SOURCE, *COMPUTED]
IMAGE_COLUMNS = [SOURCE, "flipped", "rotated", "thumbnail"]

SUBPROCESS_TIMEOUT_S = 300
UI_STARTUP_TIMEOUT_S = 120
# Mean absolute per-channel difference (0-255) between a stored JPEG and the expected transform of its
# source. A JPEG re-encode of the right transform measures ~5; a wrong one (unflipped, rotated the other
# way) measures 50+.
SAME_PICTURE_MAX_DIFF = 12.0


# -----------------------------------------------------------------------------------------------------------
# helpers


@dataclass
class PxtEnv:
    """A private PIXELTABLE_HOME + DAGSTER_HOME and the environment that points subprocesses at them."""

    root: pathlib.Path
    home: pathlib.Path
    dagster_home: pathlib.Path
    env: dict[str, str]

    def rows(self):
        """The row store the subprocesses write (the default SQLite file under this home)."""
        from pxt_assets import rowstore

        return rowstore.RowStore(rowstore.default_url(self.home))

    @property
    def media_dir(self) -> pathlib.Path:
        return self.home / "media"

    @property
    def rotated_dir(self) -> pathlib.Path:
        return self.home / "demo_outputs" / "rotated"

    @property
    def thumbnails_dir(self) -> pathlib.Path:
        return self.home / "demo_outputs" / "thumbnails"

    def run(self, *args: str | os.PathLike) -> subprocess.CompletedProcess:
        """Run a command from the repository root with this environment; stdout and stderr captured."""
        return subprocess.run([str(a) for a in args], check=False, cwd=REPO, env=self.env, capture_output=True,
                              text=True, timeout=SUBPROCESS_TIMEOUT_S, stdin=subprocess.DEVNULL)

    def cli(self, *args: str | os.PathLike) -> subprocess.CompletedProcess:
        return self.run(sys.executable, "-m", "pxt_assets", *args)

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.dagster_home))

    def batches(self, status: str | None = None) -> list[str]:
        store = self.rows()
        try:
            return store.batches("__".join(TABLE_PATH), status)
        finally:
            store.dispose()

    def column(self, column: str, batch: str) -> pd.DataFrame:
        """A column's records for a batch, as committed (a batch still pending fails the assertion)."""
        from pxt_assets import rowstore

        store = self.rows()
        try:
            info = store.batch_info("__".join(TABLE_PATH), batch)
            assert info is not None and info.status == rowstore.COMMITTED, f"batch {batch} is not committed: {info}"
            got = store.read_columns(store.row_table("__".join(TABLE_PATH)), batch, [column])
        finally:
            store.dispose()
        assert column in got, f"column {column} was not materialized for batch {batch}"
        return pd.DataFrame(list(got[column].values())).sort_values("row_id").reset_index(drop=True)

    def owned_files(self) -> list[pathlib.Path]:
        """Every file the project wrote for computed media columns."""
        roots = [self.media_dir, self.rotated_dir, self.thumbnails_dir]
        return sorted(p for r in roots if r.is_dir() for p in r.rglob("*") if p.is_file())


@pytest.fixture
def pxt_env(tmp_path: pathlib.Path) -> PxtEnv:
    home = tmp_path / "pixeltable"
    dagster_home = tmp_path / "dagster_home"
    write_config(dagster_home)  # as ./dev does
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIXELTABLE_", "PXT_", "DAGSTER_", "AZURE_STORAGE_"))}
    env.update(PIXELTABLE_HOME=str(home), DAGSTER_HOME=str(dagster_home), PYTHONUNBUFFERED="1")
    return PxtEnv(tmp_path, home, dagster_home, env)


def output_of(proc: subprocess.CompletedProcess) -> str:
    return f"--- exit code {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


def path_of_url(url: str) -> pathlib.Path:
    assert url.startswith("file:///"), f"expected a file:// URL, got {url!r}"
    return pathlib.Path(urllib.request.url2pathname(url[len("file://"):]))


def assert_under(url: str, folder: pathlib.Path) -> pathlib.Path:
    path = path_of_url(url)
    assert path.is_relative_to(folder), f"{url} is not under {folder}"
    assert path.is_file(), f"{url} does not exist on disk"
    return path


def picture_diff(a: PIL.Image.Image, b: PIL.Image.Image) -> float:
    assert a.size == b.size, f"sizes differ: {a.size} vs {b.size}"
    diff = PIL.ImageChops.difference(a.convert("RGB"), b.convert("RGB"))
    return sum(PIL.ImageStat.Stat(diff).mean) / 3


def open_rgb(path: pathlib.Path) -> PIL.Image.Image:
    with PIL.Image.open(path) as img:
        return img.convert("RGB")


def assert_computed_images(source: pathlib.Path, flipped: str, rotated: str, thumbnail: str, env: PxtEnv) -> None:
    """The three computed files exist at their destinations and hold the expected pictures."""
    src = open_rgb(source)
    flipped_img = open_rgb(assert_under(flipped, env.media_dir))
    rotated_img = open_rgb(assert_under(rotated, env.rotated_dir))
    thumb_img = open_rgb(assert_under(thumbnail, env.thumbnails_dir))
    assert picture_diff(flipped_img, PIL.ImageOps.mirror(src)) < SAME_PICTURE_MAX_DIFF, "flipped is not a mirror"
    # rotate(90): counter-clockwise, canvas expanded, so width and height swap.
    assert rotated_img.size == (src.height, src.width)
    assert picture_diff(rotated_img, src.rotate(90, expand=True)) < SAME_PICTURE_MAX_DIFF
    assert max(thumb_img.size) == 128 and min(thumb_img.size) < 128
    assert abs(thumb_img.width / thumb_img.height - src.width / src.height) < 0.02, "thumbnail aspect ratio changed"


def file_fingerprints(paths: list[pathlib.Path]) -> dict[pathlib.Path, tuple[str, int]]:
    return {p: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in paths}


def write_run_config(path: pathlib.Path, *, files: list[str] | None = None, rows: list[dict] | None = None) -> None:
    config: dict = {}
    if files is not None:
        config["files"] = files
    if rows is not None:
        config["rows"] = rows
    path.write_text(yaml.safe_dump({"ops": {INSERT_OP: {"config": config}}}))


def execute_insert_job(env: PxtEnv, config_file: pathlib.Path) -> subprocess.CompletedProcess:
    proc = env.run(DAGSTER, "job", "execute", "-m", "pxt_assets.definitions", "-j", INSERT_JOB, "-c", config_file)
    assert proc.returncode == 0, output_of(proc)
    return proc


def materializations(instance: dg.DagsterInstance, column: str, batch: str) -> list[dg.EventLogRecord]:
    key = dg.AssetKey([*TABLE_PATH, column])
    return list(instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key, asset_partitions=[batch]),
                                                limit=10).records)


# -----------------------------------------------------------------------------------------------------------
# dagster job execute


def test_dagster_job_execute_inserts_batch_from_run_config_file(pxt_env: PxtEnv) -> None:
    missing = pxt_env.root / "no_such_image.jpg"
    good = [str(p) for p in SAMPLES[:2]]
    config_file = pxt_env.root / "insert.yaml"
    write_run_config(config_file, files=[*good, str(missing)])

    proc = execute_insert_job(pxt_env, config_file)
    assert "3 rows inserted with 1 errors" in proc.stdout + proc.stderr, output_of(proc)

    # -- row data: one batch, three rows, the missing file kept as a row in error --------------------------
    batches = pxt_env.batches()
    assert len(batches) == 1, batches
    (batch,) = batches
    frames = {c: pxt_env.column(c, batch) for c in COLUMNS}
    for column, frame in frames.items():
        assert len(frame) == 3, (column, frame)
        assert list(frame["row_id"]) == list(frames[SOURCE]["row_id"]), column
        assert frame["row_id"].str.startswith(batch).all(), column

    source = frames[SOURCE]
    assert list(source["value"][:2]) == [p.as_uri() for p in SAMPLES[:2]]  # referenced in place
    assert not source["owned"].fillna(False).astype(bool).any(), "inserted files must stay the user's"
    assert source["value"][2] is None
    assert source["errortype"][2] == "not_found"
    assert "file not found" in source["error"][2] and str(missing) in source["error"][2]
    for column in COMPUTED:
        frame = frames[column]
        assert frame["error"][:2].isna().all(), (column, frame)
        assert frame["errortype"][2] == "upstream_error", (column, frame)
        assert str(missing) in frame["error"][2], (column, frame)
        assert pd.isna(frame["value"][2]), (column, frame)

    for i, sample in enumerate(SAMPLES[:2]):
        assert_computed_images(sample, frames["flipped"]["value"][i], frames["rotated"]["value"][i],
                               frames["thumbnail"]["value"][i], pxt_env)
        with PIL.Image.open(sample) as img:
            assert (frames["width"]["value"][i], frames["height"]["value"][i]) == img.size
    for column in ["flipped", "rotated", "thumbnail"]:
        assert list(frames[column]["owned"]) == [True, True, False], column
    assert len(pxt_env.owned_files()) == 6  # 2 good rows x 3 computed image columns, nothing for the bad row

    # -- the Dagster instance under DAGSTER_HOME ------------------------------------------------------------
    instance = pxt_env.instance()
    try:
        assert instance.get_dynamic_partitions(PARTITIONS) == [batch]
        parent_runs = [r for r in instance.get_runs() if r.job_name == INSERT_JOB]
        assert len(parent_runs) == 1 and parent_runs[0].status == dg.DagsterRunStatus.SUCCESS
        parent_run_id = parent_runs[0].run_id
        launched = [r for r in instance.get_runs() if r.tags.get("pxt/parent_run_id") == parent_run_id]
        # the batch's run was submitted through the instance and launched in its own process, not nested
        assert len(launched) == 1 and launched[0].remote_job_origin is not None, launched
        child_run_ids = set()
        for column in COLUMNS:
            records = materializations(instance, column, batch)
            assert len(records) == 1, (column, records)
            mat = records[0].asset_materialization
            assert mat.partition == batch
            assert mat.metadata["rows"].value == 3, (column, mat.metadata)
            assert mat.metadata["errors"].value == 1, (column, mat.metadata)
            if column in IMAGE_COLUMNS:
                preview = mat.metadata.get("preview")
                assert isinstance(preview, dg.MarkdownMetadataValue), (column, preview)
                assert preview.value.startswith("![preview](data:image/png;base64,"), column
            child_run_ids.add(records[0].run_id)
        # All columns were materialized by one nested run of the batch job, tagged with the insert run.
        assert len(child_run_ids) == 1
        child = instance.get_run_by_id(child_run_ids.pop())
        assert child.job_name == BATCH_JOB
        assert child.tags.get("pxt/parent_run_id") == parent_run_id
        assert child.tags.get("dagster/partition") == batch
    finally:
        instance.dispose()

    # -- a second run (rows form of the config) makes a second batch and leaves the first alone -------------
    first_files = file_fingerprints(pxt_env.owned_files())
    first_rows = {c: pxt_env.column(c, batch) for c in COLUMNS}
    config_file_2 = pxt_env.root / "insert_rows.yaml"
    write_run_config(config_file_2, rows=[{SOURCE: str(SAMPLES[2])}])
    proc = execute_insert_job(pxt_env, config_file_2)
    assert "1 rows inserted with 0 errors" in proc.stdout + proc.stderr, output_of(proc)

    batches_after = pxt_env.batches()
    assert len(batches_after) == 2 and batches_after[0] == batch, batches_after
    second = batches_after[1]
    assert file_fingerprints(list(first_files)) == first_files, "the second run changed the first batch's files"
    for c in COLUMNS:
        assert pxt_env.column(c, batch).equals(first_rows[c]), f"the second run changed the first batch's {c}"
    frames2 = {c: pxt_env.column(c, second) for c in COLUMNS}
    assert list(frames2[SOURCE]["value"]) == [SAMPLES[2].as_uri()]
    for column in COMPUTED:
        assert len(frames2[column]) == 1 and frames2[column]["error"].isna().all(), (column, frames2[column])
    assert_computed_images(SAMPLES[2], frames2["flipped"]["value"][0], frames2["rotated"]["value"][0],
                           frames2["thumbnail"]["value"][0], pxt_env)
    assert len(pxt_env.owned_files()) == 9
    instance = pxt_env.instance()
    try:
        assert sorted(instance.get_dynamic_partitions(PARTITIONS)) == [batch, second]
        for column in COLUMNS:
            assert len(materializations(instance, column, batch)) == 1, column
            (record,) = materializations(instance, column, second)
            assert record.asset_materialization.metadata["rows"].value == 1
            assert record.asset_materialization.metadata["errors"].value == 0
    finally:
        instance.dispose()


# -----------------------------------------------------------------------------------------------------------
# python -m pxt_assets insert | show | demo


def show_rows(proc: subprocess.CompletedProcess) -> list[str]:
    """The data lines of `show`'s printed frame (the header line dropped)."""
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    header, rows = lines[0].split(), lines[1:]
    assert header == [*COLUMNS, "errors"], lines[0]
    return rows


def test_insert_cli_and_show(pxt_env: PxtEnv) -> None:
    sample = SAMPLES[1]
    proc = pxt_env.cli("insert", TABLE, sample)
    assert proc.returncode == 0, output_of(proc)
    match = re.search(r"^batch (\S+), run ([0-9a-f-]{36})$", proc.stdout, re.MULTILINE)
    assert match, output_of(proc)
    batch = match.group(1)
    assert pxt_env.batches() == [batch]

    proc = pxt_env.cli("show", TABLE)
    assert proc.returncode == 0, output_of(proc)
    rows = show_rows(proc)
    assert len(rows) == 1, proc.stdout
    urls = re.findall(r"file://\S+", rows[0])
    assert len(urls) == 4, rows[0]  # one fileurl per media column, in column order
    source_url, flipped, rotated, thumbnail = urls
    assert source_url == sample.as_uri()
    for url in urls[1:]:
        assert batch in url, f"{url} is not named after its batch {batch}"
    assert_computed_images(sample, flipped, rotated, thumbnail, pxt_env)
    with PIL.Image.open(sample) as img:
        width, height = img.size
    assert rows[0].split()[5:7] == [str(width), str(height)], rows[0]

    # A file that does not exist: the row is kept with its error, and the CLI says so with its exit code.
    missing = pxt_env.root / "gone.jpg"
    proc = pxt_env.cli("insert", TABLE, missing)
    assert proc.returncode == 1, output_of(proc)
    assert len(pxt_env.batches()) == 2
    proc = pxt_env.cli("show", TABLE)
    assert proc.returncode == 0, output_of(proc)
    rows = show_rows(proc)
    assert len(rows) == 2, proc.stdout
    assert re.findall(r"file://\S+", rows[0]) == urls, "the first row changed"
    assert "file://" not in rows[1] and f"file not found: {missing}" in rows[1], rows[1]


DEMO_SUMMARY = ">>> t.select(source=t.source_image.fileurl, rotated=t.rotated.fileurl, flipped=t.flipped.fileurl)"


def demo_summary(proc: subprocess.CompletedProcess) -> list[tuple[str, str, str]]:
    """(source, rotated, flipped) fileurls of the last table the demo prints."""
    assert DEMO_SUMMARY in proc.stdout, output_of(proc)
    lines = proc.stdout.split(DEMO_SUMMARY, 1)[1].splitlines()[1:]
    assert lines[0].split() == ["source", "rotated", "flipped"], lines[0]
    rows = []
    for line in lines[1:]:
        if not line.strip():
            break
        match = re.fullmatch(r"\s*(\d+)\s+(file://\S+)\s+(file://\S+)\s+(file://\S+)\s*", line)
        assert match, f"unexpected line in the demo's summary: {line!r}"
        assert int(match.group(1)) == len(rows)
        rows.append(match.group(2, 3, 4))
    return rows


def test_demo_command_reproduces_seed_walkthrough(pxt_env: PxtEnv) -> None:
    proc = pxt_env.cli("demo")
    assert proc.returncode == 0, output_of(proc)
    first = demo_summary(proc)
    assert [s for s, _, _ in first] == [p.as_uri() for p in SAMPLES]
    for _, rotated, flipped in first:
        assert_under(rotated, pxt_env.rotated_dir)
        assert_under(flipped, pxt_env.media_dir)
    first_files = pxt_env.owned_files()
    assert len(first_files) == 9  # 3 rows x flipped, rotated, thumbnail
    (first_batch,) = pxt_env.batches()

    # Again: a clean slate, as the seed's drop_dir. The old batch and its files go; the samples stay.
    proc = pxt_env.cli("demo")
    assert proc.returncode == 0, output_of(proc)
    second = demo_summary(proc)
    assert len(second) == 3
    assert [s for s, _, _ in second] == [p.as_uri() for p in SAMPLES]
    (second_batch,) = pxt_env.batches()
    assert second_batch != first_batch
    for _, rotated, flipped in second:
        assert second_batch in rotated and second_batch in flipped
        assert_under(rotated, pxt_env.rotated_dir)
        assert_under(flipped, pxt_env.media_dir)
    leftovers = [p for p in first_files if p.exists()]
    assert not leftovers, f"files of the first run were not deleted: {leftovers}"
    assert len(pxt_env.owned_files()) == 9
    assert all(p.is_file() for p in SAMPLES), "the demo deleted a sample image it only referenced"
    assert first_batch not in pxt_env.batches(), "the first batch is left in the database"
    instance = pxt_env.instance()
    try:
        assert instance.get_dynamic_partitions(PARTITIONS) == [second_batch]
    finally:
        instance.dispose()


# -----------------------------------------------------------------------------------------------------------
# dagster dev -w workspace.yaml


_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1 only, never via a proxy


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with _LOCAL.open(request, timeout=60) as response:
        body = json.load(response)
    assert not body.get("errors"), body
    return body["data"]


WORKSPACE_QUERY = """{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
ASSETS_QUERY = """{ assetNodes { assetKey { path } groupName dependencyKeys { path }
  partitionDefinition { type name } } }"""
JOBS_QUERY = """{ repositoriesOrError { __typename ... on RepositoryConnection { nodes { name
  location { name } jobs { name } } } ... on PythonError { message } } }"""


def wait_until_loaded(proc: subprocess.Popen, port: int, log: pathlib.Path) -> None:
    """Poll /server_info, then the workspace, until the code location is loaded (or fail with the log)."""
    deadline = time.monotonic() + UI_STARTUP_TIMEOUT_S
    while True:
        assert proc.poll() is None, f"dagster dev exited with {proc.returncode}:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"dagster dev not up in {UI_STARTUP_TIMEOUT_S} s:\n{log.read_text()}"
        try:
            with _LOCAL.open(f"http://127.0.0.1:{port}/server_info", timeout=5) as response:
                json.load(response)
            entries = graphql(port, WORKSPACE_QUERY)["workspaceOrError"]["locationEntries"]
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
            pass
        time.sleep(1)


def stop(proc: subprocess.Popen) -> None:
    """Stop `dagster dev` and every process it started (its own session/process group)."""
    if proc.poll() is None:
        proc.terminate()  # dagster dev shuts down its webserver, daemon and code servers itself
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # anything left in the group
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def start_dagster_dev(env: PxtEnv) -> tuple[subprocess.Popen, int, pathlib.Path]:
    """`dagster dev -w workspace.yaml` on a free 127.0.0.1 port in its own session, logging to a file;
    returns once the code location is loaded. Stop it with stop()."""
    port = free_port()
    log = env.root / "dagster_dev.log"
    with log.open("w") as out:
        proc = subprocess.Popen([str(DAGSTER), "dev", "-w", "workspace.yaml", "-p", str(port), "-h", "127.0.0.1"],
                                cwd=REPO, env=env.env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until_loaded(proc, port, log)
    except BaseException:
        stop(proc)
        raise
    return proc, port, log


def test_workspace_yaml_loads_asset_graph_with_lineage(pxt_env: PxtEnv) -> None:
    proc, port, log = start_dagster_dev(pxt_env)
    try:
        entries = graphql(port, WORKSPACE_QUERY)["workspaceOrError"]["locationEntries"]
        assert [(e["name"], e["locationOrLoadError"]["__typename"]) for e in entries] == \
            [("pxt_assets", "RepositoryLocation")], entries

        nodes = {tuple(n["assetKey"]["path"]): n for n in graphql(port, ASSETS_QUERY)["assetNodes"]}
        expected = {(*TABLE_PATH, c) for c in COLUMNS}
        assert set(nodes) == expected, sorted(nodes)
        for key, node in nodes.items():
            assert node["groupName"] == GROUP, (key, node)
            assert node["partitionDefinition"] == {"type": "DYNAMIC", "name": PARTITIONS}, (key, node)
        assert nodes[(*TABLE_PATH, SOURCE)]["dependencyKeys"] == []
        for column in COMPUTED:
            deps = [tuple(d["path"]) for d in nodes[(*TABLE_PATH, column)]["dependencyKeys"]]
            assert deps == [(*TABLE_PATH, SOURCE)], (column, deps)

        repos = graphql(port, JOBS_QUERY)["repositoriesOrError"]
        assert repos["__typename"] == "RepositoryConnection", repos
        (repo,) = repos["nodes"]
        assert repo["location"]["name"] == "pxt_assets"
        jobs = {j["name"] for j in repo["jobs"]}
        assert {INSERT_JOB, BATCH_JOB} <= jobs, jobs
    finally:
        stop(proc)
