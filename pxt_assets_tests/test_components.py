"""Tables declared in YAML (pxt_assets.MediaTableComponent) and the code location built when Dagster loads it:
nothing at import, a table that cannot be built shown on its assets, `dg check defs` / `dg list defs`."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import textwrap

import dagster as dg
import PIL.Image
import pytest
import yaml
from dagster.components.core.load_defs import build_defs_for_component

import pxt_assets as pxt
from pxt_assets_tests.conftest import SAMPLES, files_under, write_module

REPO = pathlib.Path(__file__).resolve().parents[1]
BIN = pathlib.Path(sys.executable).parent

PHOTOS = """
type: pxt_assets.MediaTableComponent
attributes:
  path: yaml/photos
  schema: {img: Image}
  columns:
    rotated:
      function: pxt_assets.functions.image.rotate   # a built-in by import path
      args: [{column: img}, 90]
      destination: "{{ env('YAML_TEST_DEST') }}"
    thumb:
      function: image.thumbnail                      # a built-in by name
      args: [{column: img}, [32, 32]]
    w: {function: image.width, args: [{column: img}]}
    h: {function: image.height, args: [{column: img}]}
    kind:
      function: yaml_udfs.kind                       # a @pxt.udf by import path
      args: [{column: w}, {column: h}]
      kwargs: {prefix: "{{ env('YAML_TEST_PREFIX', 'shape') }}"}
    where:
      function: yaml_udfs.where
      args: [{column: rotated, property: fileurl}]
    url:
      function: net.presigned_url
      args: [{column: rotated, property: fileurl}, 60]
      enabled: "{{ env('YAML_TEST_CLOUD', '') != '' }}"
  watch:
    prefix: "{{ env('YAML_TEST_WATCH', '') }}"
    interval_seconds: "{{ env('YAML_TEST_INTERVAL', '30') }}"
"""

DOCS = """
type: pxt_assets.MediaTableComponent
attributes:
  path: yaml/docs
  schema: {doc: Document}
  views:
    - path: yaml/pages
      iterator:
        function: document.document_splitter
        args: [{column: doc}]
        kwargs: {separators: page}
      columns:
        size: {function: yaml_udfs.size, args: [{column: text}]}
