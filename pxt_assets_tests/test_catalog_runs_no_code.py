"""The catalog runs no code by itself (issue #26): listing, getting, showing a table and loading the
definitions import no module a catalog entry names and unpickle nothing; computing the column is refused,
naming the setting, when the entry names a module that is not the project's own or carries a pickle on a
shared database; a pickled UDF over 1 MB is refused at definition, naming the global that made it large."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap

import pytest

import pxt_assets as pxt
from pxt_assets import rowstore
from pxt_assets.config import load_settings
from pxt_assets.functions.udf import UDFDefinitionError
from pxt_assets_tests.conftest import write_module
from pxt_assets_tests.emulators import REPO

USER_MODULE = '''
import pxt_assets as pxt

@pxt.udf
def double(n: int) -> int:
    return n * 2
'''


def _child(code: str, pythonpath: str | None = None, **env_extra: str | None) -> subprocess.CompletedProcess:
    """Another process on the same home and database (`env_extra`: variables set, or unset with None)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "PXT_"))}
    env["DAGSTER_HOME"] = os.path.join(os.environ["PIXELTABLE_HOME"], "child_dagster")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([pythonpath] if pythonpath else []))
    env.update({k: v for k, v in env_extra.items() if v is not None})
    for k in [k for k, v in env_extra.items() if v is None]:
        env.pop(k, None)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL)


def _plant(path: str, change) -> None:
    """Change the catalog document of `path` in the database, as anyone who can write one row could."""
    store = rowstore.for_settings(load_settings())
    doc = store.table_doc(path)
    for col in doc["columns"]:
        if col.get("expr", {}).get("udf"):
            change(col["expr"]["udf"])
    store.save_table_doc(path, doc)


# What a user's process does with the table before computing anything: none of it may run the entry's code.
LOOK = """
    import sys
    import pxt_assets as pxt
    print(pxt.list_tables('cat'))
    t = pxt.get_table('cat/t')
    print(repr(t), t.columns())
    from pxt_assets.definitions import defs
    d = defs()
    print(len(list(d.resolve_asset_graph().get_all_asset_keys())))
    print('IMPORTED' if 'this' in sys.modules else 'not imported')
"""


# Computing the column (an insert): the error of each row that could not be computed, or the insert's.
COMPUTE = """
    import pxt_assets as pxt
    t = pxt.get_table('cat/t')
    try:
        t.insert([{'n': 3}])
    except Exception as e:
        print('FAILED', e)
    print(t.select(t.d.errormsg).collect().to_pandas().iloc[:, 0].dropna().tolist())
"""


def _table(tmp_path, monkeypatch):
    folder = write_module(tmp_path, monkeypatch, "cat_udfs", USER_MODULE)
    import cat_udfs

    pxt.create_dir("cat")
    t = pxt.create_table("cat/t", {"n": pxt.Int})
    t.add_computed_column(d=cat_udfs.double(t.n))
    t.insert([{"n": 1}, {"n": 2}])
    assert sorted(t.select(t.d).collect()["d"]) == [2, 4]
    return folder


def test_a_ref_naming_an_installed_module_runs_nothing_until_computed_and_then_is_refused(pxt_home, tmp_path,
                                                                                         monkeypatch):
    folder = _table(tmp_path, monkeypatch)
    # the project's own module: another process computes it (the module is found on its PYTHONPATH)
    ok = _child("import pxt_assets as pxt; t = pxt.get_table('cat/t'); t.insert([{'n': 5}]); "
                "print(sorted(int(v) for v in t.select(t.d).collect()['d']))", str(folder))
    assert ok.returncode == 0 and ok.stdout.strip().splitlines()[-1] == "[2, 4, 10]", ok.stderr[-2000:]

    _plant("cat/t", lambda udf: udf.update(ref="this:s"))  # `import this` prints the Zen of Python
    looked = _child(LOOK)
    assert looked.returncode == 0, looked.stderr[-3000:]
    assert "Zen of Python" not in looked.stdout + looked.stderr
    assert looked.stdout.strip().splitlines()[-1] == "not imported"
    # dagster's own loading of the code location, as `dagster dev` does
    validated = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", "-m", "pxt_assets.definitions"],
                               cwd=REPO, env={**os.environ, "DAGSTER_HOME": str(pxt_home / "child_dagster")},
                               capture_output=True, text=True, timeout=300)
    assert "Zen of Python" not in validated.stdout + validated.stderr

    computed = _child(COMPUTE)
    out = computed.stdout + computed.stderr
    assert "Zen of Python" not in out
    assert "udf_modules" in out and "this" in out, out[-3000:]

    # allowed by name, it is imported (the user's choice)
    allowed = _child("import pxt_assets as pxt; t = pxt.get_table('cat/t'); t.insert([{'n': 3}])",
                     PIXELTABLE_UDF_MODULES="this")
    assert "Zen of Python" in allowed.stdout + allowed.stderr


