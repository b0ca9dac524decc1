"""Code versions of UDFs cover what the UDF runs: its source, and the functions and literal constants of its
own module that it uses (transitively). Editing one of them makes the column stale and re-materializing
recomputes its rows; editing something it does not use changes nothing; `@pxt.udf(version=...)` pins the
version; a UDF that uses nothing of its module keeps the previous release's version (an upgrade recomputes
nothing)."""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import pathlib
import subprocess
import sys
import textwrap

import dagster as dg
import pytest

import pxt_assets as pxt
from pxt_assets.functions.udf import UDFDefinitionError, _source_version, code_dependencies, code_version_of
from pxt_assets_tests.conftest import stored_records

REPO = pathlib.Path(__file__).resolve().parents[1]

MODULE = '''
import math

import pxt_assets as pxt
import cv_calls

SCALE = 10
UNUSED = "not read by any UDF"


def unrelated() -> str:
    return "nothing a UDF uses"


def _inc(n):
    return n + 1


def _bump(n):
    return _inc(n) * 2


@pxt.udf{decorator}
def score(n: int) -> int:
    cv_calls.CALLS.append(n)
    return _bump(n) * SCALE


@pxt.udf
def digits(n: int) -> int:
    return len(str(math.factorial(n)))
'''


class UserModule:
    """The user's module, a real file on sys.path: written, imported, edited on disk and reloaded."""

    def __init__(self, tmp_path, monkeypatch, decorator: str = "") -> None:
        folder = tmp_path / "user_code"
        folder.mkdir()
        (folder / "cv_calls.py").write_text("CALLS = []\n")
        self.path = folder / "cv_udfs.py"
        self.source = MODULE.format(decorator=decorator)
        self.mtime = 1_700_000_000
        self._write()
        monkeypatch.syspath_prepend(str(folder))
        monkeypatch.setattr(sys, "dont_write_bytecode", True)
        for name in ("cv_udfs", "cv_calls"):
            monkeypatch.delitem(sys.modules, name, raising=False)
        self.module = importlib.import_module("cv_udfs")
        self.calls = importlib.import_module("cv_calls").CALLS

    def _write(self) -> None:
        self.path.write_text(self.source)
        self.mtime += 10  # a later edit, as a person makes it (the import system and linecache see it)
        os.utime(self.path, (self.mtime, self.mtime))

    def edit(self, old: str, new: str) -> None:
        assert old in self.source
        self.source = self.source.replace(old, new)
        self._write()
        importlib.invalidate_caches()
        self.module = importlib.reload(self.module)
        self.calls.clear()


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    return UserModule(tmp_path, monkeypatch)


def _table(module, instance, ns=(1, 2, 3)):
    pxt.create_dir("cv")
    t = pxt.create_table("cv/nums", {"n": pxt.Int})
    t.add_computed_column(s=module.score(t.n))
    first = t.insert([{"n": n} for n in ns], instance=instance)
    return t, first.batch


def _asset_code_version(t) -> str:
    key = dg.AssetKey(["cv", "nums", "s"])
    for a in pxt.get_table(t.path).assets_definitions():
        if key in a.keys:
            return a.code_versions_by_key[key]
    raise AssertionError("no asset for cv/nums/s")


def _state(t, batch, instance):
    """(values by n, stored versions) after re-materializing the batch with the code as it is now."""
    fresh = pxt.get_table(t.path)  # as another process, or the notebook after the reload, sees the table
    fresh.resume(batch, instance=instance)
    got = fresh.select(fresh.n, fresh.s).collect()
    return dict(zip(got["n"], got["s"])), [r["version"] for r in stored_records(fresh, "s", batch)]


def test_editing_a_helper_or_a_constant_makes_the_column_stale_and_recomputes_it(pxt_home, instance,
                                                                                 user_module):
    m = user_module
    t, batch = _table(m.module, instance)
    assert sorted(m.calls) == [1, 2, 3]
    values, versions = _state(t, batch, instance)
    assert values == {n: (n + 1) * 2 * 10 for n in (1, 2, 3)}
    code_version = _asset_code_version(t)

    # edits of what the UDF does not use: the same code version, the rows are kept (the UDF is not called)
    m.edit('return "nothing a UDF uses"', 'return "still nothing a UDF uses, edited"')
    m.edit('UNUSED = "not read by any UDF"', 'UNUSED = "edited, and still not read"')
    m.edit("\n\ndef _inc(n):", "\n\n# a comment between functions\n\ndef _inc(n):")
    assert _asset_code_version(t) == code_version
    m.calls.clear()
    assert _state(t, batch, instance) == (values, versions)
    assert m.calls == []

    # a helper of a helper changes: the column is stale, and re-materializing recomputes every row
    m.edit("return n + 1", "return n + 2")
    assert _asset_code_version(t) != code_version
    new_values, new_versions = _state(t, batch, instance)
    assert new_values == {n: (n + 2) * 2 * 10 for n in (1, 2, 3)}
    assert sorted(m.calls) == [1, 2, 3] and set(new_versions).isdisjoint(versions)
    # the handle made before the reload follows the module too: what it computes is the new code
    fresh = pxt.get_table(t.path).spec.columns["s"].expr
    assert t.spec.columns["s"].expr.code_version() == fresh.code_version()
    assert t.select(t.s).collect()["s"] == [new_values[n] for n in (1, 2, 3)]

    # a module constant it reads changes: stale again, recomputed
    code_version = _asset_code_version(t)
    m.edit("SCALE = 10", "SCALE = 100")
    assert _asset_code_version(t) != code_version
    m.calls.clear()
    values, _ = _state(t, batch, instance)
    assert values == {n: (n + 2) * 2 * 100 for n in (1, 2, 3)} and sorted(m.calls) == [1, 2, 3]

    # a later batch is computed with the code as it is now
    pxt.get_table(t.path).insert([{"n": 4}], instance=instance)
    assert t.where(t.n == 4).select(t.s).collect()["s"] == [(4 + 2) * 2 * 100]