"""

UDFS = '''
import pxt_assets as pxt


@pxt.udf
def kind(w: int, h: int, prefix: str = "shape") -> str:
    return f"{prefix}:{'landscape' if w > h else 'portrait'}"


@pxt.udf
def where(url: str) -> str:
    return url.rsplit("/", 1)[0]


@pxt.udf
def size(text: str) -> int:
    return len(text)
'''


def _component(tmp_path: pathlib.Path, text: str, name: str) -> pxt.MediaTableComponent:
    path = tmp_path / name / "defs.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    declared = yaml.safe_load(path.read_text())
    assert declared["type"] == "pxt_assets.MediaTableComponent"
    component = pxt.MediaTableComponent.from_attributes_dict(attributes=declared["attributes"])
    assert isinstance(component, pxt.MediaTableComponent)
    return component


@pytest.fixture
def udfs(tmp_path, monkeypatch):
    return write_module(tmp_path, monkeypatch, "yaml_udfs", UDFS)


def _keys(defs: dg.Definitions) -> list[str]:
    return sorted(k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys())


def test_a_yaml_table_has_an_asset_per_column_and_computes_into_its_templated_destination(
        pxt_home, instance, tmp_path, monkeypatch, udfs):
    out = tmp_path / "rotated"
    out.mkdir()
    monkeypatch.setenv("YAML_TEST_DEST", str(out))
    monkeypatch.setenv("YAML_TEST_PREFIX", "from-env")
    monkeypatch.setenv("YAML_TEST_WATCH", str(tmp_path / "incoming"))
    monkeypatch.setenv("YAML_TEST_INTERVAL", "45")
    component = _component(tmp_path, PHOTOS, "photos")
    defs = build_defs_for_component(component)
    assert _keys(defs) == [f"yaml/photos/{c}" for c in ("h", "img", "kind", "rotated", "thumb", "w", "where")]
    graph = defs.resolve_asset_graph()
    assert {p.to_user_string() for p in graph.get(dg.AssetKey(["yaml", "photos", "kind"])).parent_keys} == {
        "yaml/photos/w", "yaml/photos/h"}
    sensors = {s.name: s for s in defs.get_repository_def().sensor_defs}
    assert sensors["yaml__photos_sensor"].minimum_interval_seconds == 45

    (table,) = component.tables
    assert table.spec.columns["rotated"].destination == out.as_uri()
    result = table.insert([{"img": str(p)} for p in SAMPLES[:2]], instance=instance)
    assert result.num_errors == 0
    made = files_under(out)
    assert len(made) == 2 and all(PIL.Image.open(f).size == PIL.Image.open(s).size[::-1]
                                  for f, s in zip(sorted(made, key=lambda f: PIL.Image.open(f).size),
                                                  sorted(SAMPLES[:2], key=lambda s: PIL.Image.open(s).size[::-1])))
    rows = table.select(table.w, table.h, table.kind, table["where"]).collect()  # a column named like a method
    assert sorted(rows["kind"]) == sorted(f"from-env:{'landscape' if w > h else 'portrait'}"
                                          for w, h in zip(rows["w"], rows["h"]))
    assert all(w.startswith(out.as_uri()) for w in rows["where"])


def test_a_yaml_view_is_declared_with_its_iterator_and_columns(pxt_home, tmp_path, udfs):
    component = _component(tmp_path, DOCS, "docs")
    defs = build_defs_for_component(component)
    keys = _keys(defs)
    assert "yaml/docs/doc" in keys and {"yaml/pages/pos", "yaml/pages/text", "yaml/pages/size"} <= set(keys)
    graph = defs.resolve_asset_graph()
    assert dg.AssetKey(["yaml", "docs", "doc"]) in graph.get(dg.AssetKey(["yaml", "pages", "text"])).parent_keys
    assert dg.AssetKey(["yaml", "pages", "text"]) in graph.get(dg.AssetKey(["yaml", "pages", "size"])).parent_keys
    assert [t.path for t in component.tables] == ["yaml/docs", "yaml/pages"]


@pytest.mark.parametrize("change, expected", [
    (("image.rotate", "image.spin"), "unknown function 'image.spin'; the image built-ins are: image.convert"),
    (("yaml_udfs.kind", "yaml_udfs.nope"), "cannot import function 'yaml_udfs.nope'"),
    (("{column: w}, {column: h}", "{column: w}, {column: depth}"), "unknown column 'depth'"),
])
def test_a_bad_yaml_column_shows_on_the_tables_assets_and_fails_their_runs(pxt_home, tmp_path, monkeypatch, udfs,
                                                                           change, expected):
    monkeypatch.setenv("YAML_TEST_DEST", str(tmp_path))
    text = PHOTOS.replace("pxt_assets.functions.image.rotate", "image.rotate").replace(*change)
    assert text != PHOTOS
    with pytest.warns(UserWarning, match="cannot be loaded"):
        defs = build_defs_for_component(_component(tmp_path, text, "bad"))
    # every declared column is still an asset (the graph keeps its shape), with the error as its description
    assert _keys(defs) == [f"yaml/photos/{c}" for c in ("h", "img", "kind", "rotated", "thumb", "w", "where")]
    node = defs.resolve_asset_graph().get(dg.AssetKey(["yaml", "photos", "thumb"]))
    assert node.description.startswith("Table 'yaml/photos' cannot be loaded:")
    assert expected in node.description
    assert ("column 'rotated'" if "spin" in change[1] else "column 'kind'") in node.description
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    failures = [e.step_failure_data.error.message for e in result.all_events if e.is_step_failure]
    assert not result.success and failures and "table 'yaml/photos' cannot be loaded" in failures[0]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _python(code: str, home: pathlib.Path, **extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIXELTABLE_", "PXT_", "DAGSTER_", "AWS_"))}
    env.update(PIXELTABLE_HOME=str(home), **extra)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


def test_importing_the_code_location_touches_no_file_folder_or_socket(tmp_path):
    home = tmp_path / "home"  # does not exist: the first folder anything would make
    code = """
        import sys
        seen = []
        def hook(event, args):
            if event in ("os.mkdir", "socket.connect", "sqlite3.connect") or (
                    event == "open" and isinstance(args[1], str) and any(m in args[1] for m in "wax+")):
                seen.append((event, str(args[0])[:120]))
        sys.addaudithook(hook)
        import pxt_assets.definitions
        print("import", seen)
        seen.clear()
        pxt_assets.definitions.defs()  # what Dagster does when it loads the location: this does make things
        print("load", sorted({e for e, _ in seen}))
    """
    done = _python(code, home)
    assert done.returncode == 0, done.stderr[-3000:]
    imported, loaded = done.stdout.strip().splitlines()[-2:]
    assert imported == "import []"
    assert "os.mkdir" in loaded and "sqlite3.connect" in loaded  # the hook sees them when they happen
    assert home.exists()


@pytest.mark.parametrize("endpoint", ["refuses", "never answers"])
def test_an_unreachable_bucket_shows_on_the_demo_assets_and_the_location_still_loads(tmp_path, endpoint):
    """The demo's destinations in a bucket whose endpoint refuses connections, or accepts them and never
    answers: the demo's assets carry the error (naming the column and the destination), a catalog table beside
    it loads, and the load gives up after PXT_LOAD_RETRY_BUDGET_S rather than the whole retry budget (or the
    SDK's read timeouts)."""
    home = tmp_path / "home"
    made = _python("""
        import pxt_assets as pxt
        pxt.create_dir("side")
        pxt.create_table("side/t", {"img": pxt.Image}).add_computed_column(w=pxt.get_table("side/t").img.width)
    """, home)
    assert made.returncode == 0, made.stderr[-3000:]
    code = """
        import dagster as dg
        from pxt_assets.definitions import defs
        d = defs()
        g = d.resolve_asset_graph()
        print(g.get(dg.AssetKey(["blob_storage_demo", "media", "thumbnail"])).description)
        print(sorted(k.to_user_string() for k in g.get_all_asset_keys()))
    """
    with socket.socket() as silent:  # the kernel completes the handshake; nothing ever reads or answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        port = silent.getsockname()[1] if endpoint == "never answers" else _closed_port()
        done = _python(code, home, PXT_DEMO_DEST="s3://demo-bucket/demo/", PXT_LOAD_RETRY_BUDGET_S="3",
                       AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ACCESS_KEY_ID="k",
                       AWS_SECRET_ACCESS_KEY="s", AWS_DEFAULT_REGION="us-east-1")
    assert done.returncode == 0, done.stderr[-3000:]
    description, keys = done.stdout.strip().splitlines()[-2:]
    assert description.startswith("Table 'blob_storage_demo/media' cannot be loaded:")
    assert "'rotated'" in description and "s3://demo-bucket/demo/rotated/" in description
    assert "PXT_LOAD_RETRY_BUDGET_S" in description
    if endpoint == "never answers":  # given up at the cap, not after botocore's 60 s read timeouts
        assert "no answer within 3 s" in description
    assert "'blob_storage_demo/media/serving_url'" in keys  # the cloud demo's columns, as declared
    assert "'side/t/w'" in keys
    assert "cannot be loaded" in done.stderr  # and said where the location loads


def test_dg_check_defs_and_dg_list_defs_pass_in_the_repository(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIXELTABLE_", "PXT_", "DAGSTER_"))}
    env.update(PIXELTABLE_HOME=str(tmp_path / "home"), PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    check = subprocess.run([str(BIN / "dg"), "check", "defs"], cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=300)
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-3000:]
    assert "All definitions loaded successfully" in check.stdout + check.stderr
    listed = subprocess.run([str(BIN / "dg"), "list", "defs", "--json"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=300)
    assert listed.returncode == 0, listed.stderr[-3000:]
    got = json.loads(listed.stdout[listed.stdout.index("{"):])
    assets = {a["asset_key"]: a for a in got["assets"]}
    assert sorted(assets) == [f"blob_storage_demo/media/{c}"
                              for c in ("flipped", "height", "rotated", "source_image", "thumbnail", "width")]
    assert assets["blob_storage_demo/media/rotated"]["dependency_keys"] == ["blob_storage_demo/media/source_image"]
    assert {j["name"] for j in got["jobs"]} >= {"blob_storage_demo__media_job", "blob_storage_demo__media__batch_job"}


# -- the code location over a defs folder of several tables (pxt_assets.definitions.build) --------------------
def _project(tmp_path: pathlib.Path, monkeypatch, tables: dict[str, str]) -> None:
    """A defs package of one folder per table, loaded by pxt_assets.definitions instead of pxt_assets.defs."""
    import pxt_assets.definitions as location

    name = f"yamlproj_{tmp_path.name[-12:].replace('-', '_')}"
    defs_dir = tmp_path / "src" / name / "defs"
    defs_dir.mkdir(parents=True)
    (defs_dir.parent / "__init__.py").write_text("")
    (defs_dir / "__init__.py").write_text("")
    for folder, text in tables.items():
        (defs_dir / folder).mkdir()
        (defs_dir / folder / "defs.yaml").write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    module = __import__(f"{name}.defs", fromlist=["defs"])
    monkeypatch.setattr(location, "_component_tree",
                        lambda: dg.ComponentTree.from_module(defs_module=module, project_root=tmp_path))


def _table_yaml(path: str, columns: str = "", extra: str = "") -> str:
    return ("type: pxt_assets.MediaTableComponent\nattributes:\n"
            f"  path: {path}\n  schema: {{img: Image}}\n  columns:{columns}\n{extra}\n")


WIDTH = "\n    w: {function: image.width, args: [{column: img}]}"


def test_several_yaml_tables_and_catalog_tables_make_one_location(pxt_home, tmp_path, monkeypatch, udfs):
    from pxt_assets import rowstore
    from pxt_assets.definitions import build

    out = tmp_path / "out"
    out.mkdir()
    _project(tmp_path, monkeypatch, {
        "a": _table_yaml("yaml/a", WIDTH),
        "b": _table_yaml("yaml/b", WIDTH + f"\n    r: {{function: image.rotate, args: [{{column: img}}, 90], "
                                          f"destination: '{out}'}}"),
        "nulls": _table_yaml("yaml/nulls"),  # `columns:` with nothing under it
        "unset": _table_yaml("yaml/unset", WIDTH.replace("}]}", "}], destination: \"{{ env('PXT_NO_SUCH_VAR') }}\"}")),
    })
    pxt.create_dir("cat")
    pxt.create_table("cat/t", {"img": pxt.Image}).add_computed_column(w=pxt.get_table("cat/t").img.width)
    pxt.create_dir("yaml")
    pxt.create_table("yaml/a", {"img": pxt.Image})  # the same path as a YAML table, other columns
    rowstore.for_settings(pxt.load_settings()).save_table_doc(  # and a corrupt entry at a YAML path
        "yaml/b", {"path": "yaml/b", "columns": [{"name": "img", "type": "NoSuchType"}]})
    with pytest.warns(UserWarning) as caught:
        defs, tables = build()
    said = " ".join(str(w.message) for w in caught)
    assert "'yaml/a' is declared in YAML and in the catalog with different columns" in said
    assert "catalog's entry for 'yaml/b' cannot be read" in said
    assert "table 'yaml/unset' cannot be loaded" in said and "PXT_NO_SUCH_VAR" in said
    assert sorted(t.path for t in tables) == ["cat/t", "yaml/a", "yaml/b", "yaml/nulls"]
    repo = defs.get_repository_def()
    assert [s.name for s in repo.sensor_defs] == ["pxt_assets_automation_sensor"]  # once, for every table
    keys = _keys(defs)
    assert {"yaml/a/w", "yaml/b/r", "yaml/nulls/img", "cat/t/w", "yaml/unset/img", "yaml/unset/w"} <= set(keys)
    graph = defs.resolve_asset_graph()
    assert "PXT_NO_SUCH_VAR" in graph.get(dg.AssetKey(["yaml", "unset", "w"])).description
    assert graph.get(dg.AssetKey(["yaml", "b", "r"])).description.startswith("yaml/b.r = ")  # not the corrupt one


def test_a_failed_table_keeps_its_jobs_and_their_runs_fail_saying_why(pxt_home, tmp_path, monkeypatch):
    from pxt_assets.definitions import build

    missing = tmp_path / "no_such_folder"
    _project(tmp_path, monkeypatch, {
        "t": _table_yaml("yaml/t", WIDTH + f"\n    r: {{function: image.rotate, args: [{{column: img}}, 90], "
                                           f"destination: '{missing}'}}",
                         "  views:\n    - path: yaml/v\n      iterator: {function: document.document_splitter, "
                         "args: [{column: img}]}"),
    })
    with pytest.warns(UserWarning, match="cannot be loaded"):
        defs, tables = build()
    assert tables == []
    assert {"yaml/t/img", "yaml/t/w", "yaml/t/r", "yaml/v/pos", "yaml/v/text"} <= set(_keys(defs))
    view_node = defs.resolve_asset_graph().get(dg.AssetKey(["yaml", "v", "text"]))
    assert "its base table 'yaml/t' cannot be loaded" in view_node.description
    instance = dg.DagsterInstance.ephemeral()
    insert = defs.resolve_job_def("yaml__t_job")
    result = insert.execute_in_process(run_config={"ops": {"yaml__t__insert": {"config": {"files": [str(SAMPLES[0])]}}}},
                                       instance=instance, raise_on_error=False)
    failures = [e.step_failure_data.error.message for e in result.all_events if e.is_step_failure]
    assert not result.success and "table 'yaml/t' cannot be loaded" in failures[0]
    assert "Column 'r'" in failures[0] and str(missing) in failures[0]
    instance.add_dynamic_partitions("yaml__t__batches", ["b1"])
    batch = defs.resolve_job_def("yaml__t__batch_job").execute_in_process(
        instance=instance, partition_key="b1", raise_on_error=False)
    assert not batch.success


def test_a_view_that_cannot_be_built_leaves_its_base_table_alone(pxt_home, tmp_path, monkeypatch):
    from pxt_assets.definitions import build

    _project(tmp_path, monkeypatch, {"t": _table_yaml(
        "yaml/t", WIDTH, "  views:\n    - path: yaml/v\n      iterator: {function: document.document_splitter, "
                         "args: [{column: img}]}")})  # an Image is not a Document
    with pytest.warns(UserWarning, match="table 'yaml/v' cannot be loaded"):
        defs, tables = build()
    assert [t.path for t in tables] == ["yaml/t"]
    graph = defs.resolve_asset_graph()
    assert graph.get(dg.AssetKey(["yaml", "t", "w"])).description.startswith("yaml/t.w = ")
    assert "cannot be loaded" in graph.get(dg.AssetKey(["yaml", "v", "pos"])).description


def test_mappings_are_values_unless_they_are_calls_and_argument_names_cannot_be_columns(pxt_home, tmp_path, udfs):
    (udfs / "yaml_udfs.py").write_text(UDFS + textwrap.dedent('''
        @pxt.udf
        def tool(w: int, spec: dict) -> str:
            return f"{spec['function']['name']}:{w}"
    '''))
    sys.modules.pop("yaml_udfs", None)
    text = textwrap.dedent("""
        type: pxt_assets.MediaTableComponent
        attributes:
          path: yaml/tools
          schema: {img: Image}
          columns:
            w: {function: image.width, args: [{column: img}]}
            t:
              function: yaml_udfs.tool
              args: [{column: w}, {type: function, function: {name: get_weather}}]
    """)
    component = _component(tmp_path, text, "tools")
    build_defs_for_component(component)
    (table,) = component.tables
    assert table.spec.columns["t"].expr.to_dict()["args"][1] == {"lit": {"type": "function",
                                                                          "function": {"name": "get_weather"}}}
    bad = _component(tmp_path, text.replace("    t:\n", "    destination:\n"), "reserved")
    with pytest.warns(UserWarning, match="'destination' cannot name a column"):
        defs = build_defs_for_component(bad)
    assert "column 'destination'" in defs.resolve_asset_graph().get(dg.AssetKey(["yaml", "tools", "w"])).description


def test_a_run_worker_or_step_process_builds_the_location_once_until_the_catalog_changes(pxt_home, monkeypatch):
    """Dagster rebuilds a location for every job subset it reconstructs in a run's or a step's process: there
    pxt_assets.definitions builds it once, and again only when what it is built from changed (here: a catalog
    table created). A code server's load (or a script's defs()) always builds anew."""
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    import pxt_assets.definitions as location
    from pxt_assets.dagster_compat import DefinitionsLoadContext, DefinitionsLoadType

    monkeypatch.setattr(DefinitionsLoadContext, "_instance", None)  # whatever set it before (and after) this test
    monkeypatch.setattr(location, "_BUILT", {})
    assert location.defs() is not location.defs()  # not in a Dagster load: each call builds
    calls = []
    build = location.build
    monkeypatch.setattr(location, "build", lambda: calls.append(1) or build())
    DefinitionsLoadContext.set(DefinitionsLoadContext(load_type=DefinitionsLoadType.INITIALIZATION))
    loaded = location.defs()  # a code server's load (or reload) builds
    assert location.defs() is not loaded and len(calls) == 2
    repo = ReconstructableRepository.for_module("pxt_assets.definitions", "defs", working_directory=os.getcwd())
    first, again = repo.get_definition(), repo.get_definition()  # as a step process's plan, then its execution
    assert first is again and len(calls) == 2  # the reconstructions take what the load built
    assert "blob_storage_demo/media/rotated" in {k.to_user_string() for k in first.asset_graph.get_all_asset_keys()}
    pxt.create_dir("cat")
    pxt.create_table("cat/t", {"img": pxt.Image})
    after = repo.get_definition()
    assert after is not first and len(calls) == 3
    assert "cat/t/img" in {k.to_user_string() for k in after.asset_graph.get_all_asset_keys()}