def _marker_payload(marker) -> str:
    """A pickle that, unpickled, creates `marker` (what a planted pickle could do instead of a function)."""
    import base64
    import pathlib

    class Payload:
        def __reduce__(self):
            return (pathlib.Path.touch, (pathlib.Path(marker),))

    return base64.b64encode(pickle.dumps(Payload())).decode()


def test_a_replaced_pickle_on_a_shared_database_is_never_unpickled(pxt_home, tmp_path, monkeypatch, pg_database):
    monkeypatch.setenv("PIXELTABLE_DB_URL", pg_database)
    monkeypatch.setenv("PIXELTABLE_ALLOW_PICKLED_UDFS", "true")  # the notebook's owner opted in to define it
    factor = 3

    @pxt.udf
    def triple(n: int) -> int:  # defined in a function: stored pickled
        return n * factor

    pxt.create_dir("cat")
    t = pxt.create_table("cat/t", {"n": pxt.Int})
    t.add_computed_column(d=triple(t.n))
    t.insert([{"n": 1}])
    stored = json.dumps(rowstore.for_settings(load_settings()).table_doc("cat/t"))
    assert '"pickle_sha256"' in stored and '"pickle"' not in stored  # the bytes are kept beside, by hash
    marker = tmp_path / "pwned"

    def replace(udf):  # the attacker's pickle, inline as an earlier release stored it
        udf.pop("pickle_sha256")
        udf["pickle"] = _marker_payload(marker)

    _plant("cat/t", replace)

    env = {"PIXELTABLE_DB_URL": pg_database, "PIXELTABLE_ALLOW_PICKLED_UDFS": None}  # unset: off with PostgreSQL
    looked = _child(LOOK, **env)
    assert looked.returncode == 0, looked.stderr[-3000:]
    computed = _child(COMPUTE, **env)
    assert "allow_pickled_udfs" in computed.stdout + computed.stderr, (computed.stdout + computed.stderr)[-3000:]
    assert not marker.exists()

    # and defining one on a shared database without the setting is refused, naming it
    monkeypatch.delenv("PIXELTABLE_ALLOW_PICKLED_UDFS")

    @pxt.udf
    def plus(n: int) -> int:
        return n + 1

    with pytest.raises(Exception, match="allow_pickled_udfs"):
        t.add_computed_column(p=plus(t.n))


def test_a_pickled_udf_over_1_mb_is_refused_naming_the_global(pxt_home):
    global _BIG_TABLE
    _BIG_TABLE = bytes(range(256)) * 8192  # 2 MB the function reads

    def lookup(n: int) -> int:
        return _BIG_TABLE[n % len(_BIG_TABLE)]

    lookup.__module__ = "__main__"  # as if defined in a notebook
    fn = pxt.udf(lookup)
    pxt.create_dir("cat")
    t = pxt.create_table("cat/big", {"n": pxt.Int})
    with pytest.raises((UDFDefinitionError, Exception), match=r"_BIG_TABLE \(2\.\d MB\)"):
        t.add_computed_column(v=fn(t.n))
    assert t.columns() == ["n"]


_BIG_TABLE = b""
