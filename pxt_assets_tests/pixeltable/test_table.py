"""Pixeltable's tests/test_table.py (v0.7.2), the cases about type forms and nullability, UpdateStatus,
on_error, Pixeltable's exceptions and error codes, and drop_table / if_exists: their assertions kept, with the
types and data sources we have (docs/pixeltable.md lists what was left out, and why)."""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import Iterator

import pytest

import pxt_assets as pxt
from pxt_assets_tests.conftest import make_image
from pxt_assets_tests.mediagen import make_video

_ERROR_GROUP_TO_CLS = {0: pxt.Error, 1: pxt.NotFoundError, 2: pxt.AlreadyExistsError, 3: pxt.RequestError,
                       4: pxt.AuthorizationError, 5: pxt.ExternalServiceError, 6: pxt.ServiceUnavailableError,
                       7: pxt.ConcurrencyError}


@contextlib.contextmanager
def pxt_raises(code: pxt.ErrorCode, *, match: str | None = None) -> Iterator[pytest.ExceptionInfo]:
    """Pixeltable's tests/utils.py::pxt_raises: the exception's class is the code's group's, its code the code."""
    cls = _ERROR_GROUP_TO_CLS[code.value // 1000]
    with pytest.raises(cls, match=match) as info:
        yield info
    assert info.value.error_code is code, f'expected {code.name!r}, got {info.value.error_code.name!r}'


@pytest.fixture
def p(pxt_home, tmp_path, monkeypatch):
    """Pixeltable's make_catalog_path: paths in a fresh directory of a fresh catalog."""
    dagster_home = tmp_path / 'dagster'
    dagster_home.mkdir()
    monkeypatch.setenv('DAGSTER_HOME', str(dagster_home))
    pxt.create_dir('test_dir')
    return lambda name: f'test_dir/{name}'


@pytest.fixture
def media(tmp_path) -> dict[str, pathlib.Path]:
    return {'img': make_image(tmp_path / 'img.jpg'), 'video': make_video(tmp_path / 'v.mp4', seconds=0.5),
            'bad': _write(tmp_path / 'bad.jpg', b'this is not a jpeg')}


def _write(path: pathlib.Path, data: bytes) -> pathlib.Path:
    path.write_bytes(data)
    return path


# exc for a % 10 == 0
@pxt.udf
def f1(a: int) -> float:
    return a / (a % 10)


# exception for a == None; this should not get triggered
@pxt.udf
def f2(a: float) -> float:
    return a + 1


def create_table_data(n: int, media: dict[str, pathlib.Path]) -> list[dict]:
    """Rows for the Required schema of test_insert (the types we have)."""
    return [{'c1': f'str {i}', 'c2': i, 'c3': float(i), 'c4': bool(i % 2), 'c6': {'key': i},
             'c7': str(media['img']), 'c8': str(media['video'])} for i in range(n)]


def test_create_if_exists(p) -> None:
    """Ported from pixeltable tests/test_table.py::TestTable::test_create_if_exists (scenarios 1 and 3; the
    view of scenario 2 is a view without an iterator, which we do not have: see test_pxt_api.py for
    replace_force with an iterator view)."""
    schema = {'c1': pxt.String, 'c2': pxt.Int, 'c3': pxt.Float}
    tbl = pxt.create_table(p('test'), schema)
    tbl.insert([{'c1': str(i), 'c2': i, 'c3': float(i)} for i in range(5)])
    res_before = tbl.select(tbl.c1, tbl.c2).order_by(tbl.c2).collect()
    assert len(res_before) == 5

    # invalid if_exists value is rejected
    with pxt_raises(
        pxt.ErrorCode.INVALID_ARGUMENT,
        match=r"if_exists must be one of: \['error', 'ignore', 'replace', 'replace_force'\]",
    ):
        pxt.create_table(p('test'), schema, if_exists='invalid')

    # scenario 1: a table already exists at the path
    with pxt_raises(pxt.ErrorCode.PATH_ALREADY_EXISTS, match='is an existing'):
        pxt.create_table(p('test'), schema)
    assert len(tbl.select().collect()) == 5
    # if_exists='ignore' should return the existing table
    tbl2 = pxt.create_table(p('test'), schema, if_exists='ignore')
    res_after = tbl2.select(tbl2.c1, tbl2.c2).order_by(tbl2.c2).collect()
    assert list(res_after['c2']) == list(res_before['c2'])
    # if_exists='replace' should drop the existing table
    tbl3 = pxt.create_table(p('test'), schema, if_exists='replace')
    assert len(tbl3.select().collect()) == 0

    pxt.create_dir(p('dir1'))
    # scenario 3: path exists but is not a table
    with pxt_raises(pxt.ErrorCode.PATH_ALREADY_EXISTS, match='is an existing directory'):
        _ = pxt.create_table(p('dir1'), schema)
    for ie in ('ignore', 'replace', 'replace_force'):
        with pxt_raises(pxt.ErrorCode.PATH_ALREADY_EXISTS, match='already exists'):
            pxt.create_table(p('dir1'), schema, if_exists=ie)


def test_drop_table(p) -> None:
    """Ported from pixeltable tests/test_table.py::TestTable::test_drop_table (tables; its views have no
    iterator)."""
    pxt.create_table(p('test1'), {'c1': pxt.String})
    pxt.drop_table(p('test1'))
    with pxt_raises(pxt.ErrorCode.PATH_NOT_FOUND, match='does not exist'):
        _ = pxt.get_table(p('test1'))
    pxt.create_table(p('test2'), {'c1': pxt.String})
    _ = pxt.get_table(p('test2'))
    pxt.drop_table(p('test2'))
    with pxt_raises(pxt.ErrorCode.PATH_NOT_FOUND, match='does not exist'):
        _ = pxt.get_table(p('test2'))


def test_drop_table_via_handle(p) -> None:
    """Ported from pixeltable tests/test_table.py::TestTable::test_drop_table_via_handle (tables)."""
    t = pxt.create_table(p('test1'), {'c1': pxt.String})
    pxt.drop_table(t)
    with pxt_raises(pxt.ErrorCode.PATH_NOT_FOUND, match='does not exist'):
        _ = pxt.get_table(p('test1'))
    t = pxt.create_table(p('test2'), {'c1': pxt.String})
    t = pxt.get_table(p('test2'))
    pxt.drop_table(t)
    with pxt_raises(pxt.ErrorCode.PATH_NOT_FOUND, match='does not exist'):
        _ = pxt.get_table(p('test2'))


def test_drop_table_if_not_exists(p) -> None:
    """Ported from pixeltable tests/test_table.py::TestTable::test_drop_table_if_not_exists."""
    non_existing_t = 'non_existing_table'
    table_list = pxt.list_tables(p('')[:-1])
    assert p(non_existing_t) not in table_list
    # invalid if_not_exists value is rejected
    with pxt_raises(pxt.ErrorCode.INVALID_ARGUMENT) as exc_info:
        pxt.drop_table(p(non_existing_t), if_not_exists='invalid')
    assert "if_not_exists must be one of: ['error', 'ignore']" in str(exc_info.value).lower()

    # if_not_exists='error' should raise an error if the table exists
    with pxt_raises(pxt.ErrorCode.PATH_NOT_FOUND, match='does not exist'):
        pxt.drop_table(p(non_existing_t), if_not_exists='error')
    # default behavior is to raise an error if the table does not exist
    with pxt_raises(pxt.ErrorCode.PATH_NOT_FOUND, match='does not exist'):
        pxt.drop_table(p(non_existing_t))
    # if_not_exists='ignore' should not raise an error
    pxt.drop_table(p(non_existing_t), if_not_exists='ignore')
    # force=True should not raise an error, irrespective of if_not_exists value
    pxt.drop_table(p(non_existing_t), force=True)
    # same if the parent dir does not exist
    pxt.drop_table(p('not_a_parent_dir/non_existing_table'), if_not_exists='ignore')
    pxt.drop_table(p('not_a_parent_dir/non_existing_table'), force=True)
    assert table_list == pxt.list_tables(p('')[:-1])


def test_insert_nulls(p) -> None:
    """Ported from pixeltable tests/test_table.py::TestTable::test_insert_nulls (the types we have)."""
    schema = {'c1': pxt.String, 'c2': pxt.Int, 'c3': pxt.Float, 'c4': pxt.Bool, 'c6': pxt.Json,
              'c7': pxt.Image, 'c8': pxt.Video}
    t = pxt.create_table(p('test1'), schema)
    status = t.insert(c1='abc')
    assert status.num_rows == 1
    assert status.num_excs == 0


def test_insert(p, media) -> None:
    """Ported from pixeltable tests/test_table.py::TestTable::test_insert (the types we have; no Array,
    Timestamp, data-source files)."""
    schema = {'c1': pxt.Required[pxt.String], 'c2': pxt.Required[pxt.Int], 'c3': pxt.Required[pxt.Float],
              'c4': pxt.Required[pxt.Bool], 'c6': pxt.Required[pxt.Json], 'c7': pxt.Required[pxt.Image],
              'c8': pxt.Required[pxt.Video]}
    tbl_name = p('test1')
    t = pxt.create_table(tbl_name, schema)
    rows = create_table_data(3, media)
    status = t.insert(rows)
    assert t.count() == len(rows)
    assert status.num_rows == len(rows)
    assert status.num_excs == 0

    # alternate (**kwargs: Any) insert syntax
    status = t.insert(c1='string', c2=91, c3=1.0, c4=True, c6={'key': 'val'}, c7=str(media['img']),
                      c8=str(media['video']))
    assert status.num_rows == 1
    assert status.num_excs == 0

    # empty input
    with pxt_raises(pxt.ErrorCode.UNSUPPORTED_OPERATION, match='Cannot insert an empty sequence'):
        t.insert([])

    # missing column
    with pxt_raises(pxt.ErrorCode.MISSING_REQUIRED) as exc_info:
        # drop first column
        col_names = list(rows[0].keys())[1:]
        new_rows = [{col_name: row[col_name] for col_name in col_names} for row in rows]
        t.insert(new_rows)
    assert 'Missing' in str(exc_info.value)

    # incompatible schema
    # (Pixeltable takes each column's wrong value from another column; Json's from a Timestamp, which we do
    # not have: a set, which is not JSON either)
    for (col_name, col_type), value_col_name in zip(schema.items(), ['c2', 'c3', 'c1', 'c1', 'set', 'c2', 'c2']):
        pxt.drop_table(tbl_name, if_not_exists='ignore')
        t = pxt.create_table(tbl_name, {col_name: col_type})
        with pxt_raises(pxt.ErrorCode.UNSUPPORTED_OPERATION, match=r'expected|not a valid Pixeltable JSON object'):
            t.insert([{col_name: r[value_col_name] if value_col_name != 'set' else {1, 2}} for r in rows])

    # bad null value
    pxt.drop_table(tbl_name, if_not_exists='ignore')
    t = pxt.create_table(tbl_name, {'c1': pxt.Required[pxt.String]})
    with pxt_raises(pxt.ErrorCode.UNSUPPORTED_OPERATION) as exc_info:
        t.insert(c1=None)
    assert 'expected non-None' in str(exc_info.value)


def test_add_column(p) -> None:
    """Ported from pixeltable tests/test_table.py::TestTable::test_add_column (the nullability, argument
    and `stored` cases; reserved names and revert() are not ours)."""
    t = pxt.create_table(p('test_tbl'), {'c1': pxt.Required[pxt.String], 'c2': pxt.Int, 'c3': pxt.Float})
    t.insert([{'c1': str(i), 'c2': i, 'c3': float(i)} for i in range(3)])
    orig_cols = set(t.columns())
    t.add_column(add1=pxt.Int)
    assert set(t.columns()) == orig_cols | {'add1'}

    with pxt_raises(pxt.ErrorCode.UNSUPPORTED_OPERATION) as exc_info:
        _ = t.add_column(add2=pxt.Required[pxt.Int])
    assert 'cannot add non-nullable' in str(exc_info.value).lower()

    with pxt_raises(pxt.ErrorCode.UNSUPPORTED_OPERATION) as exc_info:
        _ = t.add_column(add2=pxt.Int, add3=pxt.String)
    assert 'requires exactly one keyword argument' in str(exc_info.value).lower()

    # duplicate name
    with pxt_raises(pxt.ErrorCode.COLUMN_ALREADY_EXISTS) as exc_info:
        _ = t.add_column(c1=pxt.Int)
    assert 'duplicate column name' in str(exc_info.value).lower()

    # 'stored' kwarg only applies to computed image columns
    with pxt_raises(pxt.ErrorCode.UNSUPPORTED_OPERATION):
        _ = t.add_column(c5=pxt.Int, stored=False)
    with pxt_raises(pxt.ErrorCode.UNSUPPORTED_OPERATION):
        _ = t.add_column(c5=pxt.Image, stored=False)

    # make sure this is still true after reloading the metadata
    t = pxt.get_table(p('test_tbl'))
    assert set(t.columns()) == orig_cols | {'add1'}


def test_computed_col_exceptions(p) -> None:
    """Ported from pixeltable tests/test_table.py::TestTable::test_computed_col_exceptions."""
    # exception during insert()
    schema = {'c2': pxt.Int}
    rows = [{'c2': i} for i in range(100)]
    t = pxt.create_table(p('test_insert'), schema)
    status = t.add_computed_column(add1=f2(f1(t.c2)))
    assert status.num_excs == 0
    status = t.insert(rows, on_error='ignore')
    assert status.num_excs >= 10
    assert 'test_insert.add1' in status.cols_with_excs
    assert t.where(t.add1.errortype != None).count() == 10  # noqa: E711

    # exception during add_computed_column()
    t = pxt.create_table(p('test_add_column'), schema)
    status = t.insert(rows)
    assert status.num_rows == 100
    assert status.num_excs == 0

    with pxt_raises(pxt.ErrorCode.UNSUPPORTED_OPERATION) as exc:
        t.add_computed_column(add1=f2(f1(t.c2)))
    assert 'division by zero' in str(exc.value)

    # on_error='abort' is the default
    with pxt_raises(pxt.ErrorCode.UNSUPPORTED_OPERATION) as exc:
        t.add_computed_column(add1=f2(f1(t.c2)), on_error='abort')
    assert 'division by zero' in str(exc.value)

    # on_error='ignore' stores the exception in errortype/errormsg
    status = t.add_computed_column(add1=f2(f1(t.c2)), on_error='ignore')
    assert status.num_excs == 10
    assert 'test_add_column.add1' in status.cols_with_excs
    assert t.where(t.add1.errortype != None).count() == 10  # noqa: E711
    msgs = t.select(msg=t.add1.errormsg).collect()['msg']
    assert sum('division by zero' in msg for msg in msgs if msg is not None) == 10


def test_validate_image(p, media, images) -> None:
    """Ported from pixeltable tests/test_table.py::TestTable::test_validate_image (check_bad_media; generated
    images and a file that is not one instead of imagenette2's manifest_bad.csv)."""
    rows = [{'media': str(i), 'is_bad_media': False} for i in images[:3]]
    rows += [{'media': str(media['bad']), 'is_bad_media': True}]
    schema = {'media': pxt.Image, 'is_bad_media': pxt.Bool}
    tbl = pxt.create_table(p('test'), schema)

    assert len(rows) > 0
    total_bad_rows = sum(int(row['is_bad_media']) for row in rows)
    assert total_bad_rows > 0

    # Mode 1: Validation error on bad input (default)
    # we ignore the exact error here, because it depends on the media type
    with pytest.raises((pxt.RequestError, pxt.ExternalServiceError)):
        tbl.insert(rows, on_error='abort')

    # Mode 2: ignore_errors=True, store error information in table
    status = tbl.insert(rows, on_error='ignore')
    _ = tbl.select(tbl.media, tbl.media.errormsg).collect()
    assert status.num_rows == len(rows)
    assert status.num_excs >= total_bad_rows


test_unstored_table_base_val = 0


@pxt.udf
def add_unstored_table_base_val(x: int) -> int:
    return x + test_unstored_table_base_val


def _records(res) -> list[dict]:
    """A result's rows as dicts (a ResultSet's `to_pandas()`, or a DataFrame's own)."""
    frame = res.to_pandas() if hasattr(res, 'to_pandas') else res
    return frame.to_dict('records')


def test_unstored_computed_cols(p) -> None:
    """Ported from pixeltable tests/test_table.py::TestTable::test_unstored_computed_cols."""
    schema = {'c1': pxt.Int, 'c2': pxt.Float}
    t = pxt.create_table(p('test'), schema)

    status = t.add_computed_column(c3=add_unstored_table_base_val(t.c1), stored=True)
    assert status.num_excs == 0
    status = t.add_computed_column(c4=add_unstored_table_base_val(t.c1), stored=False)
    assert status.num_excs == 0

    rows = [{'c1': i, 'c2': float(i)} for i in range(10)]
    global test_unstored_table_base_val  # noqa: PLW0603
    test_unstored_table_base_val = 1000
    t.insert(rows)
    _ = t.collect()

    test_unstored_table_base_val = 2000
    t_res = t.select(t.c3, t.c4).collect()
    for row in _records(t_res):
        assert row['c3'] + 1000 == row['c4']


def test_computed_img_cols(p, images) -> None:
    """Ported from pixeltable tests/test_table.py::TestTable::test_computed_img_cols (its first two tables;
    _test_computed_img_cols' check: the rotated image's size, for an unstored and a stored column)."""
    schema = {'img': pxt.Image}
    t = pxt.create_table(p('test'), schema)
    t.add_computed_column(c2=t.img.width)
    t.add_computed_column(h=t.img.height)
    # c3 is not stored by default
    t.add_computed_column(c3=t.img.rotate(90), stored=False)
    t.insert([{'img': str(i)} for i in images[:2]])
    res = _records(t.select(t.c2, t.h, t.c3).collect())
    assert [r['c3'].size for r in res] == [(r['h'], r['c2']) for r in res]

    t = pxt.create_table(p('test2'), schema)
    # c3 is now stored
    t.add_computed_column(c3=t.img.rotate(90))
    t.insert([{'img': str(i)} for i in images[:2]])
    _ = t.select(t.c3).collect()
    _ = t.select(t.c3.errortype).collect()


def test_schema_spec(p) -> None:
    """Ported from pixeltable tests/test_table.py::TestTable::test_schema_spec (the column name and builtin type
    cases; dict column specs, primary keys, Timestamp/Date/UUID/bytes are not ours)."""
    import PIL.Image

    with pxt_raises(pxt.ErrorCode.INVALID_COLUMN_NAME) as exc_info:
        pxt.create_table(p('test'), {'c 1': pxt.Int})
    assert 'invalid column name' in str(exc_info.value).lower()

    for badtype, name, suggestion in [
        (str, 'str', 'pxt.String'),
        (int, 'int', 'pxt.Int'),
        (float, 'float', 'pxt.Float'),
        (bool, 'bool', 'pxt.Bool'),
        (list, 'list', 'pxt.Json'),
        (dict, 'dict', 'pxt.Json'),
        (PIL.Image.Image, 'PIL.Image.Image', 'pxt.Image'),
    ]:
        with pxt_raises(pxt.ErrorCode.INVALID_TYPE) as exc_info:
            pxt.create_table(p('test'), {'c1': badtype})
        assert f'Standard Python type `{name}` cannot be used here; use `{suggestion}` instead' in str(
            exc_info.value
        )


@pxt.udf
def add(a: float, b: float) -> float:
    return a + b


def _col(res, name: str):
    """A result's column as a pandas Series (a ResultSet's `to_pandas()`, or a DataFrame's own)."""
    return (res.to_pandas() if hasattr(res, 'to_pandas') else res)[name].reset_index(drop=True)


def _test_tbl(p, name: str = 'test_tbl'):
    """Pixeltable's test_tbl fixture, the columns we have: 100 rows, c3 = 0.0 ... 99.0."""
    t = pxt.create_table(p(name), {'c1': pxt.String, 'c2': pxt.Int, 'c3': pxt.Float, 'c4': pxt.Bool,
                                    'c6': pxt.Json})
    t.insert([{'c1': f'test string {i}', 'c2': i, 'c3': float(i), 'c4': bool(i % 2), 'c6': {'f1': i}}
              for i in range(100)])
    return t


def test_update(p) -> None:
    """Ported from pixeltable tests/test_table.py::TestTable::test_update (literals; `t.c3 + 1` written as a
    UDF, revert() as a fresh table; no Timestamp column, primary key, expression values or small_img_tbl)."""
    import numpy as np
    import pandas as pd

    t = _test_tbl(p)
    # update every type with a literal
    test_cases = [
        ('c1', 'new string'),
        ('c3', -1.0),
        ('c4', True),
        ('c6', [{'x': 1, 'y': 2}]),
    ]
    count = t.count()
    for col_name, literal in test_cases:
        status = t.update({col_name: literal}, where=t.c3 < 10.0, cascade=False)
        assert status.num_rows == 10
        assert status.updated_cols == [f'test_tbl.{col_name}']
        assert t.count() == count
        assert t.where(t[col_name] == literal).count() >= 10 if col_name != 'c6' else True
        pxt.drop_table(t)
        t = _test_tbl(p)

    # update column that is used in computed cols
    t.add_computed_column(computed1=add(t.c3, 1.0))
    t.add_computed_column(computed2=add(t.computed1, 1.0))
    t.add_computed_column(computed3=add(t.c3, 3.0))

    # cascade=False
    computed1 = _col(t.order_by(t.computed1).collect(), 'computed1')
    computed2 = _col(t.order_by(t.computed2).collect(), 'computed2')
    computed3 = _col(t.order_by(t.computed3).collect(), 'computed3')
    assert t.where(t.c3 < 10.0).count() == 10
    assert t.where(t.c3 == 10.0).count() == 1
    # update to a value that also satisfies the where clause
    status = t.update({'c3': 0.0}, where=t.c3 < 10.0, cascade=False)
    assert status.num_rows == 10
    assert status.updated_cols == ['test_tbl.c3']
    assert t.where(t.c3 < 10.0).count() == 10
    assert t.where(t.c3 == 0.0).count() == 10
    # computed cols are not updated
    assert np.all(_col(t.order_by(t.computed1).collect(), 'computed1') == computed1)
    assert np.all(_col(t.order_by(t.computed2).collect(), 'computed2') == computed2)
    assert np.all(_col(t.order_by(t.computed3).collect(), 'computed3') == computed3)

    # cascade=True
    status = t.update({'c3': 0.0}, where=t.c3 < 10.0, cascade=True)
    assert status.num_rows == 10
    assert set(status.updated_cols) == {
        'test_tbl.c3',
        'test_tbl.computed1',
        'test_tbl.computed2',
        'test_tbl.computed3',
    }
    assert t.where(t.c3 < 10.0).count() == 10
    assert t.where(t.c3 == 0.0).count() == 10
    assert np.all(_col(t.order_by(t.computed1).collect(), 'computed1')[:10] == pd.Series([1.0] * 10))
    assert np.all(_col(t.order_by(t.computed2).collect(), 'computed2')[:10] == pd.Series([2.0] * 10))
    assert np.all(_col(t.order_by(t.computed3).collect(), 'computed3')[:10] == pd.Series([3.0] * 10))

    # bad update spec
    with pxt_raises(pxt.ErrorCode.INVALID_ARGUMENT, match='dict key'):
        t.update({1: 1})

    # key is a str but not a valid identifier (ours: INVALID_COLUMN_NAME, as a bad name is everywhere)
    with pxt_raises(pxt.ErrorCode.INVALID_COLUMN_NAME, match='invalid column name'):
        t.update({'c 1': 1})

    # unknown column
    with pxt_raises(pxt.ErrorCode.COLUMN_NOT_FOUND, match='Unknown column: unknown'):
        t.update({'unknown': 1})

    # incompatible type
    with pxt_raises(pxt.ErrorCode.TYPE_MISMATCH, match='not compatible'):
        t.update({'c1': 1})

    # can't update computed column
    with pxt_raises(pxt.ErrorCode.UNSUPPORTED_OPERATION, match='is computed'):
        t.update({'computed1': 1})

    # non-expr
    with pxt_raises(pxt.ErrorCode.UNSUPPORTED_OPERATION, match='not a recognized'):
        t.update({'c3': lambda c3: c3 ** 0.5})

    # non-Predicate filter
    with pxt_raises(
        pxt.ErrorCode.INVALID_EXPRESSION, match=r'`where` argument must be a valid Pixeltable expression'
    ):
        t.update({'c3': 1.0}, where=lambda c2: c2 == 10)


def test_update_filter_not_in_sql(p, images) -> None:
    """Ported from pixeltable tests/test_table.py::TestTable::test_update (its small_img_tbl case)."""
    img_t = pxt.create_table(p('small_img_tbl'), {'img': pxt.Image, 'split': pxt.String})
    img_t.insert([{'img': str(i), 'split': 'val'} for i in images])
    # filter not expressible in SQL
    with pxt_raises(pxt.ErrorCode.UNSUPPORTED_OPERATION, match='not expressible'):
        img_t.update({'split': 'train'}, where=img_t.img.width > 100)
