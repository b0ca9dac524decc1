"""Pixeltable's test tables (tests/utils.py: create_test_tbl), as far as our types go: `c5` (Timestamp) and
`c8` (an Array computed column) are left out; the 100 rows are Pixeltable's."""

from __future__ import annotations

from typing import Any

import pytest

import pxt_assets as pxt

#: what Pixeltable raises: `pxt.Error` (our SpecError, ColumnTypeError and UDFDefinitionError are RequestErrors)
Error = pxt.Error


def create_test_tbl(name: str = "test_tbl") -> Any:
    schema = {"c1": pxt.String, "c1n": pxt.String, "c2": pxt.Int, "c3": pxt.Float, "c4": pxt.Bool,
              "c6": pxt.Json, "c7": pxt.Json}
    t = pxt.create_table(name, schema)
    num_rows = 100
    d1 = {
        "f1": "test string 1",
        "f2": 1,
        "f3": 1.0,
        "f4": True,
        "f5": [1.0, 2.0, 3.0, 4.0],
        "f6": {"f7": "test string 2", "f8": [1.0, 2.0, 3.0, 4.0]},
    }
    d2 = [d1, d1]
    rows = []
    for i in range(num_rows):
        c6 = {
            "f1": f"test string {i}",
            "f2": i,
            "f3": float(i),
            "f4": bool(i % 2),
            "f5": list(range(5 + i // 10)),
            "f6": {"f7": "test string 2", "f8": [1.0, 2.0, 3.0, 4.0]},
        }
        rows.append({"c1": f"test string {i}", "c1n": f"test string {i}" if i % 10 != 0 else None, "c2": i,
                     "c3": float(i), "c4": bool(i % 2), "c6": c6, "c7": d2})
    t.insert(rows)
    return t


@pytest.fixture
def test_tbl(pxt_home) -> Any:
    return create_test_tbl()
