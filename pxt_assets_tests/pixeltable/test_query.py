"""Pixeltable's tests/test_query.py, ported: the cases in scope (results, select lists, where, order_by, limit
and offset, head and tail, show, count). The cases left out, and why, are listed in docs/pixeltable.md."""

from __future__ import annotations

import datetime

import numpy as np
import pandas as pd
import pytest

import pxt_assets as pxt
from pxt_assets_tests.pixeltable import _query_fixtures

Error = _query_fixtures.Error
test_tbl = _query_fixtures.test_tbl  # the fixture


@pxt.udf
def is_even_py(x: int) -> bool:
    return x % 2 == 0


def test_select_where(test_tbl):
    """Ported from pixeltable tests/test_query.py::TestQuery::test_select_where (without `contains`, a
    string function we do not have; without the second where(), which we combine with `&`; without a
    reference to another table's column)."""
    t = test_tbl
    res1 = t.collect()
    res2 = t.select().collect()
    assert len(res1) > 0
    assert len(res1) == len(res2)
    pd.testing.assert_frame_equal(
        res1.to_pandas().sort_values(["c1", "c2"]).reset_index(drop=True),
        res2.to_pandas().sort_values(["c1", "c2"]).reset_index(drop=True),
    )

    res1 = t.where(t.c2 < 10).select(t.c1, t.c2, t.c3).collect()
    res3 = t.where(t.c2 < 10).select(c1=t.c1, c2=t.c2, c3=t.c3).collect()
    assert len(res1) == len(res3)
    pd.testing.assert_frame_equal(
        res1.to_pandas().sort_values(["c1", "c2", "c3"]).reset_index(drop=True),
        res3.to_pandas().sort_values(["c1", "c2", "c3"]).reset_index(drop=True),
    )

    res4 = t.where(t.c2 < 10).select(t.c1, c2=t.c2, c3=t.c3).collect()
    assert len(res1) == len(res4)
    pd.testing.assert_frame_equal(
        res1.to_pandas().sort_values(["c1", "c2", "c3"]).reset_index(drop=True),
        res4.to_pandas().sort_values(["c1", "c2", "c3"]).reset_index(drop=True),
    )

    _ = t.where(t.c2 < 10).select(t.c2, t.c2).collect()  # repeated name no error

    # where clause needs to be a predicate
    with pytest.raises(Error) as exc_info:
        _ = t.where(t.c1).select(t.c2).collect()
    assert "needs to return `Bool`" in str(exc_info.value)

    # where clause needs to be a predicate
    with pytest.raises(Error) as exc_info:
        _ = t.where(15).select(t.c2).collect()  # type: ignore[arg-type]
    assert "where() expects a Pixeltable expression; got: 15" in str(exc_info.value)

    # duplicate select list
    with pytest.raises(Error) as exc_info:
        _ = t.select(t.c1).select(t.c2).collect()
    assert "already specified" in str(exc_info.value)

    # invalid expr in select list: Callable is not a valid literal
    with pytest.raises(Error) as exc_info:
        _ = t.select(datetime.datetime.now).collect()
    assert "Invalid expression" in str(exc_info.value)

    # catch invalid name in select list from user input
    # only check stuff that's not caught by python kwargs checker
    with pytest.raises(Error) as exc_info:
        _ = t.select(t.c1, **{"c2-1": t.c2}).collect()
    assert "Invalid name" in str(exc_info.value)

    with pytest.raises(Error) as exc_info:
        _ = t.select(t.c1, **{"": t.c2}).collect()
    assert "Invalid name" in str(exc_info.value)

    with pytest.raises(Error) as exc_info:
        _ = t.select(t.c1, **{"foo.bar": t.c2}).collect()
    assert "Invalid name" in str(exc_info.value)

    with pytest.raises(Error) as exc_info:
        _ = t.select(t.c1, _c3=t.c2).collect()
    assert "Invalid name" in str(exc_info.value)

    # catch repeated name from user input
    with pytest.raises(Error) as exc_info:
        _ = t.select(t.c2, c2=t.c1).collect()
    assert "Repeated column name" in str(exc_info.value)

    with pytest.raises(Error) as exc_info:
        _ = t.select(t.c2 + 1, col_0=t.c2).collect()
    assert "Repeated column name" in str(exc_info.value)


