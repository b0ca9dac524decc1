"""User functions in computed columns and queries: typed, batched and async UDFs, UDFs that return media,
UDFs rebuilt by other processes (by import path, or from the catalog for a script's __main__), code
versions and staleness, errors, JSON paths."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import subprocess
import sys
import textwrap
import threading

import boto3
import dagster as dg
import PIL.Image
import pytest

import pxt_assets as pxt
from pxt_assets.instance import write_config
from pxt_assets_tests.conftest import SAMPLES, files_under, stored_records, unique_bucket, write_module

REPO = pathlib.Path(__file__).resolve().parents[1]


# -- UDFs of this module (importable by path, as a user's module would be) ----------------------------------


@pxt.udf
def label(w: int, h: int) -> str:
    return f"{w}x{h}"


@pxt.udf
def area(w: int, h: int | None = None) -> float:
    return float(w * (h if h is not None else w))


@pxt.udf
def summary(img: PIL.Image.Image) -> pxt.Json:
    return {"size": [img.width, img.height], "boxes": [{"x": 1, "y": 2}, {"x": img.width // 2, "y": 3}],
            "mode": img.mode}


BATCHES: list[int] = []


@pxt.udf(batch_size=2)
def widths(imgs: pxt.Batch[PIL.Image.Image], *, plus: int = 0) -> pxt.Batch[int]:
    BATCHES.append(len(imgs))
    return [img.width + plus for img in imgs]


class _InFlight:
    def __init__(self) -> None:
        self.now = self.most = self.calls = 0
        self.lock = threading.Lock()

    def enter(self) -> None:
        with self.lock:
            self.now += 1
            self.calls += 1
            self.most = max(self.most, self.now)

    def leave(self) -> None:
        with self.lock:
            self.now -= 1


IN_FLIGHT = _InFlight()
BOUNDED = _InFlight()


@pxt.udf
async def slow_double(n: int) -> int:
    IN_FLIGHT.enter()
    try:
        await asyncio.sleep(0.3)
        return n * 2
    finally:
        IN_FLIGHT.leave()


@pxt.udf(max_concurrency=3)
async def slow_bounded(n: int) -> int:
    BOUNDED.enter()
    try:
        await asyncio.sleep(0.05)
        return n + 1
    finally:
        BOUNDED.leave()


@pxt.udf
def grayscale(img: PIL.Image.Image) -> PIL.Image.Image:
    return img.convert("L")


@pxt.udf
def fails_on_wide(img: PIL.Image.Image) -> int:
    if img.width > 500:
        raise ValueError(f"too wide: {img.width}")
    return img.width


@pxt.udf
def always_fails(img: PIL.Image.Image) -> int:
    raise RuntimeError("model not loaded")


@pxt.udf
def wrong_result(img: PIL.Image.Image) -> int:
    return "not a number"  # type: ignore[return-value]


@pxt.udf
def report(w: int, h: int) -> pxt.Document:
    """Writes a text file and returns its path: a Document the UDF made."""
    import tempfile

    fd, path = tempfile.mkstemp(suffix=".txt")
    with os.fdopen(fd, "w") as f:
        f.write(f"width {w}, height {h}\n")
    return path


@pytest.fixture
def photos(pxt_home, instance):
    pxt.create_dir("udf")
    t = pxt.create_table("udf/photos", {"img": pxt.Image, "name": pxt.String})
    t.add_computed_column(w=t.img.width)
    t.add_computed_column(h=t.img.height)
    return t


def _insert_samples(t, instance, n: int | None = None) -> pxt.InsertResult:
    rows = [{"img": str(p), "name": p.stem} for p in SAMPLES]
    return t.insert(rows[:n] if n else rows, instance=instance)


def test_typed_udfs_in_columns_select_and_where(photos, instance):
    t = photos
    t.add_computed_column(size=label(t.w, t.h))
    t.add_computed_column(square=area(t.w))
    t.add_computed_column(info=summary(t.img))
    assert t.spec.columns["size"].col_type == pxt.String and t.spec.columns["info"].col_type == pxt.Json
    assert t.spec.columns["square"].col_type == pxt.Float
    _insert_samples(t, instance)
    sizes = {PIL.Image.open(p).size for p in SAMPLES}

    got = t.select(t.size, t.square, area(t.w, t.h), label(t.h, 1)).collect()
    assert set(got["size"]) == {f"{w}x{h}" for w, h in sizes}
    assert set(got["square"]) == {float(w * w) for w, _ in sizes}
    assert list(got.columns) == ["size", "square", "area", "label"]  # a call is named by its UDF, as Pixeltable
    assert set(got["area"]) == {float(w * h) for w, h in sizes}
    assert set(got["label"]) == {f"{h}x1" for _, h in sizes}

    # JSON paths in select, where, and as a UDF's argument
    got = t.select(t.name, t.info.size[0], t.info.boxes[1]["x"], t.info.mode, t.info.nothing.here).collect().to_pandas()
    by_name = {r["name"]: r for r in got.to_dict("records")}
    for p in SAMPLES:
        w, h = PIL.Image.open(p).size
        row = by_name[p.stem]
        assert row["info_size0"] == w and row["info_boxes1_x"] == w // 2 and row["info_mode"] == "RGB"
        assert row["info_nothing_here"] is None
    widest = max(w for w, _ in sizes)
    assert t.where(t.info.size[0] == widest).count() == sum(1 for w, _ in sizes if w == widest)
    assert t.where(t.info.boxes[0]["x"] == 1).count() == len(SAMPLES)
    assert set(t.select(label(t.info.size[0], t.info.size[1])).collect().to_pandas().iloc[:, 0]) == {f"{w}x{h}" for w, h in sizes}
    assert repr(t.info.boxes[1]["x"]) == "info.boxes[1].x" and repr(t.info.size[0:1]) == "info.size[0:1]"
    assert all(isinstance(v, list) and len(v) == 1 for v in t.select(t.info.size[0:1]).collect().to_pandas().iloc[:, 0])

    # Json columns built from lists and dicts that hold expressions (Pixeltable's messages=[...] idiom)
    t.add_computed_column(msg=[{"role": "user", "content": t.name}, {"dims": [t.w, t.h]}])
    msgs = {m[0]["content"]: m[1]["dims"] for m in t.select(t.msg).collect()["msg"]}
    assert msgs == {p.stem: list(PIL.Image.open(p).size) for p in SAMPLES}

    # called on plain values, a UDF is the function itself (handy in a unit test of the model code)
    assert label(3, 4) == "3x4"


def test_batched_udf_gets_lists_of_at_most_batch_size(photos, instance):
    t = photos
    BATCHES.clear()
    t.add_computed_column(wb=widths(t.img, plus=1))
    _insert_samples(t, instance)
    assert sorted(BATCHES) == [1, 2]  # three rows in batches of at most two
    got = t.select(t.w, t.wb).collect()
    assert list(got["wb"]) == [w + 1 for w in got["w"]]
    with pytest.raises(pxt.ColumnTypeError, match=r"widths.*'plus'.*constant"):  # at the call, as Pixeltable
        t.add_computed_column(bad=widths(t.img, plus=t.w))


def test_async_udf_calls_run_concurrently_and_bounded(pxt_home, instance):
    pxt.create_dir("udf")
    t = pxt.create_table("udf/numbers", {"n": pxt.Int})
    t.add_computed_column(doubled=slow_double(t.n))
    t.add_computed_column(plus=slow_bounded(t.n))
    IN_FLIGHT.most = IN_FLIGHT.calls = BOUNDED.most = BOUNDED.calls = 0
    t.insert([{"n": i} for i in range(40)], instance=instance)
    got = t.select(t.n, t.doubled, t.plus).collect()
    assert list(got["doubled"]) == [2 * n for n in got["n"]] and list(got["plus"]) == [n + 1 for n in got["n"]]
    assert IN_FLIGHT.calls == 40 and BOUNDED.calls == 40
    # 40 calls of 0.3 s: all in flight together (default limit 16 per process), so about three rounds
    assert IN_FLIGHT.most == pxt.functions.udf.DEFAULT_ASYNC_CONCURRENCY
    assert BOUNDED.most == 3  # the decorator's max_concurrency


def test_udf_images_and_files_go_through_destination_precedence(photos, instance, tmp_path, s3_env):
    t = photos
    local = tmp_path / "gray"
    local.mkdir()
    bucket = unique_bucket("udf")
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=bucket)
    t.add_computed_column(gray=grayscale(t.img), destination=str(local))
    t.add_computed_column(gray_s3=grayscale(t.img), destination=f"s3://{bucket}/gray/")
    t.add_computed_column(notes=report(t.w, t.h), destination=f"s3://{bucket}/notes/")
    assert t.spec.columns["notes"].col_type == pxt.Document
    result = _insert_samples(t, instance)
    assert result.num_errors == 0

    files = files_under(local)
    assert len(files) == len(SAMPLES)
    assert all(PIL.Image.open(f).mode == "L" for f in files)
    recs = stored_records(t, "gray_s3")
    assert all(r["value"].startswith(f"s3://{bucket}/gray/") and r["destination"] == f"s3://{bucket}/gray/"
               and r["owned"] for r in recs)
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    assert len([k for k in keys if k.startswith("gray/")]) == len(SAMPLES)
    notes = [k for k in keys if k.startswith("notes/")]
    assert len(notes) == len(SAMPLES) and all(k.endswith(".txt") for k in notes)
    bodies = {s3.get_object(Bucket=bucket, Key=k)["Body"].read().decode() for k in notes}
    assert bodies == {f"width {w}, height {h}\n" for w, h in (PIL.Image.open(p).size for p in SAMPLES)}

    # write-through cache: reading the S3 images back downloads nothing
    from pxt_assets.io_managers import MediaIOManager

    cache = MediaIOManager().reader().cache
    misses, downloaded = cache.stats.misses, cache.stats.bytes_downloaded
    imgs = t.select(t.gray_s3).collect()["gray_s3"]
    assert len(imgs) == len(SAMPLES) and all(isinstance(i, PIL.Image.Image) and i.mode == "L" for i in imgs)
    assert (cache.stats.misses, cache.stats.bytes_downloaded) == (misses, downloaded)

    # deterministic names: a re-run of the batch writes the same objects, and nothing else
    job = t.definitions().resolve_job_def(f"{t.spec.slug}__batch_job")
    assert job.execute_in_process(instance=instance, partition_key=result.batch).success
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]) == keys
    assert files_under(local) == files


def test_udf_errors_are_row_errors_naming_column_udf_and_exception(photos, instance):
    t = photos
    t.add_computed_column(narrow=fails_on_wide(t.img))
    t.add_computed_column(broken=always_fails(t.img))
    t.add_computed_column(bad_type=wrong_result(t.img))
    t.add_computed_column(after=label(t.w, t.h))  # reads nothing that failed: computed for every row
    t.add_computed_column(downstream=label(t.broken, t.h))
    result = _insert_samples(t, instance)
    assert result.num_rows == len(SAMPLES) and result.num_errors == len(SAMPLES)

    got = t.select(t.w, t.narrow, t.narrow.errormsg, t.narrow.errortype, t.broken.errormsg, t.broken.errortype,
                   t.bad_type.errormsg, t.after, t.downstream.errortype).collect().to_pandas()
    for r in got.to_dict("records"):
        if r["w"] > 500:
            assert r["narrow_errormsg"] == (f"narrow: UDF fails_on_wide ({__name__}:fails_on_wide) raised "
                                            f"ValueError: too wide: {r['w']}")
            assert r["narrow_errortype"] == "udf_error" and pd_missing(r["narrow"])
        else:
            assert r["narrow"] == r["w"] and r["narrow_errormsg"] is None
        assert r["broken_errormsg"] == (f"broken: UDF always_fails ({__name__}:always_fails) raised "
                                        "RuntimeError: model not loaded")
        assert r["broken_errortype"] == "udf_error"
        assert "returned str 'not a number', expected pxt.Int" in r["bad_type_errormsg"]
        assert r["after"].startswith(f"{r['w']}x")
        assert r["downstream_errortype"] == "upstream_error"
    assert t.where(t.broken.errortype == "udf_error").count() == len(SAMPLES)


def pd_missing(v) -> bool:
    return v is None or v != v


def test_missing_hints_raise_at_definition_and_type_errors_at_the_call(photos):
    """As Pixeltable: an invalid UDF raises where it is defined (`@pxt.udf`), a call whose arguments do not fit
    raises where it is written (`label(t.img, t.h)`), before any column or query uses it."""
    t = photos

    def no_hint(img) -> int:
        return 1

    def no_return(img: PIL.Image.Image):
        return 1

    with pytest.raises(TypeError, match=r"UDF .*no_hint: Cannot infer pixeltable type for parameter 'img': it has no type hint"):
        pxt.udf(no_hint)
    with pytest.raises(TypeError, match=r"UDF .*no_return: Cannot infer pixeltable return type: it has no return type hint"):
        pxt.udf(no_return)
    with pytest.raises(pxt.ColumnTypeError, match=r"UDF label .*parameter 'w' expects pxt.Int, got pxt.Image"):
        label(t.img, t.h)
    with pytest.raises(TypeError, match=r"UDF label .*'h' expects pxt.Int, got the constant 'tall'"):
        label(t.w, "tall")
    with pytest.raises(pxt.ColumnTypeError, match=r"UDF grayscale .*expects pxt.Image, got pxt.String"):
        grayscale(t.name)
    with pytest.raises(TypeError, match=r"UDF label: missing a required argument: 'h'"):
        label(t.w)
    with pytest.raises(TypeError, match=r"Argument 2 in call to '.*\.label' is not a valid Pixeltable expression"):
        label(t.w, bool)
    assert list(t.spec.columns) == ["img", "name", "w", "h"]

    def batched_without_batch(imgs: list) -> list:
        return imgs

    with pytest.raises(TypeError, match="batched UDF takes pxt.Batch"):
        pxt.udf(batch_size=4)(batched_without_batch)


# -- UDFs in other processes -----------------------------------------------------------------------------


def _run(args: list[str], home: pathlib.Path, dagster_home: pathlib.Path, pythonpath: pathlib.Path | None = None,
         cwd: pathlib.Path = REPO) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIXELTABLE_", "PXT_", "DAGSTER_"))}
    env.update(PIXELTABLE_HOME=str(home), DAGSTER_HOME=str(dagster_home))
    paths = [str(REPO)] + ([str(pythonpath)] if pythonpath else [])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{args}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr[-4000:]}"
    return done


UDF_MODULE_V1 = '''
import PIL.Image
import pxt_assets as pxt


@pxt.udf
def tag(w: int, h: int) -> str:
    return f"landscape {w}" if w > h else f"portrait {h}"
'''

UDF_MODULE_V2 = UDF_MODULE_V1.replace('f"landscape {w}"', 'f"wide {w}"')


@pytest.fixture
def dagster_home(tmp_path, monkeypatch) -> pathlib.Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    write_config(home)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def _module(tmp_path, monkeypatch, source: str, name: str = "my_udfs") -> pathlib.Path:
    return write_module(tmp_path, monkeypatch, name, source)


def test_a_udf_module_is_rebuilt_by_other_processes_and_a_changed_source_marks_the_column_stale(
        pxt_home, dagster_home, tmp_path, monkeypatch):
    folder = _module(tmp_path, monkeypatch, UDF_MODULE_V1)
    import my_udfs

    pxt.create_dir("remote")
    t = pxt.create_table("remote/photos", {"img": pxt.Image})
    t.add_computed_column(w=t.img.width)
    t.add_computed_column(h=t.img.height)
    t.add_computed_column(kind=my_udfs.tag(t.w, t.h))
    first = t.insert([{"img": str(p)} for p in SAMPLES[:2]])
    doc = json.dumps(t._doc())
    assert '"ref": "my_udfs:tag"' in doc and '"pickle"' not in doc  # importable: recorded by path only

    # a second process (a notebook, a worker) inserts: it imports my_udfs:tag to compute the column
    code = ("import pxt_assets as pxt; t = pxt.get_table('remote/photos'); "
            f"t.insert([{{'img': {str(SAMPLES[2])!r}}}]); "
            "print(sorted(t.select(t.kind).collect()['kind']))")
    done = _run([sys.executable, "-c", code], pxt_home, dagster_home, folder)
    expected = sorted(f"landscape {w}" if w > h else f"portrait {h}" for w, h in (PIL.Image.open(p).size for p in SAMPLES))
    assert done.stdout.strip().splitlines()[-1] == str(expected)

    # the code location (dagster dev, dagster job execute) has an asset per UDF column, with its code version
    code = textwrap.dedent("""
        from pxt_assets.definitions import defs
        defs = defs()
        graph = defs.resolve_asset_graph()
        node = graph.get(__import__('dagster').AssetKey(['remote', 'photos', 'kind']))
        print(node.code_version, sorted(k.to_user_string() for k in node.parent_keys))
    """)
    done = _run([sys.executable, "-c", code], pxt_home, dagster_home, folder)
    version_v1, parents = done.stdout.strip().splitlines()[-1].split(" ", 1)
    assert parents == "['remote/photos/h', 'remote/photos/w']"

    # the user edits the function: a new code version, the UI shows the column stale (its batches only)
    (folder / "my_udfs.py").write_text(UDF_MODULE_V2)
    code = textwrap.dedent(f"""
        import dagster as dg
        from dagster._core.definitions.data_version import CachingStaleStatusResolver
        from dagster._core.loader import LoadingContextForTest
        from pxt_assets.definitions import defs
        defs = defs()
        graph = defs.resolve_asset_graph()
        instance = dg.DagsterInstance.get()
        # what the UI's asset graph asks (WorkspaceRequestContext.stale_status_loader)
        resolver = CachingStaleStatusResolver(instance, graph, LoadingContextForTest(instance))
        key = lambda c: dg.AssetKey(['remote', 'photos', c])
        print(graph.get(key('kind')).code_version)
        for col in ('kind', 'w'):
            print(col, resolver.get_status(key(col), {first.batch!r}).value)
    """)
    done = _run([sys.executable, "-c", code], pxt_home, dagster_home, folder)
    lines = done.stdout.strip().splitlines()[-3:]
    assert lines[0] != version_v1
    assert lines[1:] == ["kind STALE", "w FRESH"]

    # materializing the stale column again (`dagster job execute`, the UI) recomputes only its rows
    code = textwrap.dedent(f"""
        import dagster as dg
        from pxt_assets.definitions import defs
        defs = defs()
        instance = dg.DagsterInstance.get()
        job = defs.resolve_job_def('remote__photos__batch_job')
        result = job.execute_in_process(instance=instance, partition_key={first.batch!r})
        print([e.message for e in instance.all_logs(result.run_id) if 'skipped' in (e.message or '')])
        import pxt_assets as pxt
        t = pxt.get_table('remote/photos')
        print(sorted(t.select(t.kind).collect()['kind']))
    """)
    done = _run([sys.executable, "-c", code], pxt_home, dagster_home, folder)
    *_, log_line, kinds = done.stdout.strip().splitlines()
    assert "remote/photos.kind: added 2 column values with 0 errors; skipped 0 unchanged rows" in log_line
    assert "remote/photos.w: added 0 column values with 0 errors; skipped 2 unchanged rows" in log_line
    assert "remote/photos.h: added 0 column values with 0 errors; skipped 2 unchanged rows" in log_line
    new = {f"wide {w}" if w > h else f"portrait {h}" for w, h in (PIL.Image.open(p).size for p in SAMPLES[:2])}
    assert new <= set(eval(kinds))  # noqa: S307 - our own printed list


MAIN_SCRIPT = '''
import sys
import PIL.Image
import pxt_assets as pxt

FACTOR = 3  # a global of __main__: stored with the function


@pxt.udf
def secret(w: int) -> str:
    return f"w*{FACTOR}={w * FACTOR}"


@pxt.udf(batch_size=4)
def shades(imgs: pxt.Batch[PIL.Image.Image]) -> pxt.Batch[PIL.Image.Image]:
    return [img.convert("L").point(lambda v: 255 - v) for img in imgs]


pxt.create_dir("script")
t = pxt.create_table("script/photos", {"img": pxt.Image})
t.add_computed_column(w=t.img.width)
t.add_computed_column(code=secret(t.w))
t.add_computed_column(inverted=shades(t.img), destination=sys.argv[1])
print("defined")
'''


def test_a_udf_of_a_scripts_main_is_stored_with_the_table_and_computed_by_a_later_process(
        pxt_home, dagster_home, tmp_path):
    script = tmp_path / "script_dir" / "make_table.py"
    script.parent.mkdir()
    script.write_text(MAIN_SCRIPT)
    out = tmp_path / "inverted"
    out.mkdir()
    done = _run([sys.executable, str(script), str(out)], pxt_home, dagster_home, cwd=script.parent)
    assert "defined" in done.stdout

    # another process, elsewhere, with no access to the script: the catalog has the functions
    code = ("import pxt_assets as pxt; t = pxt.get_table('script/photos'); "
            f"r = t.insert([{{'img': p}} for p in {[str(p) for p in SAMPLES]!r}]); print(r.num_errors); "
            "print(sorted(t.select(t.code).collect()['code']))")
    done = _run([sys.executable, "-c", code], pxt_home, dagster_home, cwd=tmp_path)
    errors, codes = done.stdout.strip().splitlines()[-2:]
    assert errors == "0"
    assert codes == str(sorted(f"w*3={PIL.Image.open(p).width * 3}" for p in SAMPLES))
    made = files_under(out)
    assert len(made) == len(SAMPLES) and all(PIL.Image.open(f).mode == "L" for f in made)

    # and the code location loads it as assets, one per column
    code = ("from pxt_assets.definitions import defs; defs = defs(); "
            "print(sorted(k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys() "
            "if k.path[0] == 'script'))")
    done = _run([sys.executable, "-c", code], pxt_home, dagster_home, cwd=tmp_path)
    assert done.stdout.strip().splitlines()[-1] == str(
        ["script/photos/code", "script/photos/img", "script/photos/inverted", "script/photos/w"])


def test_udf_columns_in_the_insert_job_run_by_dagster_job_execute(pxt_home, dagster_home, tmp_path, monkeypatch):
    folder = _module(tmp_path, monkeypatch, UDF_MODULE_V1, name="job_udfs")
    import job_udfs

    pxt.create_dir("jobs")
    t = pxt.create_table("jobs/photos", {"img": pxt.Image})
    t.add_computed_column(w=t.img.width)
    t.add_computed_column(h=t.img.height)
    t.add_computed_column(kind=job_udfs.tag(t.w, t.h))
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps({"ops": {"jobs__photos__insert": {"config": {"files": [str(p) for p in SAMPLES]}}}}))
    _run([str(pathlib.Path(sys.executable).parent / "dagster"), "job", "execute", "-m", "pxt_assets.definitions",
          "-j", "jobs__photos_job", "-c", str(config)], pxt_home, dagster_home, folder)
    assert t.count() == len(SAMPLES)
    assert t.where(t.kind.errortype != None).count() == 0  # noqa: E711
    assert {k.split()[0] for k in t.select(t.kind).collect()["kind"]} <= {"landscape", "portrait"}


def test_udf_definition_keeps_its_shape_in_repr_and_stored_form(photos):
    t = photos
    t.add_computed_column(size=label(t.w, h=t.h))
    assert repr(t.spec.columns["size"].expr) == "label(w, h)"
    d = t.spec.columns["size"].expr.to_dict()
    assert d["udf"]["ref"] == f"{__name__}:label" and d["udf"]["signature"]["returns"] == "String"
    again = pxt.get_table("udf/photos")
    assert again.spec.columns["size"].expr.code_version() == t.spec.columns["size"].expr.code_version()
    assert dg.AssetKey(["udf", "photos", "size"]) in again.definitions().resolve_asset_graph().get_all_asset_keys()


def test_batched_and_async_udfs_in_a_query_are_called_in_batches_and_concurrently(pxt_home, instance):
    pxt.create_dir("udf")
    t = pxt.create_table("udf/q", {"img": pxt.Image, "n": pxt.Int})
    t.insert([{"img": str(SAMPLES[i % len(SAMPLES)]), "n": i} for i in range(5)], instance=instance)
    BATCHES.clear()
    IN_FLIGHT.most = IN_FLIGHT.calls = 0
    got = t.select(t.n, widths(t.img), slow_double(t.n)).collect().to_pandas()
    assert sorted(BATCHES) == [1, 2, 2]
    assert IN_FLIGHT.calls == 5 and IN_FLIGHT.most == 5
    assert list(got.iloc[:, 2]) == [2 * n for n in got["n"]]
    assert list(got.iloc[:, 1]) == [PIL.Image.open(SAMPLES[n % len(SAMPLES)]).width for n in got["n"]]


@pxt.udf(batch_size=4)
def scores(ns: pxt.Batch[int]) -> pxt.Batch[float]:
    import numpy as np

    return [np.array([n, 1.0]) if n == 1 else np.float64(n / 2) for n in ns]  # an array is not a Float


@pxt.udf
def with_nan(n: int) -> pxt.Json:
    return {"score": float("nan") if n == 2 else n, "text": "a\x00b" if n == 3 else "ok"}


@pxt.udf
def pop_key(d: pxt.Json) -> int:
    return d.pop("score")


@pxt.udf
def needs_value(n: int) -> str:
    return f"got {n}"


def test_values_a_column_cannot_hold_are_row_errors_and_stored_values_are_copies(pxt_home, instance):
    pxt.create_dir("udf")
    t = pxt.create_table("udf/vals", {"n": pxt.Int})
    t.add_computed_column(s=scores(t.n))
    t.add_computed_column(j=with_nan(t.n))
    t.add_computed_column(popped=pop_key(t.j))  # changes its argument: the stored `j` must not change
    t.add_computed_column(maybe=needs_value(t.n))
    result = t.insert([{"n": n} for n in (0, 1, 2, 3)] + [{}], instance=instance)
    assert result.num_rows == 5
    got = {r["n"] if r["n"] == r["n"] else None: r for r in
           t.select(t.n, t.s, t.s.errortype, t.s.errormsg, t.j, t.j.errormsg, t.popped, t.maybe).collect().to_pandas()
           .to_dict("records")}
    assert got[0]["s"] == 0.0 and got[2]["s"] == 1.0 and got[1]["s_errortype"] == "udf_error"
    assert got[1]["s_errormsg"].startswith(f"s: UDF scores ({__name__}:scores) ")
    assert got[0]["j"] == {"score": 0, "text": "ok"} and got[0]["popped"] == 0
    assert "not JSON data" in got[2]["j_errormsg"] and "not JSON data" in got[3]["j_errormsg"]
    # a parameter that does not allow None is not called with None: the value is None, not an error
    assert got[None]["maybe"] is None and got[0]["maybe"] == "got 0"


def first_of(values: list) -> int:
    return values[0]


def test_expressions_inside_tuples_and_repeated_calls(photos, instance):
    t = photos
    IN_FLIGHT.calls = 0
    t.add_computed_column(pair=[slow_double(t.w), slow_double(t.w)])  # two calls
    c = slow_double(t.w)
    t.add_computed_column(twice=[c, c])  # one call, used twice
    t.add_computed_column(dims=summary(t.img).size)
    t.add_computed_column(tup=summary(t.img)["boxes"])
    t.add_computed_column(both=label(*(t.w, t.h)))
    t.add_computed_column(nested=pxt.udf(batch_size=None)(first_of)((t.w, t.h)))
    _insert_samples(t, instance)
    assert IN_FLIGHT.calls == 3 * len(SAMPLES)  # `[c, c]` calls once per row
    got = t.select(t.w, t.h, t.twice, t.pair, t.dims, t.both, t.nested).collect()
    for r in got:
        assert r["twice"] == [2 * r["w"]] * 2 and r["pair"] == [2 * r["w"]] * 2
        assert r["dims"] == [r["w"], r["h"]] and r["both"] == f"{r['w']}x{r['h']}" and r["nested"] == r["w"]
    assert repr(t.dims[1:]) == "dims[1:]" and repr(t.dims[::2]) == "dims[::2]" and repr(t.dims[0:1]) == "dims[0:1]"
    with pytest.raises(pxt.SpecError, match=r"Column 'bad': a Json column cannot hold media"):
        t.add_computed_column(bad=[{"type": "image_url", "image_url": t.img}])


def test_a_notebook_udf_that_cannot_be_stored_is_refused_when_the_column_is_defined(photos):
    t = photos
    lock = threading.Lock()

    @pxt.udf
    def guarded(w: int) -> int:
        with lock:
            return w

    with pytest.raises(pxt.SpecError, match=r"Column 'g': UDF .*guarded cannot be stored with the table"):
        t.add_computed_column(g=guarded(t.w))
    assert "g" not in t.spec.columns and "g" not in pxt.get_table("udf/photos").spec.columns


def test_code_versions_are_the_same_in_every_process_without_source():
    code = ("from pxt_assets.functions.udf import _source_version\n"
            "ns = {}\nexec('def f(x):\\n    return {1, 2, 3}, (lambda y: y + x), frozenset({\"a\", \"b\"})', ns)\n"
            "print(_source_version(ns['f']))")
    versions = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)}
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        versions.add(done.stdout.strip())
    assert len(versions) == 1