def test_a_pinned_version_is_what_the_user_says(pxt_home, instance, tmp_path, monkeypatch):
    m = UserModule(tmp_path, monkeypatch, decorator='(version="v1")')
    assert m.module.score.version == "v1"
    t, batch = _table(m.module, instance)
    values, versions = _state(t, batch, instance)
    code_version = _asset_code_version(t)

    # the code changes but the pinned version does not: nothing is hashed, nothing is stale or recomputed
    m.edit("return n + 1", "return n + 5")
    m.edit("SCALE = 10", "SCALE = 7")
    assert m.module.score.version == "v1" and _asset_code_version(t) == code_version
    assert _state(t, batch, instance) == (values, versions) and m.calls == []

    # the user bumps it: stale, recomputed with the code as it is now
    m.edit('@pxt.udf(version="v1")', '@pxt.udf(version="v2")')
    assert m.module.score.version == "v2" and _asset_code_version(t) != code_version
    values, _ = _state(t, batch, instance)
    assert values == {n: (n + 5) * 2 * 7 for n in (1, 2, 3)} and sorted(m.calls) == [1, 2, 3]

    with pytest.raises(UDFDefinitionError, match="version must be a non-empty string"):
        pxt.udf(version="")(lambda n: n)


def test_a_udf_that_uses_nothing_of_its_module_keeps_the_previous_version(pxt_home, instance, user_module):
    """The previous release's version of a UDF was a hash of its source alone: a UDF that uses no function or
    constant of its module (only builtins, imported modules, its arguments) gets exactly that, and its stored
    form is the same, so its column's code version and row fingerprints are the same after an upgrade."""
    digits = user_module.module.digits
    previous = hashlib.sha256(inspect.getsource(digits.fn).encode()).hexdigest()[:12]
    assert code_dependencies(digits.fn) == {}
    assert digits.version == previous == _source_version(digits.fn)

    pxt.create_dir("cv")
    t = pxt.create_table("cv/plain", {"n": pxt.Int})
    t.add_computed_column(d=digits(t.n))
    stored = t.spec.columns["d"].expr.to_dict()["udf"]
    assert set(stored) == {"ref", "version", "signature"} and stored["version"] == previous
    batch = t.insert([{"n": 5}, {"n": 20}], instance=instance).batch
    versions = [r["version"] for r in stored_records(t, "d", batch)]
    # the module is edited elsewhere: the plain UDF is not stale, its rows are kept
    user_module.edit("return n + 1", "return n + 3")
    fresh = pxt.get_table(t.path)
    assert fresh.spec.columns["d"].expr.udf.version == previous
    fresh.resume(batch, instance=instance)
    assert [r["version"] for r in stored_records(fresh, "d", batch)] == versions

    # a UDF that does use its module gets a new version (covering what it uses)
    score = user_module.module.score
    assert set(code_dependencies(score.fn)) == {"SCALE", "_bump", "_inc"}
    assert score.version == code_version_of(score.fn) != _source_version(score.fn)


HELPERS = '''
import functools
import os

import pxt_assets as pxt

DEVICE = "cuda" if os.environ.get("NO_SUCH_VARIABLE_CV") else "cpu"
LABELS = ("cat", "dog")
WEIGHTS = {"cat": 1.5, "dog": [1, 2]}
KINDS = frozenset({"tabby", "siamese", "beagle", "poodle"})
MODEL = object()


@pxt.udf
def classify(n: int) -> str:
    pick = lambda i: LABELS[i % len(LABELS)]  # noqa: E731
    text = "".join(pick(i) for i in range(n)) + _late(n) + str(MODEL is None) + DEVICE + os.sep
    return text + str(WEIGHTS) + str(len(KINDS))


@functools.lru_cache
def _late(n):
    return _later(n)


def _later(n):
    return str(n) + __file__
'''


def test_what_counts_in_a_code_version(tmp_path, monkeypatch):
    (tmp_path / "cv_helpers.py").write_text(textwrap.dedent(HELPERS))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "cv_helpers", raising=False)
    import cv_helpers

    deps = code_dependencies(cv_helpers.classify.fn)
    # read in a lambda and a generator; helpers defined after the UDF, through lru_cache, transitively; small
    # literal containers. Not: a value computed at import (DEVICE may differ between processes), an object,
    # another module's names (os.sep), __file__ (differs between machines).
    assert set(deps) == {"LABELS", "WEIGHTS", "KINDS", "_late", "_later"}
    assert deps["LABELS"] == "constant ('cat', 'dog')"
    assert deps["WEIGHTS"] == "constant {'cat': 1.5, 'dog': [1, 2]}"
    assert deps["KINDS"] == "constant frozenset({'beagle', 'poodle', 'siamese', 'tabby'})"
    assert deps["_later"].startswith("function def _later(n):")
    # the same version in every process (no address, no hash-seed order)
    code = "import cv_helpers; print(cv_helpers.classify.version)"
    seen = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed,
               "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        seen.add(done.stdout.strip())
    version = cv_helpers.classify.version
    assert seen == {version} and version == code_version_of(cv_helpers.classify.fn)