def test_result_set_iterator(test_tbl):
    """Ported from pixeltable tests/test_query.py::TestQuery::test_result_set_iterator."""
    t = test_tbl
    res = t.select(t.c1, t.c2, t.c3).collect()
    pd_df = res.to_pandas()

    def check_row(row: dict, idx: int) -> None:
        assert len(row) == 3
        assert "c1" in row
        assert row["c1"] == pd_df["c1"][idx]
        assert "c2" in row
        assert row["c2"] == pd_df["c2"][idx]
        assert "c3" in row
        assert row["c3"] == pd_df["c3"][idx]

    # row iteration
    for idx, row in enumerate(res):
        check_row(row, idx)

    # row access
    row = res[0]
    check_row(row, 0)

    # column access
    col_values = res["c2"]
    assert col_values == pd_df["c2"].values.tolist()

    # cell access
    assert res[0, "c2"] == pd_df["c2"][0]
    assert res[0, "c2"] == res[0, 1]

    with pytest.raises(Error) as exc_info:
        _ = res["does_not_exist"]
    assert "Invalid column name" in str(exc_info.value)

    with pytest.raises(Error) as exc_info:
        _ = res[0, "does_not_exist"]
    assert "Invalid column name" in str(exc_info.value)

    with pytest.raises(Error) as exc_info:
        _ = res[0, 0, 0]
    assert "Bad index" in str(exc_info.value)

    with pytest.raises(Error) as exc_info:
        _ = res["c2", 0]
    assert "Bad index" in str(exc_info.value)


def test_order_by(test_tbl):
    """Ported from pixeltable tests/test_query.py::TestQuery::test_order_by."""
    t = test_tbl
    _ = t.select(t.c4, t.c2).order_by(t.c4).order_by(t.c2, asc=False).collect()

    # invalid expr in order_by()
    with pytest.raises(Error) as exc_info:
        _ = t.order_by(datetime.datetime.now()).collect()  # type: ignore[arg-type]
    assert "Invalid expression" in str(exc_info.value)


def test_expr_unique_id(test_tbl):
    """Ported from pixeltable tests/test_query.py::TestQuery::test_expr_unique_id."""
    t = test_tbl
    # Multiple constants with the same string representation but different types must be unique (expr.id)
    res = t.select(t.c2, t.c1, t.c1 == "2", t.c1 < "4", t.c2 == 4).limit(4).collect()
    print(res)
    assert len(res) == 4


def test_limit_basic(test_tbl):
    """Ported from pixeltable tests/test_query.py::TestQuery::test_limit_basic."""
    t = test_tbl

    # Basic return shape: length and schema preserved
    res = t.select(t.c1, t.c2).limit(3).collect()
    assert len(res) == 3
    assert list(res.schema.keys()) == ["c1", "c2"]

    # Array-valued select column
    res = t.select(t.c4, arr=[2, 3, 4]).limit(2).collect()
    assert len(res) == 2
    assert res[0]["arr"] == [2, 3, 4]

    # Computed-expression select column
    res = t.select(t.c2, doubled=t.c2 * 2).order_by(t.c2).limit(4).collect()
    assert [row["doubled"] for row in res] == [0, 2, 4, 6]

    # limit > table size returns all rows
    res = t.select(t.c2).limit(1000).collect()
    assert len(res) == 100

    # offset=None is equivalent to no offset
    res_none = t.select(t.c2).order_by(t.c2).limit(5, offset=None).collect()
    res_no = t.select(t.c2).order_by(t.c2).limit(5).collect()
    assert [r["c2"] for r in res_none] == [r["c2"] for r in res_no]

    # Pagination: basic offsets
    res = t.select(t.c2).order_by(t.c2).limit(5, offset=0).collect()
    assert [row["c2"] for row in res] == [0, 1, 2, 3, 4]
    res = t.select(t.c2).order_by(t.c2).limit(5, offset=5).collect()
    assert [row["c2"] for row in res] == [5, 6, 7, 8, 9]

    # offset=0 equivalent to no offset
    res_zero = t.select(t.c2).order_by(t.c2).limit(5, offset=0).collect()
    assert [r["c2"] for r in res_no] == [r["c2"] for r in res_zero]

    # offset larger than result set
    res = t.select(t.c2).limit(10, offset=200).collect()
    assert len(res) == 0

    # offset with where clause
    res = t.where(t.c2 >= 10).select(t.c2).order_by(t.c2).limit(5, offset=5).collect()
    assert [row["c2"] for row in res] == [15, 16, 17, 18, 19]

    # offset near end of results: fewer rows than limit requested
    res = t.select(t.c2).order_by(t.c2).limit(10, offset=95).collect()
    assert len(res) == 5
    assert [row["c2"] for row in res] == [95, 96, 97, 98, 99]

    # Python-side filter path: a Python UDF can't be translated to SQL, so limit/offset are applied by Python
    res = t.where(is_even_py(t.c2)).select(t.c2).order_by(t.c2).limit(5, offset=5).collect()
    assert [row["c2"] for row in res] == [10, 12, 14, 16, 18]

    # Python-filter path, offset near end: fewer rows than limit
    res = t.where(is_even_py(t.c2)).select(t.c2).order_by(t.c2).limit(10, offset=45).collect()
    assert len(res) == 5
    assert [row["c2"] for row in res] == [90, 92, 94, 96, 98]

    # Python-filter path, offset beyond result: empty
    res = t.where(is_even_py(t.c2)).select(t.c2).order_by(t.c2).limit(5, offset=60).collect()
    assert len(res) == 0


def test_limit_errors(test_tbl):
    """Ported from pixeltable tests/test_query.py::TestQuery::test_limit_errors (without sample(), which we do
    not have; limit(None) is a type error here, 'must be of type `Int`')."""
    t = test_tbl

    with pytest.raises(Error, match="must be of type `Int`"):
        _ = t.limit(5.3)  # type: ignore[arg-type]
    with pytest.raises(Error, match="must be of type `Int`"):
        _ = t.limit("5")  # type: ignore[arg-type]
    with pytest.raises(Error, match="must be of type `Int`"):
        _ = t.limit(5, offset="bad")  # type: ignore[arg-type]
    with pytest.raises(Error, match="must be >= 0"):
        _ = t.limit(-1)
    with pytest.raises(Error, match="must be >= 0"):
        _ = t.limit(5, offset=-1)


def test_limit_0(test_tbl):
    """Ported from pixeltable tests/test_query.py::TestQuery::test_limit_0 (the SQL and Python-filter paths;
    without group_by, UDAs and cursor(), which we do not have)."""
    t = test_tbl

    def check(query, expected_cols: list[str]) -> None:
        assert list(query.schema.keys()) == expected_cols
        res = query.collect()
        assert len(res) == 0
        assert list(res.schema.keys()) == expected_cols

    # plain SQL scan
    check(t.select(t.c1, t.c2).order_by(t.c2).limit(0), ["c1", "c2"])

    # SQL scan with offset
    check(t.select(t.c1, t.c2).order_by(t.c2).limit(0, offset=5), ["c1", "c2"])

    # Python filter: UDF forces Python-side filter
    check(t.where(is_even_py(t.c2)).select(t.c1, t.c2).order_by(t.c2).limit(0), ["c1", "c2"])

    # Python filter with offset
    check(t.where(is_even_py(t.c2)).select(t.c1, t.c2).order_by(t.c2).limit(0, offset=3), ["c1", "c2"])


def test_head_tail(test_tbl):
    """Ported from pixeltable tests/test_query.py::TestQuery::test_head_tail (a catalog reload is a new
    get_table(); without group_by(), which we do not have)."""
    t = test_tbl
    res = t.head(10).to_pandas()
    assert np.all(res.c2 == list(range(10)))
    t = pxt.get_table("test_tbl")
    res = t.head(10).to_pandas()
    # Where is applied
    res = t.where(t.c2 > 9).head(10).to_pandas()
    assert np.all(res.c2 == list(range(10, 20)))
    # order_by() is an error
    with pytest.raises(Error) as exc_info:
        _ = t.order_by(t.c2).head(10)
    assert "cannot be used with order_by" in str(exc_info.value)

    res = t.tail().to_pandas()
    assert np.all(res.c2 == list(range(90, 100)))
    res = t.where(t.c2 < 90).tail().to_pandas()
    assert np.all(res.c2 == list(range(80, 90)))
    # order_by() is an error
    with pytest.raises(Error) as exc_info:
        _ = t.order_by(t.c2).tail(10)
    assert "cannot be used with order_by" in str(exc_info.value)

    # ours: tail with a filter evaluated in Python keeps the same rule
    res = t.where(is_even_py(t.c2)).tail(3)
    assert res["c2"] == [94, 96, 98]


def test_count(test_tbl):
    """Ported from pixeltable tests/test_query.py::TestQuery::test_count (the test_tbl part)."""
    t = test_tbl
    cnt = t.count()
    assert cnt == 100

    cnt = t.where(t.c2 < 10).count()
    assert cnt == 10


def test_select_literal(test_tbl):
    """Ported from pixeltable tests/test_query.py::TestQuery::test_select_literal."""
    t = test_tbl
    res = t.select(1.0).where(t.c2 < 10).collect()
    assert res[next(iter(res.schema.keys()))] == [1.0] * 10


def test_filters_show(test_tbl):
    """Ported from pixeltable tests/test_exprs.py::TestExprs::test_filters (show() and where())."""
    t = test_tbl
    _ = t.where(t.c1 == "test string").show()
    print(_)
    _ = t.where(t.c2 > 50).show()
    print(_)
    _ = t.where(t.c1n == None).show()  # noqa: E711
    print(_)
    _ = t.where(t.c1n != None).collect()  # noqa: E711
    print(_)
    # ours: show(n) is limit(n).collect(); t.show() is 20 rows
    assert len(t.show()) == 20 and len(t.where(t.c2 > 50).show(5)) == 5
    assert t.select(t.c2).show(3)["c2"] == [0, 1, 2]
